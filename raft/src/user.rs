//! Users the gateways authenticate (MQTT, later AMQP) and their ACL rules,
//! as the metadata holds them.
//!
//! The quorum only stores users: the proposer hashes the password before
//! proposing, so the log, snapshots and forwarded proposals carry a salted
//! hash (a PHC string), never the password; gateways evaluate the rules.
//!
//! # Format
//! An ACL rule's text form (the CLI's `--acl`, and how rules are shown) is
//! `allow|deny:pub|sub|all:FILTER`, e.g. `allow:pub:devices/%c/#`. FILTER is
//! an MQTT topic filter (`+` one level, `#` the rest) in which `%c` stands
//! for the client id and `%u` for the user name; it may contain `:`.
//!
//! # Invariants
//! - Every stored user has a non-empty name and password hash; a
//!   [`MetadataRequest::PutUser`](crate::MetadataRequest::PutUser) that
//!   breaks this is rejected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::metadata::{MetadataResponse, MetadataState};

/// What an ACL rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclAction {
    Publish,
    Subscribe,
    /// Both publishing and subscribing.
    All,
}

impl AclAction {
    /// The short name of the text form: `pub`, `sub` or `all`.
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Publish => "pub",
            AclAction::Subscribe => "sub",
            AclAction::All => "all",
        }
    }
}

/// One rule of a user's access list; the gateway that evaluates the list
/// decides how rules combine.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AclRule {
    pub action: AclAction,
    /// An MQTT topic filter; `%c` is the client id, `%u` the user name.
    pub filter: String,
    /// Allow (true) or deny (false) what the rule matches.
    pub allow: bool,
}

impl fmt::Display for AclRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = if self.allow { "allow" } else { "deny" };
        write!(f, "{verdict}:{}:{}", self.action.as_str(), self.filter)
    }
}

impl FromStr for AclRule {
    type Err = String;

    /// Parses `allow|deny:pub|sub|all:FILTER` and checks the filter.
    fn from_str(text: &str) -> Result<AclRule, String> {
        let usage = || {
            format!(
                "ACL rule {text:?} is not allow|deny:pub|sub|all:FILTER (e.g. allow:pub:devices/%c/#)"
            )
        };
        let mut parts = text.splitn(3, ':');
        let (Some(verdict), Some(action), Some(filter)) =
            (parts.next(), parts.next(), parts.next())
        else {
            return Err(usage());
        };
        let allow = match verdict {
            "allow" => true,
            "deny" => false,
            _ => return Err(usage()),
        };
        let action = match action {
            "pub" | "publish" => AclAction::Publish,
            "sub" | "subscribe" => AclAction::Subscribe,
            "all" => AclAction::All,
            _ => return Err(usage()),
        };
        let rule = AclRule {
            action,
            filter: filter.to_string(),
            allow,
        };
        rule.validate()?;
        Ok(rule)
    }
}

impl AclRule {
    /// Checks the filter: non-empty, no NUL, and MQTT's wildcard placement
    /// (MQTT 3.1.1 §4.7.1: `+` fills a whole level, `#` is the whole last
    /// level).
    ///
    /// # Errors
    /// The reason, naming the filter.
    pub fn validate(&self) -> Result<(), String> {
        let filter = &self.filter;
        if filter.is_empty() {
            return Err("an ACL filter must not be empty".into());
        }
        if filter.contains('\0') {
            return Err(format!("ACL filter {filter:?} contains a NUL character"));
        }
        let levels: Vec<&str> = filter.split('/').collect();
        for (i, level) in levels.iter().enumerate() {
            if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
                return Err(format!(
                    "ACL filter {filter:?}: '#' must be the whole last level"
                ));
            }
            if level.contains('+') && *level != "+" {
                return Err(format!("ACL filter {filter:?}: '+' must be a whole level"));
            }
        }
        Ok(())
    }
}

/// A user as the metadata stores it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// The salted password hash as a PHC string (`$argon2id$v=19$...`):
    /// it names its algorithm and parameters, so changing them later keeps
    /// old hashes verifiable.
    pub password_hash: String,
    pub acls: Vec<AclRule>,
    /// Bypasses the ACL rules.
    pub superuser: bool,
}

/// Leaves the hash out, since requests and states are logged.
impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("acls", &self.acls)
            .field("superuser", &self.superuser)
            .finish()
    }
}

impl MetadataState {
    /// Adds a user or replaces the one of that name.
    pub(crate) fn put_user(&mut self, user: &User) -> Result<MetadataResponse, String> {
        if user.name.is_empty() {
            return Err("a user needs a name".into());
        }
        if user.password_hash.is_empty() {
            return Err(format!("user {} needs a password hash", user.name));
        }
        self.users.insert(user.name.clone(), user.clone());
        Ok(MetadataResponse::Applied)
    }

    pub(crate) fn delete_user(&mut self, name: &str) -> Result<MetadataResponse, String> {
        self.users
            .remove(name)
            .ok_or_else(|| format!("unknown user {name}"))?;
        Ok(MetadataResponse::Applied)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MetadataRequest;

    fn user(name: &str, hash: &str) -> User {
        User {
            name: name.into(),
            password_hash: hash.into(),
            acls: vec![AclRule {
                action: AclAction::Publish,
                filter: "devices/%c/#".into(),
                allow: true,
            }],
            superuser: false,
        }
    }

    #[test]
    fn users_are_put_replaced_and_deleted() {
        let mut s = MetadataState::default();
        let put = |s: &mut MetadataState, u: User| s.apply(&MetadataRequest::PutUser { user: u });
        assert_eq!(put(&mut s, user("a", "h1")), MetadataResponse::Applied);
        assert_eq!(put(&mut s, user("a", "h2")), MetadataResponse::Applied);
        assert_eq!(s.users.len(), 1);
        assert_eq!(s.users["a"].password_hash, "h2");
        for (bad, words) in [(user("", "h"), "needs a name"), (user("b", ""), "hash")] {
            assert!(matches!(put(&mut s, bad), MetadataResponse::Rejected(r) if r.contains(words)));
        }
        let delete = |s: &mut MetadataState, name: &str| {
            s.apply(&MetadataRequest::DeleteUser { name: name.into() })
        };
        assert!(
            matches!(delete(&mut s, "b"), MetadataResponse::Rejected(r) if r.contains("unknown user b"))
        );
        assert_eq!(delete(&mut s, "a"), MetadataResponse::Applied);
        assert!(s.users.is_empty());
    }

    #[test]
    fn state_written_before_users_existed_still_loads() {
        let old = r#"{"brokers":{},"topics":{},"next_topic_id":3}"#;
        let s: MetadataState = serde_json::from_str(old).unwrap();
        assert!(s.users.is_empty());
        assert_eq!(s.next_topic_id, 3);
    }

    #[test]
    fn debug_output_hides_the_hash() {
        let text = format!(
            "{:?}",
            MetadataRequest::PutUser {
                user: user("a", "$argon2id$secret")
            }
        );
        assert!(!text.contains("secret"), "{text}");
    }

    #[test]
    fn acl_rules_parse_and_print_in_their_text_form() {
        for text in [
            "allow:pub:devices/%c/#",
            "deny:sub:+/secret",
            "allow:all:#",
            "allow:pub:a:b/c",
        ] {
            let rule: AclRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
        }
        let rule: AclRule = "deny:subscribe:x".parse().unwrap();
        assert_eq!(
            (rule.allow, rule.action, rule.filter.as_str()),
            (false, AclAction::Subscribe, "x")
        );
        for (bad, words) in [
            ("allow:pub", "allow|deny"),
            ("maybe:pub:x", "allow|deny"),
            ("allow:read:x", "allow|deny"),
            ("allow:pub:", "must not be empty"),
            ("allow:pub:a/#/b", "'#'"),
            ("allow:pub:a#", "'#'"),
            ("allow:sub:a+/b", "'+'"),
        ] {
            let e = bad.parse::<AclRule>().unwrap_err();
            assert!(e.contains(words), "{bad}: {e}");
        }
    }
}
