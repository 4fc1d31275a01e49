//! The gateway's counters, rendered in Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) connections: AtomicI64,
    pub(crate) channels: AtomicI64,
    pub(crate) published: AtomicU64,
    pub(crate) unroutable: AtomicU64,
    pub(crate) confirmed: AtomicU64,
}

/// One queue's figures for `/metrics`.
pub(crate) struct QueueFigures {
    pub(crate) vhost: String,
    pub(crate) name: String,
    pub(crate) ready: u64,
    pub(crate) unacked: u64,
    pub(crate) consumers: u64,
    pub(crate) delivered: u64,
    pub(crate) acked: u64,
    pub(crate) published: u64,
}

fn label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Metrics {
    pub(crate) fn render(&self, queues: &[QueueFigures]) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            (
                "fjord_amqp_connections",
                "Open AMQP connections.",
                &self.connections,
            ),
            ("fjord_amqp_channels", "Open AMQP channels.", &self.channels),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        for (name, help, v) in [
            (
                "fjord_amqp_published_total",
                "Messages published (routed to at least one queue or not).",
                &self.published,
            ),
            (
                "fjord_amqp_unroutable_total",
                "Published messages no queue took.",
                &self.unroutable,
            ),
            (
                "fjord_amqp_confirmed_total",
                "Publisher confirms sent.",
                &self.confirmed,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        type Pick = fn(&QueueFigures) -> u64;
        let per_queue: [(&str, &str, &str, Pick); 6] = [
            (
                "fjord_amqp_queue_messages_ready",
                "gauge",
                "Messages ready for delivery.",
                |q| q.ready,
            ),
            (
                "fjord_amqp_queue_messages_unacked",
                "gauge",
                "Messages delivered, not acknowledged.",
                |q| q.unacked,
            ),
            ("fjord_amqp_queue_consumers", "gauge", "Consumers.", |q| {
                q.consumers
            }),
            (
                "fjord_amqp_queue_published_total",
                "counter",
                "Messages appended to the queue (publishes and dead letters).",
                |q| q.published,
            ),
            (
                "fjord_amqp_queue_delivered_total",
                "counter",
                "Messages delivered (get included).",
                |q| q.delivered,
            ),
            (
                "fjord_amqp_queue_acked_total",
                "counter",
                "Messages acknowledged.",
                |q| q.acked,
            ),
        ];
        for (name, kind, help, pick) in per_queue {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for q in queues {
                let _ = writeln!(
                    out,
                    "{name}{{vhost=\"{}\",queue=\"{}\"}} {}",
                    label(&q.vhost),
                    label(&q.name),
                    pick(q)
                );
            }
        }
        out
    }
}
