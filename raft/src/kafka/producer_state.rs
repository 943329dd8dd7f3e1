//! Idempotent producers: the sequence rules, and the per-partition state they need.
//!
//! Each producer id has an epoch and numbers its batches per partition with consecutive
//! sequence numbers (wrapping from `i32::MAX` to 0). The partition remembers, per producer,
//! the epoch and its last five batches. When a batch is applied:
//!
//! - an older epoch than the producer's is fenced (INVALID_PRODUCER_EPOCH);
//! - a batch equal to one of the last five (same epoch and sequence range) is a retry: it
//!   is not stored again and its original base offset is returned;
//! - in the current epoch the batch must continue the sequence (OUT_OF_ORDER_SEQUENCE);
//! - a newer epoch must start again at sequence 0;
//! - a producer the partition does not know (new, or expired) may start anywhere, as in
//!   Kafka since KIP-360.
//!
//! The checks run when a command is applied, so every replica reaches the same verdict and
//! the state survives restarts and leader changes: it is derived from the replicated log.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::types::Rejection;

/// Batches remembered per producer for duplicate detection (Kafka's and clients' figure:
/// at most five requests in flight per partition).
pub const BATCHES_KEPT: usize = 5;

/// One remembered batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SequencedBatch {
    pub first_seq: i32,
    pub last_seq: i32,
    pub base_offset: i64,
}

/// What a partition knows about one producer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// Oldest first.
    pub batches: VecDeque<SequencedBatch>,
    /// The time of its latest batch (see [`ProducerBatch::time`]), for expiry.
    pub last_timestamp: i64,
}

impl ProducerEntry {
    pub fn last_seq(&self) -> Option<i32> {
        self.batches.back().map(|b| b.last_seq)
    }
}

/// The producer fields of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_offset_delta: i32,
    /// The leader's clock when it proposed the batch, or (appended before every node could
    /// read such a time) the batch's largest create time.
    pub time: i64,
    /// Whether `time` is the leader's clock: it then replaces the producer's time, so a
    /// create time far ahead, written before the clock was used, does not linger.
    pub leader_clock: bool,
}

impl ProducerBatch {
    pub fn last_seq(&self) -> i32 {
        increment_sequence(self.first_seq, self.last_offset_delta)
    }
}

/// The verdict on a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Append,
    /// A retry of a batch already stored at `base_offset`.
    Duplicate {
        base_offset: i64,
    },
    Reject(Rejection),
}

/// `seq + by`, wrapping past `i32::MAX` to 0 as Kafka sequences do.
pub fn increment_sequence(seq: i32, by: i32) -> i32 {
    if seq > i32::MAX - by {
        by - (i32::MAX - seq) - 1
    } else {
        seq + by
    }
}

fn in_sequence(last: i32, next: i32) -> bool {
    next == increment_sequence(last, 1)
}

/// Judges `batch` against what the partition knows of its producer.
pub fn check(known: Option<&ProducerEntry>, batch: &ProducerBatch) -> Verdict {
    let Some(entry) = known else {
        return Verdict::Append;
    };
    if batch.epoch < entry.epoch {
        return Verdict::Reject(Rejection::InvalidProducerEpoch);
    }
    if batch.epoch > entry.epoch {
        return if batch.first_seq == 0 {
            Verdict::Append
        } else {
            Verdict::Reject(Rejection::OutOfOrderSequence)
        };
    }
    let last_seq = batch.last_seq();
    if let Some(original) = entry
        .batches
        .iter()
        .find(|b| b.first_seq == batch.first_seq && b.last_seq == last_seq)
    {
        return Verdict::Duplicate {
            base_offset: original.base_offset,
        };
    }
    match entry.last_seq() {
        Some(last) if !in_sequence(last, batch.first_seq) => {
            Verdict::Reject(Rejection::OutOfOrderSequence)
        }
        _ => Verdict::Append,
    }
}

/// Records an appended batch in the producer's entry (creating or re-epoching it).
pub fn record(
    known: Option<&ProducerEntry>,
    batch: &ProducerBatch,
    base_offset: i64,
) -> ProducerEntry {
    let mut entry = match known {
        Some(e) if e.epoch == batch.epoch => e.clone(),
        _ => ProducerEntry {
            epoch: batch.epoch,
            batches: VecDeque::with_capacity(BATCHES_KEPT),
            last_timestamp: i64::MIN,
        },
    };
    if entry.batches.len() == BATCHES_KEPT {
        entry.batches.pop_front();
    }
    entry.batches.push_back(SequencedBatch {
        first_seq: batch.first_seq,
        last_seq: batch.last_seq(),
        base_offset,
    });
    entry.last_timestamp = if batch.leader_clock {
        batch.time
    } else {
        entry.last_timestamp.max(batch.time)
    };
    entry
}

/// All producers of one partition, with the ids changed since the last write.
#[derive(Debug, Default)]
pub struct Producers {
    pub entries: HashMap<i64, ProducerEntry>,
    pub changed: Vec<i64>,
    pub removed: Vec<i64>,
}

impl Producers {
    /// Forgets producers whose last batch is older than `before` (a replicated decision,
    /// so every replica forgets the same ones).
    pub fn expire(&mut self, before: i64) -> usize {
        let old: Vec<i64> = self
            .entries
            .iter()
            .filter(|(_, e)| e.last_timestamp < before)
            .map(|(id, _)| *id)
            .collect();
        for id in &old {
            self.entries.remove(id);
        }
        let n = old.len();
        self.removed.extend(old);
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(epoch: i16, first_seq: i32, records: i32) -> ProducerBatch {
        ProducerBatch {
            producer_id: 7,
            epoch,
            first_seq,
            last_offset_delta: records - 1,
            time: 1_000,
            leader_clock: false,
        }
    }

    /// Applies batches in order, returning the verdicts, with offsets counting up.
    fn run(batches: &[ProducerBatch]) -> Vec<Verdict> {
        let mut entry: Option<ProducerEntry> = None;
        let mut next_offset = 0;
        batches
            .iter()
            .map(|b| {
                let verdict = check(entry.as_ref(), b);
                if verdict == Verdict::Append {
                    entry = Some(record(entry.as_ref(), b, next_offset));
                    next_offset += b.last_offset_delta as i64 + 1;
                }
                verdict
            })
            .collect()
    }

    #[test]
    fn consecutive_batches_append_and_retries_get_their_original_offset() {
        let v = run(&[
            batch(0, 0, 3),
            batch(0, 3, 2),
            batch(0, 0, 3),
            batch(0, 3, 2),
            batch(0, 5, 1),
        ]);
        assert_eq!(
            v,
            [
                Verdict::Append,
                Verdict::Append,
                Verdict::Duplicate { base_offset: 0 },
                Verdict::Duplicate { base_offset: 3 },
                Verdict::Append
            ]
        );
    }

    #[test]
    fn a_gap_is_out_of_order_and_an_old_epoch_is_fenced() {
        assert_eq!(
            run(&[batch(1, 0, 2), batch(1, 3, 1)])[1],
            Verdict::Reject(Rejection::OutOfOrderSequence)
        );
        assert_eq!(
            run(&[batch(2, 0, 1), batch(1, 1, 1)])[1],
            Verdict::Reject(Rejection::InvalidProducerEpoch)
        );
    }

    #[test]
    fn a_new_epoch_restarts_at_zero() {
        assert_eq!(run(&[batch(0, 0, 5), batch(1, 0, 1)])[1], Verdict::Append);
        assert_eq!(
            run(&[batch(0, 0, 5), batch(1, 5, 1)])[1],
            Verdict::Reject(Rejection::OutOfOrderSequence)
        );
    }

    #[test]
    fn unknown_producers_may_start_anywhere() {
        assert_eq!(
            run(&[batch(3, 42, 1), batch(3, 43, 1)]),
            [Verdict::Append, Verdict::Append]
        );
    }

    #[test]
    fn only_the_last_five_batches_are_recognised_as_duplicates() {
        let mut batches: Vec<ProducerBatch> = (0..6).map(|i| batch(0, i, 1)).collect();
        batches.push(batch(0, 1, 1)); // still among the last five
        batches.push(batch(0, 0, 1)); // evicted: now merely out of order
        let v = run(&batches);
        assert_eq!(v[6], Verdict::Duplicate { base_offset: 1 });
        assert_eq!(v[7], Verdict::Reject(Rejection::OutOfOrderSequence));
    }

    #[test]
    fn sequences_wrap_from_i32_max_to_zero() {
        assert_eq!(increment_sequence(i32::MAX, 1), 0);
        assert_eq!(increment_sequence(i32::MAX - 1, 3), 1);
        let v = run(&[batch(0, i32::MAX - 1, 2), batch(0, 0, 1)]);
        assert_eq!(v, [Verdict::Append, Verdict::Append]);
        let wrapped = batch(0, i32::MAX, 3);
        assert_eq!(wrapped.last_seq(), 1);
    }

    #[test]
    fn expiry_forgets_idle_producers() {
        let mut p = Producers::default();
        let mut old = record(None, &batch(0, 0, 1), 0);
        old.last_timestamp = 10;
        p.entries.insert(1, old);
        p.entries.insert(2, record(None, &batch(0, 0, 1), 1));
        assert_eq!(p.expire(500), 1);
        assert!(p.entries.contains_key(&2) && !p.entries.contains_key(&1));
        assert_eq!(p.removed, [1]);
    }
}
