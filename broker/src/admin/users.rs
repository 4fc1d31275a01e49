//! Users for the gateways' authentication (MQTT, later AMQP): adding,
//! replacing, deleting and listing them, and checking a password.
//!
//! # Where users live
//! In the metadata quorum ([`fjord_raft::MetadataState`]'s `users`),
//! changed by proposing `PutUser`/`DeleteUser` from any node (a follower
//! forwards to the controller); every node answers [`Admin::list_users`]
//! and [`Admin::authenticate`] from its applied copy.
//!
//! # Hashing
//! Passwords are hashed before they are stored or proposed, so no password
//! reaches a file, the Raft log or another node. The hash is Argon2id (RFC
//! 9106) as a PHC string with a random 16-byte salt, with deliberately
//! light parameters: 4 MiB of memory, one pass, one lane. A check then
//! takes about 1 ms of one core (measured 1.3 ms on a 2-core development
//! machine), because gateways check a password on every connect and an IoT
//! fleet reconnects all at once after a restart: at 1 ms a core admits
//! ~1,000 connects a second, where RFC 9106's second recommendation (64 MiB)
//! or OWASP's 19 MiB, two passes would take 15-50 ms each. 4 MiB per guess
//! still makes offline guessing from a stolen data directory memory-bound
//! rather than a cheap SHA loop. The PHC string carries its parameters, so
//! they can change later and old hashes still verify.
//!
//! # Concurrency
//! [`Admin::authenticate`] is synchronous and costs ~1 ms of CPU; a
//! gateway with many connects may run it on a blocking thread. An unknown
//! user costs the same as a wrong password (a dummy hash is checked), so
//! timing does not tell which names exist.

use std::sync::OnceLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use fjord_raft::{AclRule, MetadataRequest, User};
use tracing::info;

use super::{APPLY_WAIT, Admin};
use crate::{Error, Result};

/// Memory per hash, in KiB (see the module header).
const M_COST_KIB: u32 = 4096;
/// Passes over the memory.
const T_COST: u32 = 1;
/// Lanes.
const P_COST: u32 = 1;
/// Longest user name, in bytes.
const MAX_NAME_BYTES: usize = 256;

/// A user to add or replace.
#[derive(Clone, PartialEq, Eq)]
pub struct UserSpec {
    pub name: String,
    /// The password in the clear; only its hash is kept.
    pub password: String,
    pub acls: Vec<AclRule>,
    /// Bypasses the ACL rules.
    pub superuser: bool,
}

/// Leaves the password out.
impl std::fmt::Debug for UserSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserSpec")
            .field("name", &self.name)
            .field("password", &"<redacted>")
            .field("acls", &self.acls)
            .field("superuser", &self.superuser)
            .finish()
    }
}

/// A user as gateways and `list_users` see it: no password hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub acls: Vec<AclRule>,
    pub superuser: bool,
}

impl From<&User> for UserInfo {
    fn from(user: &User) -> UserInfo {
        UserInfo {
            name: user.name.clone(),
            acls: user.acls.clone(),
            superuser: user.superuser,
        }
    }
}

/// Checks a spec before anything is hashed or stored.
///
/// # Errors
/// `InvalidRequest` with the reason.
fn validate(spec: &UserSpec) -> Result<()> {
    let invalid = |reason: String| Err(Error::InvalidRequest(reason));
    if spec.name.is_empty() {
        return invalid("a user name must not be empty".into());
    }
    if spec.name.len() > MAX_NAME_BYTES {
        return invalid(format!(
            "a user name is at most {MAX_NAME_BYTES} bytes, got {}",
            spec.name.len()
        ));
    }
    if spec.name.chars().any(char::is_control) {
        return invalid(format!(
            "user name {:?} contains a control character",
            spec.name
        ));
    }
    if spec.password.is_empty() {
        return invalid(format!(
            "user {}: the password must not be empty",
            spec.name
        ));
    }
    for rule in &spec.acls {
        rule.validate()
            .map_err(|reason| Error::InvalidRequest(format!("user {}: {reason}", spec.name)))?;
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>> {
    let params = Params::new(M_COST_KIB, T_COST, P_COST, None)
        .map_err(|e| Error::Metadata(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh random salt; the PHC string.
///
/// # Errors
/// `Metadata` if hashing fails (it does not for valid parameters).
pub(crate) fn hash_password(password: &[u8]) -> Result<String> {
    // `rand`'s thread generator is a CSPRNG seeded from the OS.
    let salt: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt)
        .map_err(|e| Error::Metadata(format!("encode a salt: {e}")))?;
    let hash = hasher()?
        .hash_password(password, &salt)
        .map_err(|e| Error::Metadata(format!("hash a password: {e}")))?;
    Ok(hash.to_string())
}

/// True when `password` matches the PHC string `hash`, compared in constant
/// time by the hash library; false for a malformed hash.
pub(crate) fn verify_password(hash: &str, password: &[u8]) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    // Algorithm and parameters come from the PHC string itself.
    Argon2::default().verify_password(password, &parsed).is_ok()
}

/// A hash no password is checked against successfully in practice: unknown
/// users are checked against it so they cost as much as known ones.
fn dummy_hash() -> Option<&'static str> {
    static DUMMY: OnceLock<Option<String>> = OnceLock::new();
    DUMMY
        .get_or_init(|| hash_password(&rand::random::<[u8; 16]>()).ok())
        .as_deref()
}

/// Validates and hashes on a blocking thread (hashing costs ~1 ms of CPU).
async fn to_user(spec: UserSpec) -> Result<User> {
    validate(&spec)?;
    tokio::task::spawn_blocking(move || {
        Ok(User {
            password_hash: hash_password(spec.password.as_bytes())?,
            name: spec.name,
            acls: spec.acls,
            superuser: spec.superuser,
        })
    })
    .await
    .map_err(|e| Error::Metadata(format!("password hashing task: {e}")))?
}

impl Admin {
    /// Adds a user, or replaces the user of that name (password, ACL rules
    /// and superuser flag alike).
    ///
    /// # Errors
    /// `InvalidRequest` for an empty, over-long (> 256 bytes) or
    /// control-character name, an empty password or a bad ACL filter;
    /// `NoQuorum` when the quorum cannot commit changes.
    pub async fn put_user(&self, spec: UserSpec) -> Result<()> {
        let user = to_user(spec).await?;
        self.store_user(user).await
    }

    /// Proposes a user whose password is hashed already.
    pub(crate) async fn store_user(&self, user: User) -> Result<()> {
        let name = user.name.clone();
        let hash = user.password_hash.clone();
        self.quorum
            .propose(MetadataRequest::PutUser { user })
            .await?;
        // Answer once this node lists it too.
        self.quorum
            .await_applied(APPLY_WAIT, |s| {
                s.users.get(&name).is_some_and(|u| u.password_hash == hash)
            })
            .await;
        info!(user = %name, "user saved");
        Ok(())
    }

    /// Deletes a user.
    ///
    /// # Errors
    /// `UnknownUser`; `NoQuorum` when the quorum cannot commit changes.
    pub async fn delete_user(&self, name: &str) -> Result<()> {
        let unknown = || Error::UnknownUser(name.to_string());
        // The quorum's answer is authoritative: this node's copy may not
        // have the user yet if it was just added elsewhere.
        let request = MetadataRequest::DeleteUser {
            name: name.to_string(),
        };
        match self.quorum.propose(request).await {
            Err(Error::InvalidRequest(reason)) if reason.contains("unknown user") => {
                return Err(unknown());
            }
            other => other?,
        };
        self.quorum
            .await_applied(APPLY_WAIT, |s| !s.users.contains_key(name))
            .await;
        info!(user = %name, "user deleted");
        Ok(())
    }

    /// Every user, by name, without password hashes.
    pub fn list_users(&self) -> Vec<UserInfo> {
        self.quorum
            .read(|s| s.users.values().map(UserInfo::from).collect())
    }

    /// The user, if `name` exists and `password` is its password. Costs
    /// about 1 ms of CPU whether or not the user exists (see the module
    /// header).
    pub fn authenticate(&self, name: &str, password: &[u8]) -> Option<UserInfo> {
        let user = self.quorum.read(|s| s.users.get(name).cloned());
        match user {
            Some(user) => verify_password(&user.password_hash, password).then(|| (&user).into()),
            None => {
                if let Some(dummy) = dummy_hash() {
                    verify_password(dummy, password);
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use fjord_raft::AclAction;

    use super::*;

    fn spec(name: &str, password: &str) -> UserSpec {
        UserSpec {
            name: name.into(),
            password: password.into(),
            acls: vec![AclRule {
                action: AclAction::Publish,
                filter: "devices/%c/#".into(),
                allow: true,
            }],
            superuser: false,
        }
    }

    #[test]
    fn hashes_are_salted_argon2id_and_verify_only_their_password() {
        let a = hash_password(b"hunter2").unwrap();
        let b = hash_password(b"hunter2").unwrap();
        assert!(a.starts_with("$argon2id$v=19$m=4096,t=1,p=1$"), "{a}");
        assert_ne!(a, b, "two hashes of one password share a salt");
        assert!(!a.contains("hunter2"));
        assert!(verify_password(&a, b"hunter2"));
        assert!(verify_password(&b, b"hunter2"));
        assert!(!verify_password(&a, b"hunter3"));
        assert!(!verify_password(&a, b""));
        assert!(!verify_password("not a phc string", b"hunter2"));
    }

    #[test]
    fn specs_are_validated() {
        assert!(validate(&spec("alice", "pw")).is_ok());
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        let mut bad_acl = spec("alice", "pw");
        bad_acl.acls[0].filter.clear();
        for (s, words) in [
            (spec("", "pw"), "must not be empty"),
            (spec(&long, "pw"), "at most 256 bytes"),
            (spec("a\nb", "pw"), "control character"),
            (spec("a\u{7f}", "pw"), "control character"),
            (spec("alice", ""), "password must not be empty"),
            (bad_acl, "filter must not be empty"),
        ] {
            match validate(&s) {
                Err(Error::InvalidRequest(reason)) => assert!(reason.contains(words), "{reason}"),
                other => panic!("{s:?}: {other:?}"),
            }
        }
        assert!(validate(&spec(&"é".repeat(128), "pw")).is_ok());
    }

    #[test]
    fn debug_output_hides_the_password() {
        let text = format!("{:?}", spec("alice", "hunter2"));
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[tokio::test]
    async fn a_single_node_authenticates_replaces_and_forgets_users() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = crate::BrokerConfig::new(dir.path());
        config.offsets_topic_partitions = 1;
        let node = crate::Broker::open(config).await.unwrap();
        node.start().await.unwrap();
        let broker = node.admin();
        broker.put_user(spec("alice", "old")).await.unwrap();
        let info = broker.authenticate("alice", b"old").unwrap();
        assert_eq!(info.name, "alice");
        assert_eq!(info.acls[0].filter, "devices/%c/#");
        assert!(broker.authenticate("alice", b"wrong").is_none());
        assert!(broker.authenticate("bob", b"old").is_none());

        let mut replaced = spec("alice", "new");
        replaced.acls.clear();
        replaced.superuser = true;
        broker.put_user(replaced).await.unwrap();
        assert!(broker.authenticate("alice", b"old").is_none());
        let info = broker.authenticate("alice", b"new").unwrap();
        assert!(info.superuser && info.acls.is_empty());
        assert_eq!(broker.list_users().len(), 1);

        broker.delete_user("alice").await.unwrap();
        assert!(broker.authenticate("alice", b"new").is_none());
        assert!(matches!(
            broker.delete_user("alice").await,
            Err(Error::UnknownUser(name)) if name == "alice"
        ));
        node.shutdown().await;
    }
}
