//! Fetch: committed record batches, as stored, with long polling.
//!
//! Only the leader serves, and only below the high watermark (the commit point), so a
//! consumer never sees a record that could later vanish. The first batch returned may start
//! before the requested offset (the batch containing it; clients skip ahead), and at least
//! one whole batch is returned even when it exceeds the byte limits (KIP-74). When less than
//! `min_bytes` is available the request waits, up to `max_wait_ms`, for any of its
//! partitions' high watermarks to move.
//!
//! Fetch sessions (KIP-227) are not kept: every request is answered in full, with session
//! id 0, which tells clients to keep sending full requests.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::future::select_all;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use strand_raft::{PartitionReplica, PartitionStatus};
use tokio::sync::watch;
use tokio::time::Instant;

use super::details::{broker_id, check_leader_epoch, leader_epoch};
use crate::broker::PartitionRoute;
use crate::unsafe_modes::uncommitted_tail;
use crate::Broker;

const MAX_WAIT_CAP: Duration = Duration::from_secs(300);

/// One requested partition, resolved once per request.
struct Wanted {
    index: i32,
    fetch_offset: i64,
    partition_max_bytes: usize,
    current_leader_epoch: i32,
    source: Result<(Arc<PartitionReplica>, watch::Receiver<PartitionStatus>), PartitionError>,
}

pub async fn handle(broker: &Broker, request: FetchRequest, version: i16) -> FetchResponse {
    if request.session_id != 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let read_committed = request.isolation_level == 1;
    let mut topics: Vec<(TopicName, Vec<Wanted>)> = Vec::new();
    for topic in request.topics {
        let info = broker.topic(topic.topic.0.as_str());
        let wanted = topic
            .partitions
            .into_iter()
            .map(|p| {
                let source = match &info {
                    None => Err((ResponseError::UnknownTopicOrPartition, None)),
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
                }
            })
            .collect();
        topics.push((topic.topic, wanted));
    }

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64).min(MAX_WAIT_CAP);
    let deadline = Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = match request.max_bytes {
        n if n <= 0 => usize::MAX,
        n => n as usize,
    };
    loop {
        let (responses, bytes, errors) =
            read_once(broker, &mut topics, max_bytes, read_committed, version);
        if bytes >= min_bytes || errors || Instant::now() >= deadline {
            broker
                .metrics
                .fetched_bytes
                .fetch_add(bytes as u64, Relaxed);
            return FetchResponse::default()
                .with_session_id(0)
                .with_responses(responses);
        }
        wait_for_data(&mut topics, deadline).await;
    }
}

/// Reads every partition once. Returns the topic responses, the record bytes in them and
/// whether any partition had an error (which answers at once, without waiting).
fn read_once(
    broker: &Broker,
    topics: &mut [(TopicName, Vec<Wanted>)],
    max_bytes: usize,
    read_committed: bool,
    version: i16,
) -> (Vec<FetchableTopicResponse>, usize, bool) {
    let mut budget = max_bytes;
    let mut total = 0usize;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(topics.len());
    for (name, wanted) in topics.iter_mut() {
        let mut partitions = Vec::with_capacity(wanted.len());
        for w in wanted.iter_mut() {
            let first_data = total == 0;
            let data = match read_partition(broker, w, budget, first_data, read_committed) {
                Ok((data, len)) => {
                    total += len;
                    budget = budget.saturating_sub(len);
                    data
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
                .with_topic(name.clone())
                .with_partitions(partitions),
        );
    }
    (responses, total, any_error)
}

type PartitionError = (ResponseError, Option<(u64, i32)>);

fn read_partition(
    broker: &Broker,
    w: &mut Wanted,
    budget: usize,
    first_data: bool,
    read_committed: bool,
) -> Result<(PartitionData, usize), PartitionError> {
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
    if w.fetch_offset < current.log_start_offset || w.fetch_offset > end {
        tracing::debug!(
            fetch_offset = w.fetch_offset,
            log_start = current.log_start_offset,
            end,
            term = leadership.term,
            "fetch offset out of range"
        );
        return Err((ResponseError::OffsetOutOfRange, None));
    }
    let limit = w.partition_max_bytes.min(budget);
    let records = if limit == 0 && !first_data {
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
        let read = replica
            .reader
            .read(w.fetch_offset, current.high_watermark, limit.max(1))
            .map_err(storage_error)?;
        // Only the first partition with data may exceed the limits, by one batch.
        if !first_data && read.first_len() > limit {
            Bytes::new()
        } else {
            read.bytes
        }
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
    Ok((data, len))
}

/// Waits until any requested partition's status changes, or the deadline passes.
async fn wait_for_data(topics: &mut [(TopicName, Vec<Wanted>)], deadline: Instant) {
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
