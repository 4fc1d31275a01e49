//! `<data-dir>/listeners.json`: what a running `fjord serve` announces once
//! every listener accepts connections.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// The announcement's file name inside the data directory.
pub const LISTENERS_FILE: &str = "listeners.json";

/// The bound addresses of a node (`host:port`), as it announced them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Listeners {
    /// The process that wrote the file (a stale file names another).
    pub pid: u32,
    pub node_id: u32,
    /// Empty on a single node.
    pub cluster_id: String,
    pub grpc: String,
    pub http: String,
    /// The gateway listeners; `None` when off.
    pub mqtt: Option<String>,
    pub mqtt_tls: Option<String>,
    pub mqtt_ws: Option<String>,
    pub amqp: Option<String>,
    pub amqp_tls: Option<String>,
}

impl Listeners {
    /// Parses the file's text.
    ///
    /// # Errors
    /// Not JSON, or without a pid, a gRPC or an HTTP address.
    pub fn parse(text: &str) -> Result<Listeners> {
        let v: Value = serde_json::from_str(text).context("listeners.json is not JSON")?;
        let addr = |key: &str| v[key].as_str().map(str::to_string);
        let required = |key: &str| addr(key).with_context(|| format!("no {key:?} in {v}"));
        let number = |key: &str| {
            v[key]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .with_context(|| format!("no {key:?} in {v}"))
        };
        Ok(Listeners {
            pid: number("pid")?,
            node_id: number("node_id").unwrap_or_default(),
            cluster_id: addr("cluster_id").unwrap_or_default(),
            grpc: required("grpc")?,
            http: required("http")?,
            mqtt: addr("mqtt"),
            mqtt_tls: addr("mqtt_tls"),
            mqtt_ws: addr("mqtt_ws"),
            amqp: addr("amqp"),
            amqp_tls: addr("amqp_tls"),
        })
    }

    /// The announcement in `data_dir` if it is there, complete, and was
    /// written by process `pid`.
    pub fn read_if_from(data_dir: &Path, pid: u32) -> Option<Listeners> {
        let text = std::fs::read_to_string(data_dir.join(LISTENERS_FILE)).ok()?;
        Listeners::parse(&text).ok().filter(|l| l.pid == pid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_address_is_read_and_the_missing_gateways_are_none() {
        let l = Listeners::parse(
            r#"{"pid": 42, "node_id": 3, "cluster_id": "c1",
                "grpc": "127.0.0.1:7001", "http": "127.0.0.1:7002",
                "mqtt": "127.0.0.1:7003", "amqp_tls": "127.0.0.1:7004"}"#,
        )
        .unwrap();
        assert_eq!(
            l,
            Listeners {
                pid: 42,
                node_id: 3,
                cluster_id: "c1".into(),
                grpc: "127.0.0.1:7001".into(),
                http: "127.0.0.1:7002".into(),
                mqtt: Some("127.0.0.1:7003".into()),
                amqp_tls: Some("127.0.0.1:7004".into()),
                ..Listeners::default()
            }
        );
    }

    #[test]
    fn an_incomplete_announcement_is_refused() {
        assert!(Listeners::parse(r#"{"pid": 1, "http": "127.0.0.1:1"}"#).is_err());
        assert!(Listeners::parse(r#"{"grpc": "a", "http": "b"}"#).is_err());
        assert!(Listeners::parse(r#"{"pid": 1, "grpc": "a""#).is_err());
    }

    #[test]
    fn a_file_of_another_process_is_not_ours() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Listeners::read_if_from(dir.path(), 7), None);
        std::fs::write(
            dir.path().join(LISTENERS_FILE),
            r#"{"pid": 7, "grpc": "127.0.0.1:1", "http": "127.0.0.1:2"}"#,
        )
        .unwrap();
        assert_eq!(Listeners::read_if_from(dir.path(), 8), None);
        let ours = Listeners::read_if_from(dir.path(), 7).unwrap();
        assert_eq!(ours.grpc, "127.0.0.1:1");
    }
}
