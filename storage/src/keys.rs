//! Every RocksDB key layout, with encode and decode side by side. Nothing else builds keys.
//!
//! All integers are big-endian so that byte order is numeric order; signed values that
//! must sort (timestamps) have their sign bit flipped.
//!
//! ```text
//! raft_log   [group u64][index u64]                       -> entry
//! raft_state [group u64][RAFT_VOTE | RAFT_COMMITTED | RAFT_PURGED]
//! state      [group u64][APPLIED]                         -> last applied log id + membership
//!            [group u64][PARTITION_META]                  -> next offset, log start, …
//!            [group u64][TOMBSTONE_EXPIRY]                -> i64: when the log cleaner's next
//!                                                            pass may drop a tombstone
//!            [group u64][BATCH][base_offset u64]          -> where the batch is (entry, position, length)
//!            [group u64][TIME_INDEX][max_ts i64*][base_offset u64]   (running max time)
//!            [group u64][EPOCH][epoch u32]                -> first offset of that epoch
//!            [group u64][PRODUCER][producer_id i64*]      -> idempotent producer state
//!            [group u64][CLEANED][base_offset u64]        -> delete horizon i64 + a batch as the log
//!                                                            cleaner rewrote it
//!            [group u64][RECORD][name bytes]              -> a state machine's named record
//!
//! The controller group's (group 0) named records:
//!            [0][RECORD]"topic/"[topic name]              -> topic
//!            [0][RECORD]"broker/"[node id u64]            -> broker
//!            [0][RECORD]"offset/"[len u32][group][len u32][topic][partition i32]
//!                                                         -> committed offset
//!            [0][RECORD]"reassign/"[partition's group u64] -> target replicas
//!            [0][RECORD]"feature/"[feature name]          -> finalized level i16
//!            [0][RECORD]"next_group" | "next_producer_id" -> counters
//! ```

/// A Raft group id: 0 is the controller, partitions get ids from the controller.
pub type RaftGroupId = u64;

pub const RAFT_VOTE: u8 = 1;
pub const RAFT_COMMITTED: u8 = 2;
pub const RAFT_PURGED: u8 = 3;

pub const APPLIED: u8 = 0x00;
pub const PARTITION_META: u8 = 0x01;
pub const TOMBSTONE_EXPIRY: u8 = 0x02;
pub const BATCH: u8 = 0x10;
pub const TIME_INDEX: u8 = 0x11;
pub const EPOCH: u8 = 0x12;
pub const PRODUCER: u8 = 0x13;
pub const CLEANED: u8 = 0x14;
pub const RECORD: u8 = 0x20;

pub fn raft_log(group: RaftGroupId, index: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8..].copy_from_slice(&index.to_be_bytes());
    k
}

/// The log index of a `raft_log` key.
pub fn raft_log_index(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.get(8..16)?.try_into().ok()?))
}

/// The first key after every key of `group` in any family: the exclusive end of its range.
pub fn group_end(group: RaftGroupId) -> [u8; 8] {
    (group + 1).to_be_bytes()
}

pub fn group_start(group: RaftGroupId) -> [u8; 8] {
    group.to_be_bytes()
}

pub fn raft_state(group: RaftGroupId, which: u8) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[..8].copy_from_slice(&group.to_be_bytes());
    k[8] = which;
    k
}

/// `[group][tag]`: a fixed per-group record in the `state` family, and the prefix of the
/// multi-key ones.
pub fn state(group: RaftGroupId, tag: u8) -> [u8; 9] {
    raft_state(group, tag)
}

/// The exclusive end of all `[group][tag]…` keys.
pub fn state_tag_end(group: RaftGroupId, tag: u8) -> Vec<u8> {
    if tag == u8::MAX {
        group_end(group).to_vec()
    } else {
        state(group, tag + 1).to_vec()
    }
}

pub fn batch(group: RaftGroupId, base_offset: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&state(group, BATCH));
    k[9..].copy_from_slice(&(base_offset as u64).to_be_bytes());
    k
}

/// The base offset of a `batch` key.
pub fn batch_base_offset(key: &[u8]) -> Option<i64> {
    Some(u64::from_be_bytes(key.get(9..17)?.try_into().ok()?) as i64)
}

/// A batch the log cleaner rewrote, which lives here instead of in its Raft entry.
pub fn cleaned(group: RaftGroupId, base_offset: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&state(group, CLEANED));
    k[9..].copy_from_slice(&(base_offset as u64).to_be_bytes());
    k
}

fn sortable_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn unsortable_i64(b: &[u8]) -> Option<i64> {
    Some((u64::from_be_bytes(b.try_into().ok()?) ^ (1 << 63)) as i64)
}

pub fn time_index(group: RaftGroupId, max_timestamp: i64, base_offset: i64) -> [u8; 25] {
    let mut k = [0u8; 25];
    k[..9].copy_from_slice(&state(group, TIME_INDEX));
    k[9..17].copy_from_slice(&sortable_i64(max_timestamp));
    k[17..].copy_from_slice(&(base_offset as u64).to_be_bytes());
    k
}

/// `(max_timestamp, base_offset)` of a `time_index` key.
pub fn decode_time_index(key: &[u8]) -> Option<(i64, i64)> {
    let ts = unsortable_i64(key.get(9..17)?)?;
    let base = u64::from_be_bytes(key.get(17..25)?.try_into().ok()?) as i64;
    Some((ts, base))
}

pub fn epoch(group: RaftGroupId, epoch: u32) -> [u8; 13] {
    let mut k = [0u8; 13];
    k[..9].copy_from_slice(&state(group, EPOCH));
    k[9..].copy_from_slice(&epoch.to_be_bytes());
    k
}

pub fn decode_epoch(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(9..13)?.try_into().ok()?))
}

pub fn producer(group: RaftGroupId, producer_id: i64) -> [u8; 17] {
    let mut k = [0u8; 17];
    k[..9].copy_from_slice(&state(group, PRODUCER));
    k[9..].copy_from_slice(&sortable_i64(producer_id));
    k
}

pub fn decode_producer(key: &[u8]) -> Option<i64> {
    unsortable_i64(key.get(9..17)?)
}

fn record(group: RaftGroupId, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + name.len());
    k.extend_from_slice(&state(group, RECORD));
    k.extend_from_slice(name);
    k
}

/// The name part of a `record` key.
fn record_name(key: &[u8]) -> &[u8] {
    key.get(9..).unwrap_or_default()
}

/// The controller group: cluster metadata and committed offsets.
pub const CONTROLLER_GROUP: RaftGroupId = 0;

const TOPIC_PREFIX: &[u8] = b"topic/";
const BROKER_PREFIX: &[u8] = b"broker/";
const OFFSET_PREFIX: &[u8] = b"offset/";
const REASSIGN_PREFIX: &[u8] = b"reassign/";
const FEATURE_PREFIX: &[u8] = b"feature/";
const NEXT_GROUP: &[u8] = b"next_group";
const NEXT_PRODUCER_ID: &[u8] = b"next_producer_id";

/// One named record of the controller group's state machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControllerRecord {
    Topic(String),
    Broker(u64),
    /// A consumer group's committed offset. Group and topic are length-prefixed, so any name
    /// (Kafka allows almost any group id) maps to one key and a group's keys are adjacent.
    Offset {
        group: String,
        topic: String,
        partition: i32,
    },
    /// A partition move, by the partition's Raft group.
    Reassign(RaftGroupId),
    /// A cluster feature's finalized level, by the feature's name.
    Feature(String),
    NextGroup,
    NextProducerId,
}

impl ControllerRecord {
    /// The full state key of this record.
    pub fn key(&self) -> Vec<u8> {
        let mut name = Vec::new();
        match self {
            ControllerRecord::Topic(topic) => {
                name.extend_from_slice(TOPIC_PREFIX);
                name.extend_from_slice(topic.as_bytes());
            }
            ControllerRecord::Broker(id) => {
                name.extend_from_slice(BROKER_PREFIX);
                name.extend_from_slice(&id.to_be_bytes());
            }
            ControllerRecord::Offset {
                group,
                topic,
                partition,
            } => {
                name.extend_from_slice(OFFSET_PREFIX);
                for part in [group, topic] {
                    name.extend_from_slice(&(part.len() as u32).to_be_bytes());
                    name.extend_from_slice(part.as_bytes());
                }
                name.extend_from_slice(&partition.to_be_bytes());
            }
            ControllerRecord::Reassign(group) => {
                name.extend_from_slice(REASSIGN_PREFIX);
                name.extend_from_slice(&group.to_be_bytes());
            }
            ControllerRecord::Feature(feature) => {
                name.extend_from_slice(FEATURE_PREFIX);
                name.extend_from_slice(feature.as_bytes());
            }
            ControllerRecord::NextGroup => name.extend_from_slice(NEXT_GROUP),
            ControllerRecord::NextProducerId => name.extend_from_slice(NEXT_PRODUCER_ID),
        }
        record(CONTROLLER_GROUP, &name)
    }

    /// The key range holding every controller record: start, exclusive end.
    pub fn range() -> (Vec<u8>, Vec<u8>) {
        (
            state(CONTROLLER_GROUP, RECORD).to_vec(),
            state_tag_end(CONTROLLER_GROUP, RECORD),
        )
    }

    /// The record a controller state key names: `Ok(None)` for a name no version wrote,
    /// `Err` describing a key of a known kind that cannot be read.
    pub fn decode(key: &[u8]) -> Result<Option<ControllerRecord>, String> {
        let name = record_name(key);
        let unreadable = || format!("controller record {name:?}");
        let u64_of = |b: &[u8]| {
            b.try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| unreadable())
        };
        Ok(Some(if let Some(topic) = name.strip_prefix(TOPIC_PREFIX) {
            ControllerRecord::Topic(String::from_utf8_lossy(topic).into_owned())
        } else if let Some(id) = name.strip_prefix(BROKER_PREFIX) {
            ControllerRecord::Broker(u64_of(id)?)
        } else if let Some(rest) = name.strip_prefix(OFFSET_PREFIX) {
            decode_offset_name(rest).ok_or_else(unreadable)?
        } else if let Some(group) = name.strip_prefix(REASSIGN_PREFIX) {
            ControllerRecord::Reassign(u64_of(group)?)
        } else if let Some(feature) = name.strip_prefix(FEATURE_PREFIX) {
            ControllerRecord::Feature(String::from_utf8_lossy(feature).into_owned())
        } else if name == NEXT_GROUP {
            ControllerRecord::NextGroup
        } else if name == NEXT_PRODUCER_ID {
            ControllerRecord::NextProducerId
        } else {
            return Ok(None);
        }))
    }
}

fn decode_offset_name(mut name: &[u8]) -> Option<ControllerRecord> {
    let take = |name: &mut &[u8]| -> Option<String> {
        let len = u32::from_be_bytes(name.get(..4)?.try_into().ok()?) as usize;
        let text = String::from_utf8(name.get(4..4 + len)?.to_vec()).ok()?;
        *name = &name[4 + len..];
        Some(text)
    };
    let group = take(&mut name)?;
    let topic = take(&mut name)?;
    let partition = i32::from_be_bytes(name.try_into().ok()?);
    Some(ControllerRecord::Offset {
        group,
        topic,
        partition,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_group_then_number() {
        assert!(raft_log(1, u64::MAX) < raft_log(2, 0));
        assert!(raft_log(2, 0).as_slice() < group_end(2).as_slice());
        assert!(batch(7, 9) < batch(7, 10));
        assert!(batch(7, i64::MAX).as_slice() < state_tag_end(7, BATCH).as_slice());
        assert!(time_index(3, -5, 0) < time_index(3, 0, 0));
        assert!(time_index(3, 0, 0) < time_index(3, 1, 0));
        assert!(producer(3, -1) < producer(3, 0));
        assert!(cleaned(7, 9) < cleaned(7, 10));
        assert!(cleaned(7, i64::MAX).as_slice() < state_tag_end(7, CLEANED).as_slice());
    }

    #[test]
    fn keys_decode_to_what_was_encoded() {
        assert_eq!(raft_log_index(&raft_log(4, 99)), Some(99));
        assert_eq!(batch_base_offset(&batch(4, 1234)), Some(1234));
        assert_eq!(decode_time_index(&time_index(4, -77, 12)), Some((-77, 12)));
        assert_eq!(decode_epoch(&epoch(4, 5)), Some(5));
        assert_eq!(decode_producer(&producer(4, -3)), Some(-3));
        assert_eq!(record_name(&record(0, b"topic/a")), b"topic/a");
    }

    #[test]
    fn controller_records_decode_to_what_was_encoded() {
        let records = [
            ControllerRecord::Topic("orders".into()),
            ControllerRecord::Broker(3),
            ControllerRecord::Offset {
                group: "g/with/slashes".into(),
                topic: "t".into(),
                partition: -1,
            },
            ControllerRecord::Reassign(42),
            ControllerRecord::Feature("strand.version".into()),
            ControllerRecord::NextGroup,
            ControllerRecord::NextProducerId,
        ];
        for r in records {
            assert_eq!(ControllerRecord::decode(&r.key()), Ok(Some(r)));
        }
        assert_eq!(
            ControllerRecord::decode(&record(CONTROLLER_GROUP, b"unknown")),
            Ok(None)
        );
        assert!(ControllerRecord::decode(&record(CONTROLLER_GROUP, b"offset/\0\0")).is_err());
    }

    #[test]
    fn controller_keys_keep_their_stored_layout() {
        let offset = ControllerRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 2,
        };
        let mut expected = b"offset/".to_vec();
        expected.extend_from_slice(&[0, 0, 0, 1, b'g', 0, 0, 0, 1, b't', 0, 0, 0, 2]);
        assert_eq!(record_name(&offset.key()), expected.as_slice());
        assert_eq!(
            record_name(&ControllerRecord::Broker(1).key()),
            b"broker/\0\0\0\0\0\0\0\x01"
        );
        assert_eq!(
            record_name(&ControllerRecord::NextGroup.key()),
            b"next_group"
        );
        assert_eq!(
            record_name(&ControllerRecord::NextProducerId.key()),
            b"next_producer_id"
        );
        assert_eq!(
            record_name(&ControllerRecord::Topic("orders".into()).key()),
            b"topic/orders"
        );
        assert_eq!(
            record_name(&ControllerRecord::Reassign(2).key()),
            b"reassign/\0\0\0\0\0\0\0\x02"
        );
        assert_eq!(&ControllerRecord::NextGroup.key()[..9], &state(0, RECORD));
    }
}
