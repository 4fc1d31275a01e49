//! `fjord user add|delete|list`: users the gateways authenticate.
//!
//! Changes go where `fjord cluster` operations go: in a cluster to the
//! controller, on a single node to the node. `list` asks `--server`.

use std::io::BufRead;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use fjord_broker::{AclAction, AclRule};
use fjord_proto::v1 as pb;
use fjord_proto::v1::user_service_client::UserServiceClient;
use serde_json::json;
use tonic::transport::Channel;

use super::{ClientArgs, Output, answer, report, table};

const ACL_HELP: &str = "\
ACL rules (--acl, repeatable): allow|deny:pub|sub|all:FILTER
  pub = publish, sub = subscribe, all = both. FILTER is an MQTT topic
  filter (+ one level, # the rest) in which %c stands for the client id and
  %u for the user name; it may contain ':'. The gateways evaluate the rules.
  Examples:
    --acl allow:pub:devices/%c/#   publish under the device's own prefix
    --acl allow:sub:commands/%u    subscribe to the user's command topic
    --acl deny:all:admin/#         nothing under admin/";

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user, or replace the user of that name.
    #[command(after_help = ACL_HELP)]
    Add {
        /// The user name (1 to 256 bytes, no control characters).
        name: String,
        /// The password; `-` reads it from the first line of standard input
        /// (keeps it out of the process list and shell history).
        #[arg(long)]
        password: String,
        /// An ACL rule `allow|deny:pub|sub|all:FILTER` (repeatable; see
        /// below).
        #[arg(long = "acl", value_name = "RULE", value_parser = parse_rule)]
        acls: Vec<AclRule>,
        /// Bypasses the ACL rules.
        #[arg(long)]
        superuser: bool,
    },
    /// Delete a user.
    Delete {
        /// The user name.
        name: String,
    },
    /// List users and their ACL rules (never passwords or hashes).
    List,
}

fn parse_rule(text: &str) -> Result<AclRule, String> {
    text.parse()
}

fn rule_to_pb(rule: &AclRule) -> pb::AclRule {
    let action = match rule.action {
        AclAction::Publish => pb::AclAction::Publish,
        AclAction::Subscribe => pb::AclAction::Subscribe,
        AclAction::All => pb::AclAction::All,
    };
    pb::AclRule {
        action: action.into(),
        filter: rule.filter.clone(),
        allow: rule.allow,
    }
}

/// The rule in its `--acl` text form.
fn rule_text(rule: &pb::AclRule) -> String {
    let action = match pb::AclAction::try_from(rule.action) {
        Ok(pb::AclAction::Publish) => "pub",
        Ok(pb::AclAction::Subscribe) => "sub",
        Ok(pb::AclAction::All) => "all",
        Ok(pb::AclAction::Unspecified) | Err(_) => "?",
    };
    let verdict = if rule.allow { "allow" } else { "deny" };
    format!("{verdict}:{action}:{}", rule.filter)
}

/// The password argument, or the first line of standard input for `-`.
fn password(arg: String) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("read the password from standard input")?;
    let password = line.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        bail!("--password -: standard input holds no password (its first line is empty)");
    }
    Ok(password.to_string())
}

/// A client of the node that takes metadata changes.
async fn writer(client: &ClientArgs) -> Result<UserServiceClient<Channel>> {
    let at = client.controller().await?.unwrap_or_else(|| client.clone());
    Ok(UserServiceClient::new(at.connect().await?))
}

pub(crate) async fn run(client: &ClientArgs, command: UserCommand) -> Result<()> {
    match command {
        UserCommand::Add {
            name,
            password: arg,
            acls,
            superuser,
        } => {
            let request = pb::PutUserRequest {
                name: name.clone(),
                password: password(arg)?,
                acls: acls.iter().map(rule_to_pb).collect(),
                superuser,
            };
            answer(writer(client).await?.put_user(request)).await?;
            report(
                client.output,
                json!({"saved": name}),
                format!("saved user {name}"),
            );
        }
        UserCommand::Delete { name } => {
            let request = pb::DeleteUserRequest { name: name.clone() };
            answer(writer(client).await?.delete_user(request)).await?;
            report(
                client.output,
                json!({"deleted": name}),
                format!("deleted user {name}"),
            );
        }
        UserCommand::List => {
            let mut rpc = UserServiceClient::new(client.connect().await?);
            let users = answer(rpc.list_users(pb::ListUsersRequest {})).await?.users;
            print_users(&users, client.output);
        }
    }
    Ok(())
}

fn print_users(users: &[pb::UserInfo], output: Output) {
    let json = |u: &pb::UserInfo| {
        json!({"name": u.name, "superuser": u.superuser,
            "acls": u.acls.iter().map(rule_text).collect::<Vec<_>>()})
    };
    let row = |u: &pb::UserInfo| {
        let acls: Vec<String> = u.acls.iter().map(rule_text).collect();
        vec![
            u.name.clone(),
            if u.superuser { "yes" } else { "no" }.to_string(),
            if acls.is_empty() {
                "-".to_string()
            } else {
                acls.join(" ")
            },
        ]
    };
    table::print_list(output, users, &["USER", "SUPERUSER", "ACL"], json, row);
}
