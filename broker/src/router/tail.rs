//! Following a partition: reading its records in order from an offset, on
//! its leader wherever that is, for as long as the follower wants.
//!
//! A [`Tail`] handles what every follower of a partition meets:
//! - the leader moves (a failover, a reassignment) or is catching up
//!   (`NotLeader`, `LeaderNotReady`): it waits a little and asks again, at
//!   the same position;
//! - the position is out of range (retention removed what it wanted, or
//!   an unclean election cut the log): it goes on from the log start (or
//!   end) and says which offsets it skipped;
//! - any other failure (the leader's node unreachable, a batch that does
//!   not decode): logged, and tried again after a pause.
//!
//! # Cancel safety
//! The position moves only in [`Tail::advance`], so dropping a read (a
//! `select!` that took another branch) loses nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fjord_storage::Record;
use tracing::{debug, warn};

use super::Router;
use crate::api::{FetchRequest, Route};
use crate::batch::decode_records;
use crate::{Error, Result};

/// Pause after a refusal that says the leader is moving.
const MOVING_PAUSE: Duration = Duration::from_millis(100);
/// Pause after any other failure.
const FAILURE_PAUSE: Duration = Duration::from_millis(500);

/// One partition followed from an offset; a clone follows on its own
/// from the same position.
#[derive(Clone)]
pub struct Tail {
    router: Arc<Router>,
    topic: Arc<str>,
    partition: u32,
    next: i64,
    max_bytes: usize,
    max_wait: Duration,
}

/// What one read of a [`Tail`] found; hand it to [`Tail::advance`].
#[derive(Debug)]
pub enum TailRead {
    /// Records at `from` (whole batches) up to `next_offset`.
    Fetched {
        from: i64,
        records: bytes::Bytes,
        next_offset: i64,
        high_watermark: i64,
    },
    /// The position was out of range: go on from `to`.
    Reset { from: i64, to: i64 },
    /// Nothing this time (the leader is moving, or a failure was logged).
    Retry,
    /// The broker is shutting down, or the topic is gone.
    Ended(Error),
}

/// Records read by a [`Tail`], in offset order.
#[derive(Debug, Default)]
pub struct TailBatch {
    /// The records from the tail's position on (none when the read only
    /// learned the high watermark).
    pub records: Vec<Record>,
    /// The partition's high watermark as the leader answered.
    pub high_watermark: i64,
    /// Offsets the tail jumped over because they are no longer in the log
    /// (`from..to`).
    pub skipped: Option<(i64, i64)>,
}

impl Tail {
    pub(crate) fn new(router: Arc<Router>, topic: &str, partition: u32, from: i64) -> Tail {
        Tail {
            router,
            topic: topic.into(),
            partition,
            next: from,
            max_bytes: 1 << 20,
            max_wait: Duration::from_millis(500),
        }
    }

    /// How long a read waits for new records (default 500 ms); zero reads
    /// what is there and returns.
    pub fn max_wait(mut self, wait: Duration) -> Tail {
        self.max_wait = wait;
        self
    }

    /// The most bytes one read returns (a larger first batch whole).
    pub fn max_bytes(mut self, bytes: usize) -> Tail {
        self.max_bytes = bytes;
        self
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// The next offset the tail reads.
    pub fn position(&self) -> i64 {
        self.next
    }

    /// Moves the position (back or forward).
    pub fn seek(&mut self, offset: i64) {
        self.next = offset;
    }

    /// The next read, as a future that owns what it needs (so an actor may
    /// keep it across `select!` rounds); give its outcome to
    /// [`Tail::advance`].
    pub fn read(&self) -> impl Future<Output = TailRead> + Send + 'static {
        let router = Arc::clone(&self.router);
        let request = FetchRequest {
            topic: self.topic.to_string(),
            partition: self.partition,
            offset: self.next,
            max_bytes: self.max_bytes,
            min_bytes: usize::from(!self.max_wait.is_zero()),
            max_wait: self.max_wait,
            route: Route::Leader,
        };
        async move {
            let from = request.offset;
            match router.fetch(&request).await {
                Ok(r) => TailRead::Fetched {
                    from,
                    records: r.records,
                    next_offset: r.next_offset,
                    high_watermark: r.high_watermark,
                },
                Err(Error::OffsetOutOfRange {
                    earliest, latest, ..
                }) if earliest > from || (latest >= 0 && latest < from) => TailRead::Reset {
                    from,
                    to: if earliest > from { earliest } else { latest },
                },
                Err(e @ (Error::ShuttingDown | Error::UnknownTopic(_))) => TailRead::Ended(e),
                Err(e @ (Error::NotLeader { .. } | Error::LeaderNotReady { .. })) => {
                    debug!(
                        topic = request.topic,
                        partition = request.partition,
                        "tail: {e}"
                    );
                    tokio::time::sleep(MOVING_PAUSE).await;
                    TailRead::Retry
                }
                Err(e) => {
                    warn!(
                        topic = request.topic,
                        partition = request.partition,
                        "tail: {e}"
                    );
                    tokio::time::sleep(FAILURE_PAUSE).await;
                    TailRead::Retry
                }
            }
        }
    }

    /// Takes a read's outcome: the records it brought, from the position
    /// on, and the position moves past them. `Ok(None)` when there was
    /// nothing (try again); an error when the tail has ended.
    ///
    /// # Errors
    /// `ShuttingDown`, or `UnknownTopic` for a deleted topic.
    pub fn advance(&mut self, read: TailRead) -> Result<Option<TailBatch>> {
        match read {
            TailRead::Fetched {
                from,
                records,
                next_offset,
                high_watermark,
            } if from == self.next => {
                let records = match decode_records(records, from) {
                    Ok(records) => records,
                    Err(e) => {
                        // A batch that does not decode is skipped, not
                        // read forever.
                        warn!(topic = %self.topic, partition = self.partition, offset = from, "tail skips a batch: {e}");
                        self.next = next_offset.max(from + 1);
                        return Ok(None);
                    }
                };
                self.next = next_offset.max(from);
                Ok(Some(TailBatch {
                    records,
                    high_watermark,
                    skipped: None,
                }))
            }
            TailRead::Reset { from, to } if from == self.next => {
                warn!(topic = %self.topic, partition = self.partition, from, to, "tail: the position is out of the log's range; going on from {to}");
                self.next = to;
                Ok(Some(TailBatch {
                    records: Vec::new(),
                    high_watermark: -1,
                    skipped: Some((from, to)),
                }))
            }
            // A read made before a seek: its records are not wanted.
            TailRead::Fetched { .. } | TailRead::Reset { .. } | TailRead::Retry => Ok(None),
            TailRead::Ended(e) => Err(e),
        }
    }

    /// Reads and advances until something comes (records, a new high
    /// watermark, or a skip).
    ///
    /// # Errors
    /// As [`Tail::advance`].
    ///
    /// # Cancel safety
    /// Safe (see the module header).
    pub async fn next(&mut self) -> Result<TailBatch> {
        loop {
            let read = self.read().await;
            if let Some(batch) = self.advance(read)? {
                return Ok(batch);
            }
        }
    }

    /// Every record from the position up to the partition's end as its
    /// leader knows it now, and that end.
    ///
    /// # Errors
    /// As [`Tail::read_to`].
    pub async fn read_to_end(self) -> Result<(Vec<Record>, i64)> {
        let end = self
            .router
            .list_offset(
                &self.topic,
                self.partition,
                crate::api::OffsetSpec::Latest,
                Route::Leader,
            )
            .await?
            .map_or(0, |(end, _)| end);
        let records = self.read_to(Some(end)).await?;
        Ok((records, end))
    }

    /// Every record from the position up to `to` (or the end as of each
    /// read), not waiting for more; retention having moved the start, it
    /// goes on from there.
    ///
    /// # Errors
    /// As [`Tail::advance`]; `Cluster` or `NotLeader` when the leader
    /// cannot be read for a few seconds.
    pub async fn read_to(mut self, to: Option<i64>) -> Result<Vec<Record>> {
        self.max_wait = Duration::ZERO;
        let mut out = Vec::new();
        let mut failures = 0;
        while to.is_none_or(|to| self.next < to) {
            let before = self.next;
            let read = self.read().await;
            let empty = matches!(&read, TailRead::Fetched { records, .. } if records.is_empty());
            match self.advance(read)? {
                Some(batch) => {
                    out.extend(
                        batch
                            .records
                            .into_iter()
                            .filter(|r| to.is_none_or(|to| r.offset < to)),
                    );
                    if empty || (self.next <= before && batch.skipped.is_none()) {
                        break;
                    }
                }
                None if self.next > before => {}
                None => {
                    failures += 1;
                    if failures > 3 {
                        return Err(Error::Cluster(format!(
                            "{}-{}: the leader cannot be read",
                            self.topic, self.partition
                        )));
                    }
                }
            }
        }
        Ok(out)
    }
}
