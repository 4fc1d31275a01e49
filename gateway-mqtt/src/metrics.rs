//! The gateway's counters, rendered as Prometheus text.

use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

/// Why a message was not delivered to a subscriber.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Dropped {
    /// The session's queue was full.
    QueueFull,
    /// Its message expiry interval passed.
    Expired,
    /// Larger than the client's Maximum Packet Size.
    TooLarge,
    /// The publisher was not authorized to publish there.
    NotAuthorized,
}

const DROPPED: [(&str, Dropped); 4] = [
    ("queue_full", Dropped::QueueFull),
    ("expired", Dropped::Expired),
    ("too_large", Dropped::TooLarge),
    ("not_authorized", Dropped::NotAuthorized),
];

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicI64,
    pub(crate) sessions: AtomicI64,
    pub(crate) subscriptions: AtomicI64,
    pub(crate) retained: AtomicI64,
    pub(crate) remote_shared_members: AtomicI64,
    messages_in: [AtomicU64; 3],
    messages_out: [AtomicU64; 3],
    dropped: [AtomicU64; 4],
    pub(crate) connects_refused: AtomicU64,
}

impl Metrics {
    pub(crate) fn message_in(&self, qos: u8) {
        if let Some(c) = self.messages_in.get(usize::from(qos)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn message_out(&self, qos: u8) {
        if let Some(c) = self.messages_out.get(usize::from(qos)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn dropped_count(&self, why: Dropped) -> u64 {
        self.dropped[why as usize].load(Ordering::Relaxed)
    }

    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        let gauges = [
            (
                "fjord_mqtt_connections",
                "Open MQTT connections.",
                &self.connections,
            ),
            (
                "fjord_mqtt_sessions",
                "MQTT sessions (online and offline).",
                &self.sessions,
            ),
            (
                "fjord_mqtt_subscriptions",
                "MQTT subscriptions.",
                &self.subscriptions,
            ),
            (
                "fjord_mqtt_retained_messages",
                "Retained MQTT messages.",
                &self.retained,
            ),
            (
                "fjord_mqtt_remote_shared_members",
                "Members of shared subscriptions online on other cluster nodes, as this node knows them.",
                &self.remote_shared_members,
            ),
        ];
        for (name, help, v) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        for (name, help, counters) in [
            (
                "fjord_mqtt_messages_in_total",
                "PUBLISH packets received, by QoS.",
                &self.messages_in,
            ),
            (
                "fjord_mqtt_messages_out_total",
                "PUBLISH packets sent, by QoS.",
                &self.messages_out,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (qos, c) in counters.iter().enumerate() {
                let _ = writeln!(out, "{name}{{qos=\"{qos}\"}} {}", c.load(Ordering::Relaxed));
            }
        }
        let name = "fjord_mqtt_messages_dropped_total";
        let _ = writeln!(
            out,
            "# HELP {name} Messages not delivered, by reason.\n# TYPE {name} counter"
        );
        for (reason, why) in DROPPED {
            let _ = writeln!(
                out,
                "{name}{{reason=\"{reason}\"}} {}",
                self.dropped_count(why)
            );
        }
        let name = "fjord_mqtt_connects_refused_total";
        let _ = writeln!(
            out,
            "# HELP {name} CONNECTs refused.\n# TYPE {name} counter"
        );
        let _ = writeln!(
            out,
            "{name} {}",
            self.connects_refused.load(Ordering::Relaxed)
        );
        out
    }
}
