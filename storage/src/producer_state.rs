//! Idempotent producers: per producer id, its epoch and its last five
//! batches (sequence range and offsets), so a retried batch is answered
//! with the offsets it already has instead of being stored twice.
//!
//! # Rules (Kafka's)
//! - Batches with producer id -1 are not idempotent and always appended.
//! - An older epoch than the one stored is fenced.
//! - A newer epoch starts again at sequence 0.
//! - In the same epoch, a batch equal to one of the last five is a
//!   duplicate; the next batch must start right after the last sequence;
//!   anything else is out of order.
//! - A producer this log does not know (new, or its batches were deleted by
//!   retention) may start at any sequence.
//!
//! # Crash
//! Rebuilt on open from the batch headers of the whole log, so it matches
//! what survived recovery.

use std::collections::{HashMap, VecDeque};

use crate::batch::BatchHeader;
use crate::{Error, Result};

/// How many recent batches per producer are remembered (Kafka: 5, the
/// most a producer may have in flight).
const REMEMBERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Remembered {
    first_seq: i32,
    last_seq: i32,
    base_offset: i64,
    last_offset: i64,
}

#[derive(Debug, Clone)]
struct Producer {
    epoch: i16,
    batches: VecDeque<Remembered>,
}

/// What to do with an incoming batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// Already stored at these offsets.
    Duplicate {
        base_offset: i64,
        last_offset: i64,
    },
}

/// The producer table of one partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerState {
    producers: HashMap<i64, Producer>,
}

fn last_seq(h: &BatchHeader) -> i32 {
    h.base_sequence.wrapping_add(h.last_offset_delta)
}

impl ProducerState {
    /// Judges a batch against the table.
    ///
    /// # Errors
    /// `ProducerFenced` for an old epoch; `OutOfOrderSequence` for a gap or
    /// a reused sequence that is not a retry of a remembered batch.
    pub(crate) fn check(&self, h: &BatchHeader) -> Result<Verdict> {
        if h.producer_id < 0 {
            return Ok(Verdict::Append);
        }
        let Some(p) = self.producers.get(&h.producer_id) else {
            return Ok(Verdict::Append);
        };
        if h.producer_epoch < p.epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current: p.epoch,
            });
        }
        if h.producer_epoch > p.epoch {
            if h.base_sequence != 0 {
                return Err(Error::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    got: h.base_sequence,
                });
            }
            return Ok(Verdict::Append);
        }
        if let Some(r) = p
            .batches
            .iter()
            .find(|r| r.first_seq == h.base_sequence && r.last_seq == last_seq(h))
        {
            return Ok(Verdict::Duplicate {
                base_offset: r.base_offset,
                last_offset: r.last_offset,
            });
        }
        let expected = p
            .batches
            .back()
            .map_or(h.base_sequence, |r| r.last_seq.wrapping_add(1));
        if h.base_sequence != expected {
            return Err(Error::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                got: h.base_sequence,
            });
        }
        Ok(Verdict::Append)
    }

    /// Records a stored batch (its header carries its real base offset).
    pub(crate) fn record(&mut self, h: &BatchHeader) {
        if h.producer_id < 0 {
            return;
        }
        let p = self.producers.entry(h.producer_id).or_insert(Producer {
            epoch: h.producer_epoch,
            batches: VecDeque::new(),
        });
        if h.producer_epoch != p.epoch {
            p.epoch = h.producer_epoch;
            p.batches.clear();
        }
        p.batches.push_back(Remembered {
            first_seq: h.base_sequence,
            last_seq: last_seq(h),
            base_offset: h.base_offset,
            last_offset: h.last_offset(),
        });
        while p.batches.len() > REMEMBERED {
            p.batches.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: i64, epoch: i16, seq: i32, records: i32, base_offset: i64) -> BatchHeader {
        BatchHeader {
            base_offset,
            batch_length: 0,
            partition_leader_epoch: 0,
            magic: 2,
            crc: 0,
            attributes: 0,
            last_offset_delta: records - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            producer_epoch: epoch,
            base_sequence: seq,
            records_count: records,
        }
    }

    #[test]
    fn retries_are_duplicates_gaps_and_old_epochs_are_refused() {
        let mut s = ProducerState::default();
        assert_eq!(s.check(&header(7, 0, 0, 3, 0)).unwrap(), Verdict::Append);
        s.record(&header(7, 0, 0, 3, 10));
        s.record(&header(7, 0, 3, 2, 13));
        // A retry of either remembered batch gets its offsets back.
        assert_eq!(
            s.check(&header(7, 0, 0, 3, 0)).unwrap(),
            Verdict::Duplicate {
                base_offset: 10,
                last_offset: 12
            }
        );
        assert_eq!(
            s.check(&header(7, 0, 3, 2, 0)).unwrap(),
            Verdict::Duplicate {
                base_offset: 13,
                last_offset: 14
            }
        );
        assert_eq!(s.check(&header(7, 0, 5, 1, 0)).unwrap(), Verdict::Append);
        assert!(matches!(
            s.check(&header(7, 0, 7, 1, 0)),
            Err(Error::OutOfOrderSequence {
                expected: 5,
                got: 7,
                ..
            })
        ));
        assert!(matches!(
            s.check(&header(7, 0, 1, 1, 0)),
            Err(Error::OutOfOrderSequence { .. })
        ));
        // A new epoch restarts at 0; after it, the old epoch is fenced.
        assert!(matches!(
            s.check(&header(7, 1, 5, 1, 0)),
            Err(Error::OutOfOrderSequence { expected: 0, .. })
        ));
        s.record(&header(7, 1, 0, 1, 15));
        assert!(matches!(
            s.check(&header(7, 0, 5, 1, 0)),
            Err(Error::ProducerFenced { current: 1, .. })
        ));
        // Non-idempotent and unknown producers are appended as they come.
        assert_eq!(s.check(&header(-1, -1, -1, 1, 0)).unwrap(), Verdict::Append);
        assert_eq!(s.check(&header(8, 0, 42, 1, 0)).unwrap(), Verdict::Append);
    }

    #[test]
    fn only_the_last_five_batches_are_remembered() {
        let mut s = ProducerState::default();
        for i in 0..7 {
            s.record(&header(1, 0, i, 1, i64::from(i)));
        }
        assert!(matches!(
            s.check(&header(1, 0, 2, 1, 0)),
            Ok(Verdict::Duplicate { base_offset: 2, .. })
        ));
        assert!(
            s.check(&header(1, 0, 1, 1, 0)).is_err(),
            "too old to recognise"
        );
    }
}
