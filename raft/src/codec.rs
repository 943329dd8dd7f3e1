//! How Raft entries and hard state are stored and sent.
//!
//! An entry is laid out by hand so that a record batch inside an append entry sits at a
//! known position: the partition index points straight into the stored entry, and Fetch
//! copies the batch out without decoding anything else.
//!
//! ```text
//!  0  term u64 | 8  index u64 | 16  kind u8
//!  kind 0 blank
//!  kind 1 membership   17: postcard(Membership)
//!  kind 2 append       17: batch count n u32, then n × (len u32, last offset delta i32,
//!                          max timestamp i64, producer id i64, producer epoch i16,
//!                          base sequence i32), then the batches back to back
//!  kind 3 command      17: postcard(Command), any other command
//!  kind 4 timed append 17: as kind 2, then the leader's clock i64 after the batches, so
//!                          the batches sit where they would in kind 2
//! ```
//!
//! Everything else (votes, log ids) is postcard.

use bytes::Bytes;
use openraft::{CommittedLeaderId, EntryPayload};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::types::{AppendBatches, BatchSummary, Command, Entry, LogId};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("cannot decode stored value: {0}")]
    Postcard(#[from] postcard::Error),
    #[error("stored entry is malformed: {0}")]
    Entry(&'static str),
}

pub fn encode<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("in-memory values always encode")
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    Ok(postcard::from_bytes(bytes)?)
}

const HEADER: usize = 17;
const SUMMARY: usize = 30;
const BLANK: u8 = 0;
const MEMBERSHIP: u8 = 1;
const APPEND: u8 = 2;
const COMMAND: u8 = 3;
const APPEND_AT: u8 = 4;

/// Where the batches of an append entry with `batch_count` batches begin.
pub fn append_data_start(batch_count: usize) -> usize {
    HEADER + 4 + SUMMARY * batch_count
}

/// The term of a stored entry (its batches' partition leader epoch).
pub fn entry_term(stored: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(stored.get(0..8)?.try_into().ok()?))
}

pub fn encode_entry(entry: &Entry) -> Vec<u8> {
    let mut out = Vec::with_capacity(match &entry.payload {
        EntryPayload::Normal(command) => command.append().map_or(64, |a| {
            append_data_start(a.batches.len()) + a.data.len() + 8
        }),
        _ => 64,
    });
    out.extend_from_slice(&entry.log_id.leader_id.term.to_be_bytes());
    out.extend_from_slice(&entry.log_id.index.to_be_bytes());
    match &entry.payload {
        EntryPayload::Blank => out.push(BLANK),
        EntryPayload::Membership(m) => {
            out.push(MEMBERSHIP);
            out.extend_from_slice(&encode(m));
        }
        EntryPayload::Normal(Command::Append(a)) => {
            out.push(APPEND);
            encode_append(a, &mut out);
        }
        EntryPayload::Normal(Command::AppendAt { append, now }) => {
            out.push(APPEND_AT);
            encode_append(append, &mut out);
            out.extend_from_slice(&now.to_be_bytes());
        }
        EntryPayload::Normal(command) => {
            out.push(COMMAND);
            out.extend_from_slice(&encode(command));
        }
    }
    out
}

/// An append's batch count, summaries and batches.
fn encode_append(a: &AppendBatches, out: &mut Vec<u8>) {
    out.extend_from_slice(&(a.batches.len() as u32).to_be_bytes());
    for s in &a.batches {
        out.extend_from_slice(&s.len.to_be_bytes());
        out.extend_from_slice(&s.last_offset_delta.to_be_bytes());
        out.extend_from_slice(&s.max_timestamp.to_be_bytes());
        out.extend_from_slice(&s.producer_id.to_be_bytes());
        out.extend_from_slice(&s.producer_epoch.to_be_bytes());
        out.extend_from_slice(&s.base_sequence.to_be_bytes());
    }
    out.extend_from_slice(&a.data);
}

/// Decodes a stored entry. The batches of an append entry share the stored buffer.
pub fn decode_entry(stored: Vec<u8>) -> Result<Entry, DecodeError> {
    if stored.len() < HEADER {
        return Err(DecodeError::Entry("shorter than its header"));
    }
    let word = |at: usize| u64::from_be_bytes(stored[at..at + 8].try_into().expect("8 bytes"));
    let log_id = LogId::new(CommittedLeaderId::new(word(0), 0), word(8));
    let payload = match stored[16] {
        BLANK => EntryPayload::Blank,
        MEMBERSHIP => EntryPayload::Membership(decode(&stored[HEADER..])?),
        COMMAND => EntryPayload::Normal(decode(&stored[HEADER..])?),
        APPEND => EntryPayload::Normal(Command::Append(decode_append(stored, 0)?)),
        APPEND_AT => {
            let now = stored
                .len()
                .checked_sub(8)
                .filter(|at| *at >= HEADER)
                .map(|at| i64::from_be_bytes(stored[at..].try_into().expect("8 bytes")))
                .ok_or(DecodeError::Entry("timed append entry without its time"))?;
            let append = decode_append(stored, 8)?;
            EntryPayload::Normal(Command::AppendAt { append, now })
        }
        _ => return Err(DecodeError::Entry("unknown entry kind")),
    };
    Ok(Entry { log_id, payload })
}

/// The batches of a stored append entry, which ends `trailer` bytes after them.
fn decode_append(stored: Vec<u8>, trailer: usize) -> Result<AppendBatches, DecodeError> {
    let count = stored
        .get(HEADER..HEADER + 4)
        .map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize)
        .ok_or(DecodeError::Entry("append entry without a batch count"))?;
    let data_start = append_data_start(count);
    if stored.len() < data_start + trailer {
        return Err(DecodeError::Entry(
            "append entry shorter than its summaries",
        ));
    }
    let batches = (0..count)
        .map(|i| {
            let at = HEADER + 4 + i * SUMMARY;
            let s = &stored[at..at + SUMMARY];
            BatchSummary {
                len: u32::from_be_bytes(s[0..4].try_into().expect("4 bytes")),
                last_offset_delta: i32::from_be_bytes(s[4..8].try_into().expect("4 bytes")),
                max_timestamp: i64::from_be_bytes(s[8..16].try_into().expect("8 bytes")),
                producer_id: i64::from_be_bytes(s[16..24].try_into().expect("8 bytes")),
                producer_epoch: i16::from_be_bytes(s[24..26].try_into().expect("2 bytes")),
                base_sequence: i32::from_be_bytes(s[26..30].try_into().expect("4 bytes")),
            }
        })
        .collect();
    let end = stored.len() - trailer;
    Ok(AppendBatches {
        data: Bytes::from(stored).slice(data_start..end),
        batches,
        ..AppendBatches::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ControllerCommand;
    use std::collections::BTreeMap;

    fn round_trip(entry: Entry) -> Entry {
        decode_entry(encode_entry(&entry)).unwrap()
    }

    #[test]
    fn entries_round_trip_and_batches_sit_where_the_index_says() {
        let data = Bytes::from_static(b"AAAABBBBBB");
        let batches = vec![
            BatchSummary {
                len: 4,
                last_offset_delta: 0,
                max_timestamp: 7,
                producer_id: -1,
                producer_epoch: -1,
                base_sequence: -1,
            },
            BatchSummary {
                len: 6,
                last_offset_delta: 2,
                max_timestamp: -1,
                producer_id: 1 << 40,
                producer_epoch: 3,
                base_sequence: i32::MAX,
            },
        ];
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(3, 0), 42),
            payload: EntryPayload::Normal(Command::Append(AppendBatches {
                data: data.clone(),
                batches: batches.clone(),
                ..AppendBatches::default()
            })),
        };
        let stored = encode_entry(&entry);
        assert_eq!(entry_term(&stored), Some(3));
        let start = append_data_start(2);
        assert_eq!(&stored[start..start + 4], b"AAAA");
        assert_eq!(&stored[start + 4..], b"BBBBBB");
        let back = round_trip(entry);
        assert_eq!(back.log_id.index, 42);
        match back.payload {
            EntryPayload::Normal(Command::Append(a)) => {
                assert_eq!(a.data, data);
                assert_eq!(a.batches, batches);
            }
            other => panic!("decoded {other:?}"),
        }

        let blank = round_trip(Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 1),
            payload: EntryPayload::Blank,
        });
        assert!(matches!(blank.payload, EntryPayload::Blank));
        let expire = round_trip(Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 3),
            payload: EntryPayload::Normal(Command::ExpireProducers { before: 99 }),
        });
        assert!(matches!(
            expire.payload,
            EntryPayload::Normal(Command::ExpireProducers { before: 99 })
        ));
        let command = ControllerCommand::CreateTopic {
            name: "t".into(),
            topic_id: [1; 16],
            replicas: vec![vec![1]],
            configs: BTreeMap::new(),
        };
        let controller = round_trip(Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), 2),
            payload: EntryPayload::Normal(Command::Controller(command)),
        });
        assert!(matches!(
            controller.payload,
            EntryPayload::Normal(Command::Controller(_))
        ));
    }

    #[test]
    fn a_timed_append_keeps_its_batches_where_an_untimed_one_has_them() {
        let data = Bytes::from_static(b"AAAA");
        let append = AppendBatches {
            data: data.clone(),
            batches: vec![BatchSummary {
                len: 4,
                last_offset_delta: 0,
                max_timestamp: 7,
                producer_id: 5,
                producer_epoch: 0,
                base_sequence: 0,
            }],
            ..AppendBatches::default()
        };
        let entry = |payload| Entry {
            log_id: LogId::new(CommittedLeaderId::new(2, 0), 9),
            payload: EntryPayload::Normal(payload),
        };
        let timed = encode_entry(&entry(Command::AppendAt {
            append: append.clone(),
            now: 1_800_000_000_000,
        }));
        let untimed = encode_entry(&entry(Command::Append(append.clone())));
        let start = append_data_start(1);
        assert_eq!(&timed[start..start + 4], &untimed[start..]);
        match decode_entry(timed).unwrap().payload {
            EntryPayload::Normal(Command::AppendAt { append: a, now }) => {
                assert_eq!(now, 1_800_000_000_000);
                assert_eq!((a.data, a.batches), (data, append.batches));
            }
            other => panic!("decoded {other:?}"),
        }
        let mut no_time = vec![0u8; 21];
        no_time[16] = APPEND_AT;
        assert!(decode_entry(no_time).is_err());
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert!(decode_entry(vec![0; 5]).is_err());
        let mut bad_kind = vec![0u8; 17];
        bad_kind[16] = 9;
        assert!(decode_entry(bad_kind).is_err());
        let mut short_append = vec![0u8; 21];
        short_append[16] = APPEND;
        short_append[20] = 3;
        assert!(decode_entry(short_append.clone()).is_err());
        // A timed append counting more batches than its bytes hold, time included.
        short_append[16] = APPEND_AT;
        short_append.extend_from_slice(&[0; 8]);
        assert!(decode_entry(short_append).is_err());
    }
}
