//! Appending published messages to a queue's log, held through a leader
//! failover.
//!
//! While the partition's leader moves (its node died, or handed it over),
//! appends are refused for a few seconds. The broker's router already asks
//! again for a while; a publish refused beyond that is asked again here,
//! with backoff, for up to [`APPEND_WAIT`] in all, so its confirm is held
//! rather than nacked (as RabbitMQ's quorum queues hold a confirm through
//! a leader election). Only refusals that prove nothing was written are
//! asked again: a write whose outcome is unknown (a timeout, a broken
//! connection, a leader deposed after it wrote) is nacked at once, or the
//! queue could hold the message twice.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use fjord_broker::{Broker, Error as BrokerError, NewRecord, ProduceRequest};

use super::QueueHandle;
use crate::message::Message;

/// Longest a publish waits for its queue's partition to take appends
/// again before it is nacked.
pub(crate) const APPEND_WAIT: Duration = Duration::from_secs(10);

/// First pause between attempts; it doubles up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(50);
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// Appends `messages` to queue `q`'s topic; `Ok` once committed (then
/// counted, and the new log end recorded, in its stats).
///
/// # Errors
/// The broker's error, at once when the write may have been made, or
/// after [`APPEND_WAIT`] of refusals that prove it was not.
pub(crate) async fn append(
    broker: &Broker,
    q: &QueueHandle,
    messages: &[Arc<Message>],
) -> crate::Result<()> {
    let records: Vec<NewRecord> = messages.iter().map(|m| m.to_record()).collect();
    let topic = q.topic.to_string();
    let done = held(APPEND_WAIT, || {
        broker.produce(ProduceRequest::records(
            topic.clone(),
            Some(0),
            records.clone(),
        ))
    })
    .await
    .map_err(crate::Error::Broker)?;
    q.stats.appended(done.last_offset + 1);
    q.stats
        .published
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    Ok(())
}

/// True for a refusal that proves the write was not made: the node asked
/// does not lead (or no node does yet), the new leader is not ready, or
/// the in-sync replicas are too few to take it.
fn nothing_written(e: &BrokerError) -> bool {
    matches!(
        e,
        BrokerError::NotLeader { .. }
            | BrokerError::LeaderNotReady { .. }
            | BrokerError::NotEnoughReplicas { .. }
    )
}

/// Runs `op` until it succeeds, fails in a way that may have written, or
/// `wait` passes; pauses between attempts double from [`FIRST_PAUSE`].
async fn held<T, F, Fut>(wait: Duration, mut op: F) -> Result<T, BrokerError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, BrokerError>>,
{
    let deadline = tokio::time::Instant::now() + wait;
    let mut pause = FIRST_PAUSE;
    loop {
        match op().await {
            Err(e) if nothing_written(&e) && tokio::time::Instant::now() + pause < deadline => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    fn not_leader() -> BrokerError {
        BrokerError::NotLeader {
            topic: "q".into(),
            partition: 0,
            leader: None,
        }
    }

    /// `op` that fails with `refusal()` `n` times, then succeeds; and how
    /// many times it ran.
    async fn refused_then_ok(
        n: usize,
        wait: Duration,
        refusal: fn() -> BrokerError,
    ) -> (Result<(), BrokerError>, usize) {
        let calls = AtomicUsize::new(0);
        let r = held(wait, || {
            let k = calls.fetch_add(1, Ordering::Relaxed);
            async move { if k < n { Err(refusal()) } else { Ok(()) } }
        })
        .await;
        (r, calls.load(Ordering::Relaxed))
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_refused_while_the_leader_moves_is_appended_once_it_is_back() {
        let (r, calls) = refused_then_ok(12, APPEND_WAIT, not_leader).await;
        assert!(r.is_ok());
        assert_eq!(calls, 13);
        let (r, _) = refused_then_ok(3, APPEND_WAIT, || BrokerError::NotEnoughReplicas {
            topic: "q".into(),
            partition: 0,
            isr: 1,
            required: 2,
        })
        .await;
        assert!(r.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_publish_refused_for_longer_than_the_wait_is_refused() {
        let (r, calls) = refused_then_ok(usize::MAX, APPEND_WAIT, not_leader).await;
        assert!(matches!(r, Err(BrokerError::NotLeader { .. })));
        // 50, 100, 200, 400 ms, then every 500 ms: about 10 s in all.
        assert!((20..=25).contains(&calls), "{calls} attempts");
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_of_unknown_outcome_is_not_made_again() {
        let (r, calls) = refused_then_ok(1, APPEND_WAIT, || {
            BrokerError::Timeout("it may still be committed".into())
        })
        .await;
        assert!(matches!(r, Err(BrokerError::Timeout(_))));
        assert_eq!(calls, 1);
        let (r, calls) = refused_then_ok(1, APPEND_WAIT, || {
            BrokerError::Cluster("the connection broke".into())
        })
        .await;
        assert!(r.is_err());
        assert_eq!(calls, 1);
    }
}
