//! Who is subscribed to what, who is online, and how far each log
//! partition has been dispatched.
//!
//! # Concurrency
//! One `std::sync::Mutex` in the gateway guards it. A dispatcher holds it
//! while it hands one fetched batch to the subscribers' queues and moves
//! its position; a connection holds it while it registers or unregisters.
//! So a session that registers sees a clean cut: every record below the
//! snapshot of positions went to the sessions online before it, every
//! record from it on comes to it too.
//!
//! A session whose queue is full when a message comes is not dropped
//! from: it is marked behind on that partition and reads the rest
//! from the log itself (the log is the queue), then goes live again under
//! the same lock, so nothing is skipped or seen twice.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::session::LogRef;
use crate::trie::SubscriptionTrie;

/// One message for one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub(crate) msg: Arc<Message>,
    pub(crate) at: LogRef,
    /// min(published QoS, granted QoS).
    pub(crate) qos: u8,
    /// The RETAIN flag to send.
    pub(crate) retain: bool,
    pub(crate) subscription_ids: Vec<u32>,
}

/// A connected session.
#[derive(Debug)]
pub(crate) struct Online {
    pub(crate) tx: mpsc::Sender<Delivery>,
    /// Cancelled to take the session over (or on administrative close).
    pub(crate) kick: CancellationToken,
    /// Turns true once the connection has stored its session and left.
    pub(crate) done: watch::Receiver<bool>,
    pub(crate) connection: u64,
    /// Partitions this session fell behind on (its queue was full): the
    /// offset it has not seen from. Dispatchers skip
    /// them; the connection reads them from the log until it catches up.
    pub(crate) behind: BTreeMap<(String, u32), i64>,
    /// Woken when `behind` gains a partition.
    pub(crate) wake: Arc<Notify>,
    /// The connection has ended and is storing the session: dispatchers
    /// skip it, and a new connection with its client id waits for `done`.
    pub(crate) closing: bool,
    /// The offset of this connection's claim on its client id; an older
    /// claim from another node does not take it over.
    pub(crate) claim: i64,
    /// Set when another node's claim took the session over.
    pub(crate) handed_to: Option<i64>,
}

/// Dispatch positions: (log topic, partition) → next offset.
pub(crate) type Positions = BTreeMap<(String, u32), i64>;

#[derive(Debug, Default)]
pub(crate) struct Registry {
    pub(crate) trie: SubscriptionTrie<String>,
    pub(crate) online: HashMap<String, Online>,
    pub(crate) positions: Positions,
    /// The high watermark each dispatcher last fetched.
    pub(crate) ends: Positions,
}
