//! A session's durable state, as kept in the compacted topic
//! `__mqtt_sessions` (key: client id; value: this struct as JSON; a
//! tombstone when the session ends).
//!
//! # What is kept
//! - subscriptions with their options;
//! - per log partition, the offset from which the session has not seen
//!   messages yet (its cursor): on resume, records between the cursor and
//!   the log's current end are matched against the subscriptions again
//!   and the QoS 1/2 ones are delivered (what it missed while offline);
//! - outgoing QoS 1/2 messages not yet acknowledged, by log position (they
//!   are re-read and sent again with DUP on resume);
//! - packet ids of incoming QoS 2 messages stored but not yet released, so
//!   a retransmission after a reconnect is not stored twice, and how many
//!   QoS 2 messages the connection had stored (messages it stored after
//!   the save are found in the log by their receipt, see
//!   [`crate::message::Receipt`]);
//! - outgoing QoS 2 messages completed (PUBCOMP) at or past the cursors, so
//!   a resume that reads the log from the cursors does not send them again.
//!
//! # Concurrency
//! Owned by the connection while the client is online, by the gateway's
//! offline-session map otherwise; written on subscription changes, QoS 2
//! receipts and disconnects.

use serde::{Deserialize, Serialize};

use crate::trie::SubOptions;

/// Where a message lives in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub(crate) struct LogRef {
    pub(crate) topic: String,
    pub(crate) partition: u32,
    pub(crate) offset: i64,
}

/// A subscription's options in the stored form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredSub {
    pub(crate) filter: String,
    pub(crate) qos: u8,
    #[serde(default)]
    pub(crate) no_local: bool,
    #[serde(default)]
    pub(crate) retain_as_published: bool,
    #[serde(default)]
    pub(crate) retain_handling: u8,
    #[serde(default)]
    pub(crate) subscription_id: Option<u32>,
}

impl StoredSub {
    pub(crate) fn options(&self) -> SubOptions {
        SubOptions {
            qos: self.qos,
            no_local: self.no_local,
            retain_as_published: self.retain_as_published,
            retain_handling: self.retain_handling,
            subscription_id: self.subscription_id,
        }
    }

    pub(crate) fn new(filter: &str, o: &SubOptions) -> StoredSub {
        StoredSub {
            filter: filter.to_string(),
            qos: o.qos,
            no_local: o.no_local,
            retain_as_published: o.retain_as_published,
            retain_handling: o.retain_handling,
            subscription_id: o.subscription_id,
        }
    }
}

/// An outgoing QoS 1/2 message waiting for its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredOutgoing {
    pub(crate) packet_id: u16,
    pub(crate) at: LogRef,
    pub(crate) qos: u8,
    pub(crate) retain: bool,
    #[serde(default)]
    pub(crate) subscription_ids: Vec<u32>,
    /// PUBREC received: only PUBREL/PUBCOMP remain.
    #[serde(default)]
    pub(crate) released: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SessionState {
    /// Seconds the session outlives its connection; `None`: forever.
    pub(crate) expiry_secs: Option<u32>,
    #[serde(default)]
    pub(crate) subscriptions: Vec<StoredSub>,
    #[serde(default)]
    pub(crate) cursors: Vec<(String, u32, i64)>,
    #[serde(default)]
    pub(crate) outgoing: Vec<StoredOutgoing>,
    #[serde(default)]
    pub(crate) incoming_qos2: Vec<u16>,
    /// The writing connection's count of QoS 2 messages stored.
    #[serde(default)]
    pub(crate) incoming_seq: u64,
    #[serde(default)]
    pub(crate) completed_qos2: Vec<LogRef>,
    /// QoS 2 messages that may have been written without this record
    /// saying so: of this connection (an append whose outcome it did not
    /// learn), or of the ones before it (whose node died).
    #[serde(default)]
    pub(crate) unsure: Vec<Unsure>,
    /// When the client went away (for expiry after a restart).
    #[serde(default)]
    pub(crate) disconnected_at_ms: Option<i64>,
    /// The node that wrote this record (0 in records of releases whose
    /// single nodes wrote none).
    #[serde(default)]
    pub(crate) node: u32,
    /// Written by that node's connection `connection` while the client was
    /// connected (a claim or a save); false once it went away.
    #[serde(default)]
    pub(crate) online: bool,
    #[serde(default)]
    pub(crate) connection: u64,
    /// The first record of a connection: it takes the client id over from
    /// any older connection on another node.
    #[serde(default)]
    pub(crate) claim: bool,
    /// The last state of a connection that another node took over, for
    /// the claim at offset `for_claim` (kept under [`handover_key`]).
    #[serde(default)]
    pub(crate) handed_over: bool,
    #[serde(default)]
    pub(crate) for_claim: i64,
    /// The offset of the claim of the connection that wrote this record
    /// (a claim's own offset, once written): a record of a connection
    /// older than the latest claim is stale.
    #[serde(default)]
    pub(crate) epoch: i64,
}

/// Where a session's next connection looks for QoS 2 messages connection
/// `epoch` may have stored without its record saying so (their receipts,
/// at sequence `seq` or later): from these cursors on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Unsure {
    pub(crate) epoch: i64,
    pub(crate) from: Vec<(String, u32, i64)>,
    pub(crate) seq: u64,
}

/// The key of the hand-over record for `client` (no client id starts with
/// NUL: MQTT strings cannot hold it).
pub(crate) fn handover_key(client: &str) -> String {
    format!("\u{0}handover/{client}")
}

impl SessionState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<SessionState> {
        serde_json::from_slice(bytes).ok()
    }

    /// The QoS 2 messages a resume from this record looks for in the log:
    /// those the writing connection stored after it, if it was online
    /// (its node may have died), and those it was unsure of.
    pub(crate) fn receipts_to_find(&self) -> Vec<Unsure> {
        let mut found = self.unsure.clone();
        if self.online {
            found.push(Unsure {
                epoch: self.epoch,
                from: self.cursors.clone(),
                seq: self.incoming_seq,
            });
        }
        found
    }

    pub(crate) fn cursor(&self, topic: &str, partition: u32) -> Option<i64> {
        self.cursors
            .iter()
            .find(|(t, p, _)| t == topic && *p == partition)
            .map(|(_, _, o)| *o)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn state_round_trips_and_garbage_is_none() {
        let s = SessionState {
            expiry_secs: Some(60),
            subscriptions: vec![StoredSub::new(
                "a/+",
                &SubOptions {
                    qos: 1,
                    no_local: true,
                    retain_as_published: false,
                    retain_handling: 2,
                    subscription_id: Some(7),
                },
            )],
            cursors: vec![("mqtt".into(), 3, 42)],
            outgoing: vec![StoredOutgoing {
                packet_id: 9,
                at: LogRef {
                    topic: "mqtt".into(),
                    partition: 3,
                    offset: 40,
                },
                qos: 2,
                retain: false,
                subscription_ids: vec![7],
                released: true,
            }],
            incoming_qos2: vec![5],
            incoming_seq: 12,
            completed_qos2: vec![LogRef {
                topic: "mqtt".into(),
                partition: 3,
                offset: 44,
            }],
            unsure: vec![Unsure {
                epoch: 1,
                from: vec![("mqtt".into(), 3, 40)],
                seq: 11,
            }],
            disconnected_at_ms: Some(1),
            node: 2,
            online: false,
            connection: 12,
            claim: false,
            handed_over: true,
            for_claim: 3,
            epoch: 2,
        };
        assert_eq!(SessionState::decode(&s.encode()).unwrap(), s);
        assert_eq!(s.cursor("mqtt", 3), Some(42));
        assert_eq!(s.cursor("mqtt", 2), None);
        assert!(SessionState::decode(b"[1,2").is_none());
    }
}
