//! One AMQP client's way onto the cluster: a connection to a node's AMQP
//! listener that, once lost or refused, is made again to the next node.

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};

use crate::mqtt::session::Net;

/// How long a connection (its handshake included) may take: a node that
/// does not run the gateway carries the client to the one that does,
/// which may be electing.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long any one client operation (a channel, a publish, an
/// acknowledgement, a close) may take before its connection is given up.
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);

/// `op`'s value, or `None` when it failed or took longer than
/// [`OP_TIMEOUT`] (a connection that neither answers nor breaks).
pub async fn bounded<T>(op: impl Future<Output = lapin::Result<T>>) -> Option<T> {
    tokio::time::timeout(OP_TIMEOUT, op).await.ok()?.ok()
}

/// A client's place in the cluster.
pub struct Link {
    /// Its name, as the nemesis sees it (`pub-<i>`, `con-<i>`).
    pub name: String,
    /// The node it connects to next (or is connected to).
    pub node: usize,
    pub net: Net,
}

impl Link {
    pub fn new(name: String, node: usize, net: Net) -> Link {
        Link { name, node, net }
    }

    /// A connection to the current node, or `None` (and the next node is
    /// current) when it cannot be made in time.
    pub async fn connect(&mut self) -> Option<Connection> {
        let addr = self.net.addresses.lock().ok()?.get(self.node)?.clone();
        let uri = format!("amqp://guest:guest@{addr}/%2f");
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            Connection::connect(&uri, ConnectionProperties::default()),
        )
        .await;
        match attempt {
            Ok(Ok(c)) => {
                self.net.connections.set(&self.name, Some(self.node));
                Some(c)
            }
            _ => {
                self.move_on();
                tokio::time::sleep(Duration::from_millis(100)).await;
                None
            }
        }
    }

    /// The connection was lost: the next one goes to the next node.
    pub fn move_on(&mut self) {
        self.net.connections.set(&self.name, None);
        let n = self.net.addresses.lock().map_or(1, |a| a.len().max(1));
        self.node = (self.node + 1) % n;
    }

    /// It is done.
    pub fn leave(&self) {
        self.net.connections.set(&self.name, None);
    }
}
