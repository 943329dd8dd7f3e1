//! Fetch: committed record batches, as stored, with long polling.
//!
//! Only the leader serves, and only below the high watermark (the commit point), so a
//! consumer never sees a record that could later vanish. The first batch returned may start
//! before the requested offset (the batch containing it; clients skip ahead), and at least
//! one whole batch is returned even when it exceeds the byte limits (KIP-74). When less than
//! `min_bytes` is available the request waits, up to `max_wait_ms`, for any of its
//! partitions' high watermarks to move.
//!
//! Once a response holds [`LATE_READ_MIN`] bytes of records, its record sets are only
//! located here (their lengths are in the index) and read as the response is written, a
//! chunk at a time on a blocking thread ([`LateRead`]): the client receives the first
//! chunk while the broker reads the next, instead of waiting for the whole response to be
//! read first, and no read from disk holds up the runtime.
//!
//! A consumer catching up gets its next response read ahead while it parses this one
//! ([`read_ahead`]).
//!
//! Fetch sessions (KIP-227) are not kept: every request is answered in full, with session
//! id 0, which tells clients to keep sending full requests.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_protocol::batch::{split_batches, Codec};
use strand_protocol::codec::late_records;
use strand_protocol::frame::LateBytes;
use strand_raft::{PartitionReader, PartitionReplica, PartitionStatus};
use strand_storage::BatchLocation;
use tokio::sync::watch;
use tokio::time::Instant;
use uuid::Uuid;

use self::read_ahead::{Held, Item, Next, ReadAhead, ReadAheadPlan, Shelved};
use super::details::{broker_id, check_leader_epoch, leader_brokers, leader_epoch, str_bytes};
use crate::broker::PartitionRoute;
use crate::unsafe_modes::uncommitted_tail;
use crate::Broker;

/// v13 names topics by id (KIP-516); v15, v17 and v18 add only what Kafka's follower
/// replicas send, and v16 the leaders' endpoints (KIP-951).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::Fetch, 4, 18);

pub mod read_ahead;

const MAX_WAIT_CAP: Duration = Duration::from_secs(300);

/// A requested topic, as the request named it: the response names it the same way.
struct Topic {
    name: TopicName,
    id: Uuid,
}

/// One requested partition, resolved once per request.
struct Wanted {
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    current_leader_epoch: i32,
    source: Result<(Arc<PartitionReplica>, watch::Receiver<PartitionStatus>), PartitionError>,
    /// Where its read-ahead would start, and the high watermark it would stop at, as of
    /// the last pass.
    next: Option<(Next, i64)>,
}

/// A fetch's answer: the response, the record sets it holds stand-ins for (see
/// [`strand_protocol::codec::encode_fetch_response`]), and what to read ahead once it has
/// been sent.
pub struct Fetched {
    pub response: FetchResponse,
    pub late: Vec<Box<dyn LateBytes>>,
    pub read_ahead: Option<ReadAheadPlan>,
}

pub async fn handle(
    broker: &Broker,
    request: FetchRequest,
    version: i16,
    read_ahead: &ReadAhead,
) -> Fetched {
    let (mut shelved, generation) = read_ahead.take().await;
    if request.session_id != 0 {
        let response = FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
        return Fetched {
            response,
            late: Vec::new(),
            read_ahead: None,
        };
    }
    let read_committed = request.isolation_level == 1;
    let mut topics: Vec<(Topic, Vec<Wanted>)> = Vec::new();
    for topic in request.topics {
        // From v13 topics are named by id (KIP-516).
        let (info, unknown) = if version >= 13 {
            let info = broker.topic_by_id(topic.topic_id);
            (info, ResponseError::UnknownTopicId)
        } else {
            let info = broker.topic(topic.topic.0.as_str());
            (info, ResponseError::UnknownTopicOrPartition)
        };
        let named = Topic {
            name: topic.topic,
            id: topic.topic_id,
        };
        let wanted = topic
            .partitions
            .into_iter()
            .map(|p| {
                let source = match &info {
                    None => Err((unknown, None)),
                    Some(info) => match broker.route(info, p.partition) {
                        PartitionRoute::Local(replica) => {
                            let status = replica.watch_status();
                            Ok((replica, status))
                        }
                        PartitionRoute::Remote => Err((
                            ResponseError::NotLeaderOrFollower,
                            broker.leader_hint(info, p.partition),
                        )),
                        PartitionRoute::Unknown => {
                            Err((ResponseError::UnknownTopicOrPartition, None))
                        }
                    },
                };
                Wanted {
                    index: p.partition,
                    fetch_offset: p.fetch_offset,
                    partition_max_bytes: p.partition_max_bytes.max(0) as usize,
                    current_leader_epoch: p.current_leader_epoch,
                    source,
                    next: None,
                }
            })
            .collect();
        topics.push((named, wanted));
    }

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    // The node's own limit applies too, as Kafka's broker-side fetch.max.bytes does.
    let max_bytes = match request.max_bytes {
        n if n <= 0 => usize::MAX,
        n => n as usize,
    }
    .min(broker.config.fetch_max_bytes);
    loop {
        let read = read_once(
            broker,
            &mut topics,
            &mut shelved,
            max_bytes,
            read_committed,
            version,
        );
        if read.bytes >= min_bytes || read.errors || Instant::now() >= deadline {
            broker
                .metrics
                .fetched_bytes
                .fetch_add(read.bytes as u64, Relaxed);
            let mut response = FetchResponse::default()
                .with_session_id(0)
                .with_responses(read.responses);
            if version >= 16 {
                response.node_endpoints = leader_endpoints(broker, &response.responses);
            }
            // A response this large says the consumer is behind: it will soon ask for more.
            let read_ahead = (read.bytes >= LATE_READ_MIN)
                .then(|| read_ahead.plan(generation, read_ahead_items(&topics), max_bytes))
                .flatten();
            return Fetched {
                response,
                late: read.late,
                read_ahead,
            };
        }
        wait_for_data(&mut topics, deadline).await;
    }
}

/// Where to reach the leaders named in `current_leader` fields (v16+, KIP-951).
fn leader_endpoints(broker: &Broker, topics: &[FetchableTopicResponse]) -> Vec<NodeEndpoint> {
    let leaders = topics
        .iter()
        .flat_map(|t| &t.partitions)
        .map(|p| p.current_leader.leader_id.0);
    leader_brokers(broker, leaders)
        .into_iter()
        .map(|b| {
            NodeEndpoint::default()
                .with_node_id(broker_id(b.id))
                .with_host(str_bytes(b.host))
                .with_port(b.port as i32)
                .with_rack(b.rack.map(str_bytes))
        })
        .collect()
}

/// What to read ahead for the next fetch, in the order it will most likely list its
/// partitions: librdkafka starts each fetch one partition further down its list.
fn read_ahead_items(topics: &[(Topic, Vec<Wanted>)]) -> Vec<Item> {
    let mut items: Vec<Item> = topics
        .iter()
        .flat_map(|(_, wanted)| wanted)
        .filter_map(|w| {
            let (replica, _) = w.source.as_ref().ok()?;
            let (next, end) = w.next?;
            Some(Item {
                replica: replica.clone(),
                next,
                end,
                max_bytes: w.partition_max_bytes,
            })
        })
        .collect();
    if !items.is_empty() {
        items.rotate_left(1);
    }
    items
}

/// One pass over every requested partition.
struct ReadOnce {
    responses: Vec<FetchableTopicResponse>,
    /// The record bytes in the responses.
    bytes: usize,
    /// Whether any partition had an error (which answers at once, without waiting).
    errors: bool,
    /// The record sets to read as the response is written, in response order.
    late: Vec<Box<dyn LateBytes>>,
}

fn read_once(
    broker: &Broker,
    topics: &mut [(Topic, Vec<Wanted>)],
    shelved: &mut Shelved,
    max_bytes: usize,
    read_committed: bool,
    version: i16,
) -> ReadOnce {
    let mut budget = max_bytes;
    let mut total = 0usize;
    let mut any_error = false;
    let mut late = Vec::new();
    let mut responses = Vec::with_capacity(topics.len());
    for (topic, wanted) in topics.iter_mut() {
        let mut partitions = Vec::with_capacity(wanted.len());
        for w in wanted.iter_mut() {
            let read = read_partition(broker, w, shelved, budget, total, read_committed, version);
            let data = match read {
                Ok(answer) => {
                    total += answer.len;
                    budget = budget.saturating_sub(answer.len);
                    late.extend(answer.late);
                    answer.data
                }
                Err((error, leader)) => {
                    any_error = true;
                    let mut data = PartitionData::default()
                        .with_partition_index(w.index)
                        .with_error_code(error.code())
                        .with_high_watermark(-1)
                        .with_last_stable_offset(-1)
                        .with_log_start_offset(-1)
                        .with_records(Some(Bytes::new()));
                    // The new leader is in the response from v12 on (KIP-951).
                    if let Some((id, epoch)) = leader.filter(|_| version >= 12) {
                        data = data.with_current_leader(
                            LeaderIdAndEpoch::default()
                                .with_leader_id(broker_id(id))
                                .with_leader_epoch(epoch),
                        );
                    }
                    data
                }
            };
            partitions.push(data);
        }
        responses.push(
            FetchableTopicResponse::default()
                .with_topic(topic.name.clone())
                .with_topic_id(topic.id)
                .with_partitions(partitions),
        );
    }
    ReadOnce {
        responses,
        bytes: total,
        errors: any_error,
        late,
    }
}

type PartitionError = (ResponseError, Option<(u64, i32)>);

/// One partition's answer.
struct PartitionAnswer {
    data: PartitionData,
    /// The record bytes in it.
    len: usize,
    /// The read behind the records, if they are read as the response is written.
    late: Option<Box<dyn LateBytes>>,
}

fn read_partition(
    broker: &Broker,
    w: &mut Wanted,
    shelved: &mut Shelved,
    budget: usize,
    earlier_bytes: usize,
    read_committed: bool,
    version: i16,
) -> Result<PartitionAnswer, PartitionError> {
    let first_data = earlier_bytes == 0;
    w.next = None;
    let (replica, status) = w.source.as_mut().map_err(|e| *e)?;
    let leadership = replica.replica.leadership();
    if !leadership.serving {
        let leader = leadership
            .leader
            .filter(|l| *l != broker.node.id())
            .map(|l| (l, leader_epoch(&leadership)));
        return Err((ResponseError::NotLeaderOrFollower, leader));
    }
    check_leader_epoch(w.current_leader_epoch, &leadership).map_err(|e| (e, None))?;
    let current = *status.borrow_and_update();
    let storage_error = |e: strand_storage::StorageError| {
        tracing::error!(error = %e, "cannot read partition data");
        (ResponseError::KafkaStorageError, None)
    };
    // Empty, and the end is the high watermark, unless an unsafe mode says otherwise.
    let (uncommitted, end) =
        uncommitted_tail(broker.config.unsafe_mode, replica, current.high_watermark)
            .map_err(storage_error)?;
    let unapplied = replica.replica.has_unapplied_entries();
    if out_of_range(w.fetch_offset, current.log_start_offset, end, unapplied) {
        tracing::debug!(
            partition = w.index,
            fetch_offset = w.fetch_offset,
            log_start = current.log_start_offset,
            end,
            term = leadership.term,
            "fetch offset out of range"
        );
        return Err((ResponseError::OffsetOutOfRange, None));
    }
    let limit = w.partition_max_bytes.min(budget);
    let mut late: Option<Box<dyn LateBytes>> = None;
    // Where a read-ahead would go on if this partition gets no room here.
    let unserved = (w.fetch_offset < current.high_watermark)
        .then_some((Next::At(w.fetch_offset), current.high_watermark));
    let records = if limit == 0 && !first_data {
        w.next = unserved;
        Bytes::new()
    } else if w.fetch_offset >= current.high_watermark && !uncommitted.is_empty() {
        let mut buf = BytesMut::new();
        for b in uncommitted
            .iter()
            .filter(|b| b.base_offset >= w.fetch_offset)
        {
            buf.extend_from_slice(&b.bytes);
        }
        buf.freeze()
    } else {
        let located = replica
            .reader
            .locate(w.fetch_offset, current.high_watermark, limit.max(1))
            .map_err(storage_error)?;
        let len: usize = located.iter().map(|(_, l)| l.len as usize).sum();
        // Only the first partition with data may exceed the limits, by one batch.
        let too_big = located.first().is_some_and(|(_, l)| l.len as usize > limit);
        w.next = located
            .last()
            .map(|(base, _)| (Next::After(*base), current.high_watermark));
        if !first_data && too_big {
            w.next = unserved;
            Bytes::new()
        } else if let Some(stand_in) = late_records(len).filter(|_| {
            len > 0
                && version >= ZSTD_FETCH_VERSION
                && (earlier_bytes + len >= LATE_READ_MIN || shelved.holds(replica))
                // A later cleaning pass rewrites cleaned batches in place: their length is
                // only known once read.
                && located.iter().all(|(_, l)| !l.is_cleaned())
        }) {
            let used = shelved.take(replica, &located);
            broker
                .read_ahead
                .served_bytes
                .fetch_add(used.bytes() as u64, Relaxed);
            late = Some(Box::new(LateRead {
                reader: replica.reader.clone(),
                next: used.batches,
                located,
                ready: used.pieces,
                _held: used.held,
                len,
            }));
            stand_in
        } else {
            replica
                .reader
                .read_located(&located)
                .map_err(storage_error)?
                .bytes
        }
    };
    let records = if version < ZSTD_FETCH_VERSION {
        let readable = before_zstd(records).map_err(|e| (e, None))?;
        w.next = None;
        readable
    } else {
        records
    };
    let len = records.len();
    let data = PartitionData::default()
        .with_partition_index(w.index)
        .with_high_watermark(end)
        .with_last_stable_offset(end)
        .with_log_start_offset(current.log_start_offset)
        .with_aborted_transactions(read_committed.then(Vec::new))
        .with_preferred_read_replica(kafka_protocol::messages::BrokerId(-1))
        .with_records(Some(records));
    Ok(PartitionAnswer { data, len, late })
}

/// The first Fetch version whose clients can read zstd batches (KIP-110).
const ZSTD_FETCH_VERSION: i16 = 10;

/// The records an older client can read: those before the first zstd batch. A partition
/// whose next batch is zstd is UNSUPPORTED_COMPRESSION_TYPE for it, as in Kafka.
fn before_zstd(records: Bytes) -> Result<Bytes, ResponseError> {
    let readable: usize = split_batches(&records)
        .take_while(|(header, _)| header.codec() != Some(Codec::Zstd))
        .map(|(_, batch)| batch.len())
        .sum();
    if readable == 0 && !records.is_empty() {
        return Err(ResponseError::UnsupportedCompressionType);
    }
    Ok(records.slice(..readable))
}

/// Whether a fetch at `offset` is out of range of a log that starts at `log_start` and
/// serves up to `end`, the high watermark. Kafka answers offsets between the high watermark
/// and the log end with no records and calls only those past the log end out of range,
/// which sends the consumer to its reset position, perhaps the end, past records it never
/// read. Entries appended but not applied yet stand here for that stretch.
fn out_of_range(offset: i64, log_start: i64, end: i64, log_holds_unapplied: bool) -> bool {
    offset < log_start || (offset > end && !log_holds_unapplied)
}

/// Record sets are read at once while the response's records stay under this many bytes:
/// they cost little to read before it goes out. From there on they are read as the
/// response is written, on a blocking thread: a fetch of many small record sets from disk
/// would otherwise hold up a runtime worker for all of them.
const LATE_READ_MIN: usize = 256 * 1024;

/// How much a late read reads at a time: one read from disk (RocksDB merges the reads of
/// adjacent blobs), small enough for the first bytes to leave soon.
const LATE_CHUNK: usize = 2 << 20;

/// The end of the chunk of `located` that starts at `start`: about `chunk` bytes of
/// batches, at least one.
fn chunk_end(located: &[(i64, BatchLocation)], start: usize, chunk: usize) -> usize {
    let mut end = start;
    let mut bytes = 0;
    while end < located.len() && (end == start || bytes < chunk) {
        bytes += located[end].1.len as usize;
        end += 1;
    }
    end
}

/// A partition's located batches, read a chunk at a time as the response is written.
struct LateRead {
    reader: PartitionReader,
    located: Vec<(i64, BatchLocation)>,
    /// The first batches' pieces, read ahead: sent before anything is read.
    ready: Vec<Bytes>,
    /// The read-ahead's hold on the node's budget, until those are sent.
    _held: Vec<Held>,
    /// The first batch not read yet.
    next: usize,
    len: usize,
}

impl LateBytes for LateRead {
    fn len(&self) -> usize {
        self.len
    }

    fn next_chunk(&mut self) -> std::io::Result<Option<Vec<Bytes>>> {
        if !self.ready.is_empty() {
            return Ok(Some(std::mem::take(&mut self.ready)));
        }
        if self.next == self.located.len() {
            return Ok(None);
        }
        let end = chunk_end(&self.located, self.next, LATE_CHUNK);
        let pieces = self
            .reader
            .read_located_pieces(&self.located[self.next..end])
            .map_err(|e| std::io::Error::other(format!("reading records to send: {e}")))?;
        self.next = end;
        Ok(Some(pieces))
    }
}

/// Waits until any requested partition's status changes, or the deadline passes.
async fn wait_for_data(topics: &mut [(Topic, Vec<Wanted>)], deadline: Instant) {
    let mut changes: Vec<_> = topics
        .iter_mut()
        .flat_map(|(_, wanted)| wanted.iter_mut())
        .filter_map(|w| w.source.as_mut().ok())
        .map(|(_, status)| Box::pin(status.changed()))
        .collect();
    if changes.is_empty() {
        tokio::time::sleep_until(deadline).await;
        return;
    }
    let _ = tokio::time::timeout_at(deadline, select_all(changes.iter_mut())).await;
}

#[cfg(test)]
mod tests {
    use super::out_of_range;

    #[test]
    fn above_the_high_watermark_is_out_of_range_only_once_the_log_is_applied() {
        // A log from 10, served up to 20.
        assert!(out_of_range(9, 10, 20, false));
        assert!(out_of_range(9, 10, 20, true));
        assert!(!out_of_range(10, 10, 20, false));
        assert!(!out_of_range(20, 10, 20, false));
        assert!(out_of_range(21, 10, 20, false));
        // Entries past the high watermark are in the log: offset 21 may be among them.
        assert!(!out_of_range(21, 10, 20, true));
    }
}
