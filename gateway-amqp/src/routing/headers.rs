//! Headers-exchange matching: does a message's header table satisfy a binding's arguments?
//!
//! # Format
//! A binding's arguments are a table of (key, value). `x-match` chooses the rule:
//! - `all` (the default): every considered key is present in the headers with an equal value;
//!   with no considered key, every message matches.
//! - `any`: at least one considered key is; with no considered key, no message matches.
//! - `all-with-x` / `any-with-x`: the same, but keys starting with `x-` are considered too.
//!
//! The considered keys are the binding's keys except `x-match`, and except those starting with
//! `x-` unless the rule is a `-with-x` one. A binding value of type void matches any value of a
//! present header (presence only).
//!
//! # Invariants
//! A table with several entries for one key is read at its first entry, in headers and
//! arguments alike.
//!
//! # Concurrency
//! Pure functions over borrowed tables.

use std::fmt;

use super::RoutingError;

/// The argument that chooses how a headers binding matches.
const X_MATCH: &str = "x-match";

/// A field-table value, as far as routing needs to read it. The codec's field value
/// implements it; routing stores and compares values without knowing their type.
pub trait HeaderValue: PartialEq + fmt::Debug {
    /// True for the void value ('V'): as a binding value it matches on the presence of the
    /// header alone.
    fn is_void(&self) -> bool;

    /// The text of a string value (long or short string); `None` for any other type. Used to
    /// read `x-match` and `alternate-exchange`.
    fn as_str(&self) -> Option<&str>;

    /// Whether the header value `header` equals this binding value. Defaults to `==`; an
    /// implementation may relax it, say to compare integers of different widths by value.
    fn matches_header(&self, header: &Self) -> bool {
        self == header
    }
}

/// How a headers binding combines its keys: the `x-match` argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum XMatch {
    /// Every considered key must match (`all`, the default).
    #[default]
    All,
    /// At least one considered key must match (`any`).
    Any,
    /// As [`XMatch::All`], also considering `x-` keys (`all-with-x`).
    AllWithX,
    /// As [`XMatch::Any`], also considering `x-` keys (`any-with-x`).
    AnyWithX,
}

impl XMatch {
    /// Parses the text of an `x-match` value; `None` for anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "all" => Some(Self::All),
            "any" => Some(Self::Any),
            "all-with-x" => Some(Self::AllWithX),
            "any-with-x" => Some(Self::AnyWithX),
            _ => None,
        }
    }

    /// The `x-match` text of this rule.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Any => "any",
            Self::AllWithX => "all-with-x",
            Self::AnyWithX => "any-with-x",
        }
    }

    /// The rule of a binding's arguments: [`XMatch::All`] when there is no `x-match`.
    ///
    /// # Errors
    /// [`RoutingError::InvalidXMatch`] when `x-match` is not one of the four strings.
    pub fn of<V: HeaderValue>(arguments: &[(String, V)]) -> Result<Self, RoutingError> {
        match lookup(arguments, X_MATCH) {
            None => Ok(Self::All),
            Some(value) => {
                value
                    .as_str()
                    .and_then(Self::parse)
                    .ok_or_else(|| RoutingError::InvalidXMatch {
                        value: describe(Some(value)),
                    })
            }
        }
    }

    fn any(self) -> bool {
        matches!(self, Self::Any | Self::AnyWithX)
    }

    fn with_x(self) -> bool {
        matches!(self, Self::AllWithX | Self::AnyWithX)
    }
}

/// Checks the arguments of a binding to a headers exchange, at bind time.
///
/// # Errors
/// [`RoutingError::InvalidXMatch`] (406) when `x-match` is present but not `all`, `any`,
/// `all-with-x` or `any-with-x` (as a string).
pub fn validate_headers_binding<V: HeaderValue>(
    arguments: &[(String, V)],
) -> Result<(), RoutingError> {
    XMatch::of(arguments).map(drop)
}

/// Whether a message with `headers` matches a headers binding with `arguments` (see the module
/// docs for the rules). An invalid `x-match`, which [`validate_headers_binding`] refuses, reads
/// as `all`.
pub fn headers_match<V: HeaderValue>(arguments: &[(String, V)], headers: &[(String, V)]) -> bool {
    let rule = XMatch::of(arguments).unwrap_or_default();
    let mut considered = arguments
        .iter()
        .filter(|(key, _)| key != X_MATCH && (rule.with_x() || !key.starts_with("x-")));
    let hit = |(key, wanted): &(String, V)| {
        lookup(headers, key).is_some_and(|value| wanted.is_void() || wanted.matches_header(value))
    };
    if rule.any() {
        considered.any(hit)
    } else {
        considered.all(hit)
    }
}

/// The value of `key`'s first entry in `table`.
pub(super) fn lookup<'a, V>(table: &'a [(String, V)], key: &str) -> Option<&'a V> {
    table.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

/// Whether two tables hold the same entries, in any order.
pub(super) fn same_table<V: PartialEq>(a: &[(String, V)], b: &[(String, V)]) -> bool {
    a.len() == b.len() && first_difference(a, b).is_none()
}

/// The first key, in key order, whose value differs between two tables (one may lack it).
pub(super) fn first_difference<'a, V: PartialEq>(
    a: &'a [(String, V)],
    b: &'a [(String, V)],
) -> Option<&'a str> {
    let mut keys: Vec<&str> = a.iter().chain(b).map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter().find(|k| lookup(a, k) != lookup(b, k))
}

/// A value as error texts show it: `'text'` for strings, `none` when absent, else its `Debug`.
pub(super) fn describe<V: HeaderValue>(value: Option<&V>) -> String {
    match value {
        None => "none".to_owned(),
        Some(v) => v
            .as_str()
            .map_or_else(|| format!("{v:?}"), |s| format!("'{s}'")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routing::tests::{Val, table};

    #[test]
    fn x_match_rules() {
        let headers = table(&[("format", Val::s("pdf")), ("type", Val::s("report"))]);
        let cases: &[(&[(&str, Val)], bool)] = &[
            (
                &[("format", Val::s("pdf")), ("type", Val::s("report"))],
                true,
            ),
            (&[("format", Val::s("pdf")), ("type", Val::s("log"))], false),
            (
                &[
                    ("x-match", Val::s("any")),
                    ("format", Val::s("zip")),
                    ("type", Val::s("report")),
                ],
                true,
            ),
            (
                &[("x-match", Val::s("any")), ("format", Val::s("zip"))],
                false,
            ),
            (&[("x-match", Val::s("all")), ("missing", Val::Void)], false),
            (&[("format", Val::Void)], true),
            (&[("format", Val::Int(1))], false),
            // `all` with no considered key matches everything, `any` nothing.
            (&[], true),
            (&[("x-match", Val::s("all"))], true),
            (&[("x-match", Val::s("any"))], false),
            (
                &[("x-match", Val::s("all")), ("x-tenant", Val::s("a"))],
                true,
            ),
            (
                &[("x-match", Val::s("any")), ("x-tenant", Val::s("a"))],
                false,
            ),
        ];
        for (arguments, expected) in cases {
            assert_eq!(
                headers_match(&table(arguments), &headers),
                *expected,
                "{arguments:?}"
            );
        }
    }

    #[test]
    fn with_x_considers_x_keys() {
        let headers = table(&[("x-tenant", Val::s("a")), ("kind", Val::s("k"))]);
        let check = |rule: &str, tenant: &str| {
            let arguments = table(&[("x-match", Val::s(rule)), ("x-tenant", Val::s(tenant))]);
            headers_match(&arguments, &headers)
        };
        assert!(check("all-with-x", "a"));
        assert!(!check("all-with-x", "b"));
        assert!(check("any-with-x", "a"));
        assert!(!check("any-with-x", "b"));
        // Without -with-x the x- key is ignored: all matches, any has nothing to match.
        assert!(check("all", "b"));
        assert!(!check("any", "a"));
        // x-match itself is never a key to match, even with -with-x.
        let arguments = table(&[("x-match", Val::s("all-with-x"))]);
        assert!(headers_match(&arguments, &headers));
    }

    #[test]
    fn first_entry_wins() {
        let headers = table(&[("k", Val::s("a")), ("k", Val::s("b"))]);
        assert!(headers_match(&table(&[("k", Val::s("a"))]), &headers));
        assert!(!headers_match(&table(&[("k", Val::s("b"))]), &headers));
    }

    #[test]
    fn validation() {
        for rule in ["all", "any", "all-with-x", "any-with-x"] {
            let arguments = table(&[("x-match", Val::s(rule))]);
            assert_eq!(XMatch::of(&arguments).map(XMatch::as_str), Ok(rule));
        }
        assert_eq!(validate_headers_binding::<Val>(&[]), Ok(()));
        let err = validate_headers_binding(&table(&[("x-match", Val::s("most"))])).unwrap_err();
        assert_eq!(err.reply_code(), 406);
        assert_eq!(
            err.to_string(),
            "PRECONDITION_FAILED - invalid x-match value 'most': expected 'all', 'any', \
             'all-with-x' or 'any-with-x'"
        );
        let err = validate_headers_binding(&table(&[("x-match", Val::Int(1))])).unwrap_err();
        assert_eq!(
            err,
            RoutingError::InvalidXMatch {
                value: "Int(1)".into()
            }
        );
    }

    #[test]
    fn tables_compare_in_any_order() {
        let a = table(&[("a", Val::Int(1)), ("b", Val::s("x"))]);
        let b = table(&[("b", Val::s("x")), ("a", Val::Int(1))]);
        assert!(same_table(&a, &b));
        assert!(!same_table(&a, &a[..1]));
        let c = table(&[("a", Val::Int(2)), ("b", Val::s("x"))]);
        assert_eq!(first_difference(&a, &c), Some("a"));
        assert_eq!(first_difference(&a, &b), None);
    }
}
