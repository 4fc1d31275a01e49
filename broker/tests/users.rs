//! Users through the gRPC API and the public `Broker` handle: status codes
//! for bad input, no hash on the way out, authentication after a restart.
#![allow(clippy::unwrap_used)]

mod common;

use common::Node;
use fjord_broker::{AclAction, AclRule};
use fjord_proto::v1 as pb;
use fjord_proto::v1::user_service_client::UserServiceClient;
use tonic::Code;
use tonic::transport::Channel;

fn users(node: &Node) -> UserServiceClient<Channel> {
    UserServiceClient::new(node.channel.clone())
}

fn put(name: &str, password: &str, acls: Vec<pb::AclRule>) -> pb::PutUserRequest {
    pb::PutUserRequest {
        name: name.into(),
        password: password.into(),
        acls,
        superuser: false,
    }
}

fn rule(action: pb::AclAction, filter: &str, allow: bool) -> pb::AclRule {
    pb::AclRule {
        action: action.into(),
        filter: filter.into(),
        allow,
    }
}

#[tokio::test]
async fn users_are_put_listed_and_survive_a_restart_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::start(dir.path()).await;
    let acls = vec![
        rule(pb::AclAction::Publish, "devices/%c/#", true),
        rule(pb::AclAction::Subscribe, "admin/#", false),
    ];
    users(&node)
        .put_user(put("sensor-1", "s3cret-pw", acls.clone()))
        .await
        .unwrap();
    let list = users(&node)
        .list_users(pb::ListUsersRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        list.users,
        vec![pb::UserInfo {
            name: "sensor-1".into(),
            acls,
            superuser: false,
        }]
    );

    for (bad, words) in [
        (put("", "pw", vec![]), "name must not be empty"),
        (put("a\u{1}", "pw", vec![]), "control character"),
        (put(&"n".repeat(257), "pw", vec![]), "at most 256 bytes"),
        (put("x", "", vec![]), "password must not be empty"),
        (
            put("x", "pw", vec![rule(pb::AclAction::All, "", true)]),
            "filter must not be empty",
        ),
        (
            put("x", "pw", vec![rule(pb::AclAction::Unspecified, "a", true)]),
            "needs an action",
        ),
    ] {
        let e = users(&node).put_user(bad).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
        assert!(e.message().contains(words), "{e:?}");
    }
    let e = users(&node)
        .delete_user(pb::DeleteUserRequest {
            name: "nobody".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(e.message().contains("unknown user nobody"), "{e:?}");
    assert_eq!(node.broker.admin().list_users().len(), 1);

    // On disk (the metadata quorum's log): the hash, never the password.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(dir.path().join("raft")).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    let stored = String::from_utf8_lossy(&stored);
    assert!(
        stored.contains("$argon2id$") && !stored.contains("s3cret-pw"),
        "{stored}"
    );

    node.stop().await;
    let node = Node::start(dir.path()).await;
    let info = node
        .broker
        .admin()
        .authenticate("sensor-1", b"s3cret-pw")
        .unwrap();
    assert_eq!(
        info.acls[0],
        AclRule {
            action: AclAction::Publish,
            filter: "devices/%c/#".into(),
            allow: true,
        }
    );
    assert!(
        node.broker
            .admin()
            .authenticate("sensor-1", b"s3cret-PW")
            .is_none()
    );
    users(&node)
        .delete_user(pb::DeleteUserRequest {
            name: "sensor-1".into(),
        })
        .await
        .unwrap();
    node.stop().await;
    let node = Node::start(dir.path()).await;
    assert!(node.broker.admin().list_users().is_empty());
    assert!(
        node.broker
            .admin()
            .authenticate("sensor-1", b"s3cret-pw")
            .is_none()
    );
    node.stop().await;
}
