//! Waiting for this node to lead what it should (on start, after creating
//! a topic), and handing leadership away (a controlled shutdown).

use std::time::{Duration, Instant};

use fjord_raft::MetadataRequest;
use tracing::{info, warn};

use super::ReplicaManager;
use super::partition::Role;

/// How long a start waits for the node to lead what it leads.
const SETTLE_WAIT: Duration = Duration::from_secs(15);

/// How long a controlled shutdown tries to hand its leaderships over
/// (fencing itself through the quorum, then waiting for them to move).
const HAND_OFF_WAIT: Duration = Duration::from_secs(4);

impl ReplicaManager {
    /// Waits (a bounded time) until this node is registered and leads what
    /// the metadata says it leads, serving reads: a node that restarts
    /// announces itself ready to clients only then.
    pub(crate) async fn await_settled(&self) {
        let deadline = Instant::now() + SETTLE_WAIT;
        while !self.settled() {
            if Instant::now() >= deadline {
                warn!(
                    "the node is not settled after {SETTLE_WAIT:?} (is a majority of voters up?); serving anyway"
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn settled(&self) -> bool {
        if !self.quorum.has_quorum() {
            return false;
        }
        let me = self.quorum.id;
        let registered = self
            .quorum
            .read(|s| s.brokers.get(&me).is_some_and(|b| !b.fenced));
        registered && self.leads_what_it_should(None)
    }

    /// True when every partition the metadata says this node leads (of
    /// `topic`, or of every topic) serves reads here.
    fn leads_what_it_should(&self, topic: Option<&str>) -> bool {
        let me = self.quorum.id;
        let led: Vec<(String, u32)> = self.quorum.read(|s| {
            s.topics
                .iter()
                .filter(|(name, _)| topic.is_none_or(|t| t == name.as_str()))
                .flat_map(|(name, t)| {
                    t.partitions
                        .iter()
                        .enumerate()
                        .filter(|(_, p)| p.leader == Some(me))
                        .map(|(i, _)| (name.clone(), i as u32))
                })
                .collect()
        });
        led.iter()
            .all(|(t, p)| self.replica(t, *p).is_ok_and(|p| p.serves_reads()))
    }

    /// Applies the metadata now and waits (at most `wait`) until every
    /// partition of `topic` that this node leads serves reads, so that a
    /// topic is usable here when its creation returns.
    pub(crate) async fn await_local_leaders(&self, topic: &str, wait: Duration) {
        self.reconcile().await;
        let deadline = tokio::time::Instant::now() + wait;
        while !self.leads_what_it_should(Some(topic)) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// True while this node leads some partition.
    fn leads_any(&self) -> bool {
        self.all()
            .iter()
            .any(|(_, p)| matches!(&*p.role(), Role::Leader { .. }))
    }

    /// Controlled shutdown: stop heartbeating and fence this broker through
    /// the quorum, so the controller moves its leaderships to in-sync
    /// replicas; wait (a few seconds at most, the fencing included) until
    /// it leads nothing. A node alone has nobody to hand anything to.
    ///
    /// # Errors
    /// What it gave up on and why, in words: no metadata quorum to commit
    /// the hand-over, or leadership that did not move in time.
    pub(crate) async fn hand_off(&self) -> Result<(), String> {
        self.quorum.leave();
        let me = self.quorum.id;
        let others = self
            .quorum
            .read(|s| s.brokers.values().any(|b| b.id != me && !b.fenced));
        if !others || !self.leads_any() {
            return Ok(());
        }
        let what = "handing partition leadership over";
        if !self.quorum.has_quorum() {
            return Err(format!("{what} (no metadata quorum to commit it)"));
        }
        info!("controlled shutdown: handing partition leadership away");
        let deadline = Instant::now() + HAND_OFF_WAIT;
        let fence = self.quorum.propose(MetadataRequest::FenceBroker { id: me });
        match tokio::time::timeout(HAND_OFF_WAIT, fence).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(format!("{what} ({e})")),
            Err(_) => {
                return Err(format!(
                    "{what} (fencing this node did not commit within {HAND_OFF_WAIT:?})"
                ));
            }
        }
        while self.leads_any() && Instant::now() < deadline {
            self.reconcile().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.leads_any() {
            return Err(format!(
                "{what} (some had not moved after {HAND_OFF_WAIT:?})"
            ));
        }
        Ok(())
    }
}
