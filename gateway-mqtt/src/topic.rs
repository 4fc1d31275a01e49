//! Topic names and filters: what is valid, what matches, and `$share` parsing.
//!
//! # Format
//! A topic is a UTF-8 string of levels separated by `/` (MQTT 5.0 section 4.7). Levels may be
//! empty: `/finance` has two levels, `""` and `finance`. In a filter, `+` stands for exactly one
//! level and `#` for any number of levels, including none, at the end (section 4.7.1). A shared
//! subscription is `$share/{group}/{filter}` (section 4.8.2).
//!
//! # Invariants
//! - Names and filters are 1..=65535 bytes and contain no U+0000 (section 4.7.3).
//! - A name never contains `+` or `#`; in a filter, `+` is a whole level and `#` the whole last
//!   level.
//! - A filter whose first level is a wildcard never matches a name that starts with `$`
//!   (section 4.7.2).
//!
//! # Concurrency
//! Pure functions over borrowed strings; call them from anywhere.

/// The longest topic name or filter, in bytes: MQTT strings carry a 16-bit length.
pub const MAX_LEN: usize = 65_535;

/// The prefix that marks a shared subscription (MQTT 5.0 section 4.8.2).
const SHARE_PREFIX: &str = "$share/";

/// Why a topic name or filter was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The topic is the empty string (section 4.7.3).
    #[error("topic is empty")]
    Empty,
    /// The topic is longer than [`MAX_LEN`] bytes.
    #[error("topic is longer than {MAX_LEN} bytes")]
    TooLong,
    /// The topic contains U+0000.
    #[error("topic contains the null character U+0000")]
    Nul,
    /// A topic name (the payload) contains `+` or `#`.
    #[error("topic name {0:?} contains a wildcard ('+' or '#')")]
    Wildcard(String),
    /// A topic filter (the payload) has `+` that is not a whole level, or `#` that is not the
    /// whole last level.
    #[error("topic filter {0:?} has a misplaced wildcard")]
    BadWildcard(String),
    /// A filter (the payload) starts with `$share/` but is not `$share/{group}/{filter}` with a
    /// non-empty group free of `+`, `#` and `/`, and a valid filter.
    #[error(
        "shared subscription {0:?} is not $share/{{group}}/{{filter}} with a non-empty group \
         free of '+', '#' and '/' and a valid filter"
    )]
    BadShare(String),
}

/// Checks a PUBLISH topic name: non-empty, at most 65535 bytes, no U+0000, no `+` or `#`.
///
/// # Errors
/// [`TopicError::Empty`], [`TopicError::TooLong`], [`TopicError::Nul`] or
/// [`TopicError::Wildcard`].
pub fn validate_name(name: &str) -> Result<(), TopicError> {
    check_string(name)?;
    if name.contains(['+', '#']) {
        return Err(TopicError::Wildcard(name.to_owned()));
    }
    Ok(())
}

/// Checks a subscription filter: non-empty, at most 65535 bytes, no U+0000, `#` only as the
/// whole last level, `+` only as a whole level. A filter starting with `$share/` must also be a
/// well-formed shared subscription (see [`parse_shared`]).
///
/// # Errors
/// [`TopicError::Empty`], [`TopicError::TooLong`], [`TopicError::Nul`],
/// [`TopicError::BadWildcard`] or [`TopicError::BadShare`].
pub fn validate_filter(filter: &str) -> Result<(), TopicError> {
    check_string(filter)?;
    if filter.starts_with(SHARE_PREFIX) {
        return parse_shared(filter).map(|_| ());
    }
    check_levels(filter)
}

/// Does the topic name `name` match the plain (not `$share/...`) filter `filter`?
///
/// `#` also matches the parent level (`sport/#` matches `sport`), `+` matches an empty level,
/// and a filter whose first level is `+` or `#` does not match a name starting with `$` (so `#`
/// misses `$SYS/monitor/Clients`, while `$SYS/#` matches it). Both arguments are expected to be
/// valid; the answer for invalid ones is unspecified but never a panic. For a shared
/// subscription, pass the filter that [`parse_shared`] returns.
pub fn matches(filter: &str, name: &str) -> bool {
    let mut filter_levels = filter.split('/').peekable();
    if name.starts_with('$') && matches!(filter_levels.peek(), Some(&("+" | "#"))) {
        return false;
    }
    let mut name_levels = name.split('/');
    loop {
        match (filter_levels.next(), name_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(n)) if f == n => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Splits a shared subscription `$share/{group}/{filter}` into `(group, filter)`.
///
/// # Errors
/// [`TopicError::BadShare`] when the filter starts with `$share/` but the group is empty or
/// contains `+`, `#` or U+0000, or the filter after it is missing, empty or invalid.
///
/// # Examples
/// ```
/// use fjord_gateway_mqtt::topic::parse_shared;
/// assert_eq!(parse_shared("$share/g1/sport/+"), Ok(Some(("g1", "sport/+"))));
/// assert_eq!(parse_shared("sport/+"), Ok(None));
/// ```
pub fn parse_shared(filter: &str) -> Result<Option<(&str, &str)>, TopicError> {
    let Some(rest) = filter.strip_prefix(SHARE_PREFIX) else {
        return Ok(None);
    };
    let bad = || TopicError::BadShare(filter.to_owned());
    let (group, inner) = rest.split_once('/').ok_or_else(bad)?;
    if group.is_empty() || group.contains(['+', '#', '\0']) {
        return Err(bad());
    }
    if check_string(inner)
        .and_then(|()| check_levels(inner))
        .is_err()
    {
        return Err(bad());
    }
    Ok(Some((group, inner)))
}

/// Expands `%c` to `client_id` and `%u` to `username` (empty when anonymous) in an ACL filter
/// pattern. One pass: text that came from an identity is never expanded again, and any other
/// `%` is kept as it is.
///
/// # Security
/// The identities are inserted verbatim. A client id or username containing `+`, `#` or `/`
/// would widen the pattern (`devices/%c/#` with client id `#` becomes `devices/#/#`), so the
/// caller must not grant access through a pattern for such an identity.
pub fn substitute(pattern: &str, client_id: &str, username: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + client_id.len() + username.len());
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, chars.peek()) {
            ('%', Some('c')) => {
                out.push_str(client_id);
                chars.next();
            }
            ('%', Some('u')) => {
                out.push_str(username);
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

/// The rules every MQTT topic string shares: non-empty, bounded, no U+0000.
fn check_string(topic: &str) -> Result<(), TopicError> {
    if topic.is_empty() {
        Err(TopicError::Empty)
    } else if topic.len() > MAX_LEN {
        Err(TopicError::TooLong)
    } else if topic.contains('\0') {
        Err(TopicError::Nul)
    } else {
        Ok(())
    }
}

/// Wildcard placement in a plain filter: `+` a whole level, `#` the whole last level.
fn check_levels(filter: &str) -> Result<(), TopicError> {
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        let ok = match level {
            "+" => true,
            "#" => last,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return Err(TopicError::BadWildcard(filter.to_owned()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bad_wildcard(filter: &str) -> Result<(), TopicError> {
        Err(TopicError::BadWildcard(filter.to_owned()))
    }

    fn bad_share(filter: &str) -> Result<(), TopicError> {
        Err(TopicError::BadShare(filter.to_owned()))
    }

    #[test]
    fn names_4_7_3() {
        for name in [
            "sport/tennis/player1",
            "/",
            "/finance",
            "a b/c d",
            "$SYS/monitor/Clients",
        ] {
            assert_eq!(validate_name(name), Ok(()), "{name}");
        }
        assert_eq!(validate_name(""), Err(TopicError::Empty));
        assert_eq!(validate_name("a\0b"), Err(TopicError::Nul));
        assert_eq!(validate_name(&"a".repeat(MAX_LEN)), Ok(()));
        assert_eq!(
            validate_name(&"a".repeat(MAX_LEN + 1)),
            Err(TopicError::TooLong)
        );
        for name in ["sport/+", "#", "sport/tennis#", "a+b"] {
            assert_eq!(validate_name(name), Err(TopicError::Wildcard(name.into())));
        }
    }

    #[test]
    fn filters_4_7_1() {
        let valid = [
            "sport/tennis/player1/#",
            "sport/#",
            "#",
            "sport/tennis/#",
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "sport/+",
            "+/+",
            "/+",
            "/",
            "$SYS/#",
            "$SYS/monitor/+",
        ];
        for filter in valid {
            assert_eq!(validate_filter(filter), Ok(()), "{filter}");
        }
        for filter in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "#/a",
            "a/+b",
            "++",
        ] {
            assert_eq!(validate_filter(filter), bad_wildcard(filter));
        }
        assert_eq!(validate_filter(""), Err(TopicError::Empty));
        assert_eq!(validate_filter("a/\0"), Err(TopicError::Nul));
        assert_eq!(
            validate_filter(&"+/".repeat(40_000)),
            Err(TopicError::TooLong)
        );
    }

    #[test]
    fn multi_level_wildcard_4_7_1_2() {
        let filter = "sport/tennis/player1/#";
        for name in [
            "sport/tennis/player1",
            "sport/tennis/player1/ranking",
            "sport/tennis/player1/score/wimbledon",
        ] {
            assert!(matches(filter, name), "{name}");
        }
        assert!(!matches(filter, "sport/tennis/player2"));
        assert!(!matches(filter, "sport/tennis"));
        assert!(matches("sport/#", "sport"));
        assert!(matches("#", "sport/tennis"));
        assert!(matches("#", "/"));
    }

    #[test]
    fn single_level_wildcard_4_7_1_3() {
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(matches("sport/tennis/+", "sport/tennis/player2"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("+", "sport"));
        assert!(matches("+/tennis/#", "sport/tennis"));
        assert!(matches("sport/+/player1", "sport/tennis/player1"));
    }

    #[test]
    fn dollar_topics_4_7_2() {
        let name = "$SYS/monitor/Clients";
        assert!(!matches("#", name));
        assert!(!matches("+/monitor/Clients", name));
        assert!(!matches("+/#", name));
        assert!(matches("$SYS/#", name));
        assert!(matches("$SYS/monitor/+", name));
        assert!(matches("$SYS/monitor/Clients", name));
        // Only the first level counts: a `$` further down is an ordinary character.
        assert!(matches("#", "a/$SYS"));
        assert!(matches("+/+", "a/$b"));
    }

    #[test]
    fn semantics_4_7_3() {
        assert!(!matches("ACCOUNTS", "Accounts"));
        assert!(matches("Accounts payable", "Accounts payable"));
        assert!(!matches("/finance", "finance"));
        assert!(matches("/", "/"));
        assert!(!matches("sport/tennis", "sport/tennis/"));
    }

    #[test]
    fn shared_4_8_2() {
        assert_eq!(
            parse_shared("$share/consumer1/sport/tennis/+"),
            Ok(Some(("consumer1", "sport/tennis/+")))
        );
        assert_eq!(
            parse_shared("$share/consumer2/sport/tennis/+"),
            Ok(Some(("consumer2", "sport/tennis/+")))
        );
        assert_eq!(
            parse_shared("$share/consumer1//finance"),
            Ok(Some(("consumer1", "/finance")))
        );
        assert_eq!(parse_shared("$share/g/#"), Ok(Some(("g", "#"))));
        for plain in ["sport/#", "$SYS/#", "$share", "$shared/g/a", "#"] {
            assert_eq!(parse_shared(plain), Ok(None), "{plain}");
        }
        for bad in [
            "$share/g",
            "$share/g/",
            "$share//a",
            "$share/g+/a",
            "$share/#/a",
            "$share/g/a#",
        ] {
            assert_eq!(parse_shared(bad).map(|_| ()), bad_share(bad));
            assert_eq!(validate_filter(bad), bad_share(bad));
        }
        assert_eq!(validate_filter("$share/consumer1/sport/tennis/+"), Ok(()));
    }

    #[test]
    fn substitution() {
        assert_eq!(
            substitute("devices/%c/#", "dev1", "alice"),
            "devices/dev1/#"
        );
        assert_eq!(substitute("%u/%c", "dev1", "alice"), "alice/dev1");
        assert_eq!(substitute("users/%u/in", "dev1", ""), "users//in");
        // Identities are not expanded again; other `%` sequences stay as they are.
        assert_eq!(substitute("%c/%u", "%u", "%c"), "%u/%c");
        assert_eq!(substitute("100%/%x/%", "a", "b"), "100%/%x/%");
        assert_eq!(substitute("é/%c/ü", "ß", ""), "é/ß/ü");
    }
}
