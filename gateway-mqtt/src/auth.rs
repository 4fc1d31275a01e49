//! Who a client is and what it may do: username/password against the
//! broker's users, and per-user topic ACLs.
//!
//! Rules are tried in order; the first whose filter (after `%c` → client
//! id and `%u` → username) covers the topic decides. A superuser, a user
//! without rules and an anonymous client (when anonymous access is on) may
//! do anything; a user with rules and no matching rule may not.

use fjord_broker::{AclAction, UserInfo};

use crate::topic;

#[derive(Debug, Clone)]
pub(crate) struct Principal {
    pub(crate) client_id: String,
    pub(crate) user: Option<UserInfo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Publish,
    Subscribe,
}

/// Does `rule` (a filter) cover `filter` (a topic name or a subscription
/// filter)? Every topic the subscription could match must match the rule.
pub(crate) fn covers(rule: &str, filter: &str) -> bool {
    let mut r = rule.split('/');
    let mut f = filter.split('/');
    loop {
        match (r.next(), f.next()) {
            (Some("#"), _) => return !filter.starts_with('$') || !rule.starts_with('#'),
            (Some("+"), Some(level)) => {
                if level == "#" {
                    return false;
                }
            }
            (Some(a), Some(b)) => {
                if a != b {
                    return false;
                }
            }
            (None, None) => return true,
            _ => return false,
        }
    }
}

impl Principal {
    pub(crate) fn allows(&self, action: Action, target: &str) -> bool {
        let Some(user) = &self.user else {
            return true;
        };
        if user.superuser || user.acls.is_empty() {
            return true;
        }
        for rule in &user.acls {
            let applies = match rule.action {
                AclAction::All => true,
                AclAction::Publish => action == Action::Publish,
                AclAction::Subscribe => action == Action::Subscribe,
            };
            if !applies {
                continue;
            }
            let filter = topic::substitute(&rule.filter, &self.client_id, &user.name);
            if covers(&filter, target) {
                return rule.allow;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_cover_names_and_narrower_filters_only() {
        assert!(covers("a/#", "a/b/c"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+", "a/b/c"));
        assert!(!covers("a/b", "a/+"));
        assert!(covers("#", "x/y"));
        assert!(!covers("#", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/x"));
    }
}
