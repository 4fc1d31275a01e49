//! `UserService`: put, delete, list. Passwords go in, never out.

use fjord_proto::v1 as pb;
use fjord_proto::v1::user_service_server::UserService;
use tonic::{Request, Response, Status};

use super::status::{GrpcResult, to_status};
use crate::{AclAction, AclRule, Broker, UserInfo, UserSpec};

pub(crate) struct Users(pub(crate) Broker);

fn rule_from_pb(rule: pb::AclRule) -> Result<AclRule, Status> {
    let action = match pb::AclAction::try_from(rule.action) {
        Ok(pb::AclAction::Publish) => AclAction::Publish,
        Ok(pb::AclAction::Subscribe) => AclAction::Subscribe,
        Ok(pb::AclAction::All) => AclAction::All,
        Ok(pb::AclAction::Unspecified) | Err(_) => {
            return Err(Status::invalid_argument(format!(
                "ACL rule for {:?} needs an action (publish, subscribe or all)",
                rule.filter
            )));
        }
    };
    Ok(AclRule {
        action,
        filter: rule.filter,
        allow: rule.allow,
    })
}

fn rule_to_pb(rule: AclRule) -> pb::AclRule {
    let action = match rule.action {
        AclAction::Publish => pb::AclAction::Publish,
        AclAction::Subscribe => pb::AclAction::Subscribe,
        AclAction::All => pb::AclAction::All,
    };
    pb::AclRule {
        action: action.into(),
        filter: rule.filter,
        allow: rule.allow,
    }
}

fn user_to_pb(user: UserInfo) -> pb::UserInfo {
    pb::UserInfo {
        name: user.name,
        acls: user.acls.into_iter().map(rule_to_pb).collect(),
        superuser: user.superuser,
    }
}

#[tonic::async_trait]
impl UserService for Users {
    async fn put_user(
        &self,
        request: Request<pb::PutUserRequest>,
    ) -> GrpcResult<pb::PutUserResponse> {
        let r = request.into_inner();
        let spec = UserSpec {
            name: r.name,
            password: r.password,
            acls: r
                .acls
                .into_iter()
                .map(rule_from_pb)
                .collect::<Result<_, _>>()?,
            superuser: r.superuser,
        };
        self.0.admin().put_user(spec).await.map_err(to_status)?;
        Ok(Response::new(pb::PutUserResponse {}))
    }

    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> GrpcResult<pb::DeleteUserResponse> {
        self.0
            .admin()
            .delete_user(&request.into_inner().name)
            .await
            .map_err(to_status)?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    async fn list_users(
        &self,
        _: Request<pb::ListUsersRequest>,
    ) -> GrpcResult<pb::ListUsersResponse> {
        let users = self
            .0
            .admin()
            .list_users()
            .into_iter()
            .map(user_to_pb)
            .collect();
        Ok(Response::new(pb::ListUsersResponse { users }))
    }
}
