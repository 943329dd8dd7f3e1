//! Produce: validate each partition's record batches, replicate them through the
//! partition's Raft group, and answer with the base offset once they are committed.
//!
//! acks=all and acks=1 both wait for a majority to have the batch on disk (acks=1 is
//! treated as all: stronger than Kafka, and legal). acks=0 gets no response at all; if
//! anything fails, the connection is closed so the client refreshes its metadata, as Kafka
//! does.

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;
use strand_protocol::batch::{
    split_batches, validate_produce_records, BatchError, BatchHeader, Codec, ProducedBatches,
};
use strand_protocol::records::TimestampBounds;
use strand_raft::{
    AppendBatches, BatchSummary, Command, PartitionReplica, Proposal, ProposeError, Rejection,
    Response, TopicInfo,
};

use super::details::{broker_id, leader_brokers, leader_epoch, str_bytes};
use crate::broker::PartitionRoute;
use crate::cluster::{self, TopicError};
use crate::features;
use crate::metrics::Refused;
use crate::topics::TopicSettings;
use crate::unsafe_modes::UnsafeMode;
use crate::Broker;

/// Advertised from v0 although only v3+ is decoded, as Kafka 4 does: librdkafka turns
/// compression off when Produce v0 is missing. v0-v2 requests are refused by the codec.
/// v13 names topics by id (KIP-516).
pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::Produce, 0, 13);

pub enum Answer {
    Respond(ProduceResponse),
    /// acks=0 and everything succeeded.
    Nothing,
    /// acks=0 and something failed.
    Close,
}

/// The shortest and longest time a produce request may wait for replication.
const TIMEOUT_RANGE: (u64, u64) = (1_000, 300_000);

/// Validates every partition's batches and hands them to their Raft groups, in request
/// order, then returns a future that waits for them to commit and builds the answer.
///
/// Submitting before the connection reads its next request is what keeps two pipelined
/// requests to one partition in the order the producer sent them.
pub async fn submit(
    broker: &Arc<Broker>,
    request: ProduceRequest,
    version: i16,
) -> impl Future<Output = Answer> + Send + 'static {
    let acks = request.acks;
    let timeout = Duration::from_millis(
        (request.timeout_ms.max(0) as u64).clamp(TIMEOUT_RANGE.0, TIMEOUT_RANGE.1),
    );
    // Set once the request has waited for news of a producer id allocation.
    let mut waited = false;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for data in request.topic_data {
        // From v13 topics are named by id (KIP-516), and only existing ones.
        let topic = if version >= 13 {
            broker
                .topic_by_id(data.topic_id)
                .ok_or(ResponseError::UnknownTopicId)
        } else {
            cluster::get_or_auto_create(broker, data.name.0.as_str(), true)
                .await
                .map_err(|e| match e {
                    TopicError::InvalidName(_) => ResponseError::InvalidTopicException,
                    _ => ResponseError::UnknownTopicOrPartition,
                })
        };
        let mut partitions = Vec::with_capacity(data.partition_data.len());
        for p in data.partition_data {
            let index = p.index;
            let submitted = match (&topic, acks) {
                (_, a) if !matches!(a, -1..=1) => Err(ResponseError::InvalidRequiredAcks.into()),
                (Err(error), _) => Err((*error).into()),
                (Ok(topic), _) => submit_partition(broker, topic, p, version, &mut waited).await,
            };
            partitions.push((index, submitted));
        }
        topics.push((data.name, data.topic_id, partitions));
    }

    let broker = broker.clone();
    async move {
        let topics = join_all(topics.into_iter().map(|(name, topic_id, partitions)| {
            let broker = &broker;
            async move {
                let responses =
                    join_all(partitions.into_iter().map(|(index, submitted)| async move {
                        let result = match submitted {
                            Ok(submitted) => submitted.committed(broker, timeout).await,
                            Err(failure) => Err(failure),
                        };
                        match result {
                            Ok((base_offset, log_start_offset)) => {
                                PartitionProduceResponse::default()
                                    .with_index(index)
                                    .with_base_offset(base_offset)
                                    .with_log_start_offset(log_start_offset)
                            }
                            Err(failure) => failure.response(index, version),
                        }
                    }))
                    .await;
                TopicProduceResponse::default()
                    .with_name(name)
                    .with_topic_id(topic_id)
                    .with_partition_responses(responses)
            }
        }))
        .await;
        if acks == 0 {
            let failed = topics
                .iter()
                .flat_map(|t| &t.partition_responses)
                .any(|p| p.error_code != 0);
            return if failed {
                Answer::Close
            } else {
                Answer::Nothing
            };
        }
        let endpoints = if version >= 10 {
            leader_endpoints(&broker, &topics)
        } else {
            Vec::new()
        };
        Answer::Respond(
            ProduceResponse::default()
                .with_responses(topics)
                .with_node_endpoints(endpoints),
        )
    }
}

/// Where to reach the leaders named in `current_leader` fields, so clients can move to
/// them without asking for metadata first (KIP-951).
fn leader_endpoints(broker: &Broker, topics: &[TopicProduceResponse]) -> Vec<NodeEndpoint> {
    let leaders = topics
        .iter()
        .flat_map(|t| &t.partition_responses)
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

/// A partition's error, with what the client needs to recover.
struct Failure {
    error: ResponseError,
    message: Option<String>,
    leader: Option<(u64, i32)>,
    /// The one record at fault, counted across the partition's records.
    record: Option<i32>,
}

impl From<ResponseError> for Failure {
    fn from(error: ResponseError) -> Self {
        Failure {
            error,
            message: None,
            leader: None,
            record: None,
        }
    }
}

impl Failure {
    fn refused(error: ResponseError, message: impl Into<String>) -> Failure {
        Failure {
            message: Some(message.into()),
            ..error.into()
        }
    }

    fn response(self, index: i32, version: i16) -> PartitionProduceResponse {
        let mut r = PartitionProduceResponse::default()
            .with_index(index)
            .with_error_code(self.error.code())
            .with_base_offset(-1)
            .with_error_message(self.message.clone().map(str_bytes));
        // Kafka's producer fails only the record named and retries the rest (KIP-467).
        if let Some(record) = self.record.filter(|_| version >= 8) {
            r = r.with_record_errors(vec![BatchIndexAndErrorMessage::default()
                .with_batch_index(record)
                .with_batch_index_error_message(self.message.map(str_bytes))]);
        }
        // The new leader is in the response from v10 on (KIP-951).
        if let Some((leader, epoch)) = self.leader.filter(|_| version >= 10) {
            r = r.with_current_leader(
                LeaderIdAndEpoch::default()
                    .with_leader_id(broker_id(leader))
                    .with_leader_epoch(epoch),
            );
        }
        r
    }
}

/// Reads every record of a partition's batches. If any is `compressed`, they are read on a
/// blocking thread, a few at a time (`Broker::inflating`): inflating may take a while, and
/// the runtime's workers serve every connection.
async fn validate(
    broker: &Broker,
    records: Bytes,
    compressed: bool,
    times: TimestampBounds,
) -> Result<ProducedBatches, BatchError> {
    let limit = broker.config.max_inflated_batch_bytes;
    if !compressed {
        return validate_produce_records(&records, limit, &times);
    }
    let turn = broker
        .inflating
        .clone()
        .acquire_owned()
        .await
        .expect("the inflating semaphore is never closed");
    // The turn goes with the job: it is held until the job ends, even if this request is
    // dropped meanwhile.
    tokio::task::spawn_blocking(move || {
        let _turn = turn;
        validate_produce_records(&records, limit, &times)
    })
    .await
    .unwrap_or_else(|e| Err(BatchError::Undecodable(format!("validation failed: {e}"))))
}

/// How long a produce request waits for this node to learn of a producer id allocated
/// through another node: this node's copy of the controller state may hear of the
/// allocation a heartbeat after the client got the id.
const ALLOCATION_WAIT: Duration = Duration::from_secs(2);

/// Whether the cluster handed out producer id `id` (and every id below it: ids come in
/// increasing blocks). An id this node has not heard of is waited for, but a request waits
/// at most once (`waited`), whatever ids it names. Made-up ids would each take a place in
/// a partition's producer table.
async fn allocated(broker: &Broker, id: i64, waited: &mut bool) -> bool {
    let controller = broker.node.controller();
    if controller.metadata().next_producer_id > id {
        return true;
    }
    if std::mem::replace(waited, true) {
        return false;
    }
    let mut metadata = controller.watch_metadata();
    let heard = metadata.wait_for(|m| m.next_producer_id > id);
    let answer = tokio::time::timeout(ALLOCATION_WAIT, heard).await;
    matches!(answer, Ok(Ok(_)))
}

fn batch_failure(e: BatchError) -> Failure {
    let error =
        ResponseError::try_from_code(e.error_code()).unwrap_or(ResponseError::CorruptMessage);
    Failure {
        record: e.record(),
        ..Failure::refused(error, e.to_string())
    }
}

fn not_leader(replica: &PartitionReplica, leader: Option<u64>, message: Option<String>) -> Failure {
    Failure {
        message,
        leader: leader.map(|l| (l, leader_epoch(&replica.replica.leadership()))),
        ..ResponseError::NotLeaderOrFollower.into()
    }
}

/// A partition's batches, handed to its Raft group.
struct Submitted {
    replica: Arc<PartitionReplica>,
    proposal: Proposal,
    records: u64,
    bytes: u64,
}

impl Submitted {
    /// Waits for the append to commit; returns the base offset and log start offset.
    async fn committed(self, broker: &Broker, timeout: Duration) -> Result<(i64, i64), Failure> {
        if broker.config.unsafe_mode.is(UnsafeMode::AckBeforeCommit) {
            // The self-check's unsafe mode: success before any other replica has the batch
            // (base offset unknown, so -1, as for acks=0).
            return Ok((-1, -1));
        }
        // A leader cut off from its majority answers at once rather than at the timeout:
        // the producer then finds the new leader (the entry may still commit, so an
        // idempotent producer's retry is safe; a plain one may duplicate, as on timeout).
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(timeout, self.proposal.outcome()) => outcome,
            () = self.replica.replica.quorum_lost() => {
                return Err(not_leader(
                    &self.replica,
                    None,
                    Some("the leader lost contact with a majority of the replicas".into()),
                ));
            }
        };
        match outcome {
            Ok(Ok(Response::Appended {
                base_offset,
                log_start_offset,
            })) => {
                broker
                    .metrics
                    .produced_records
                    .fetch_add(self.records, Relaxed);
                broker.metrics.produced_bytes.fetch_add(self.bytes, Relaxed);
                Ok((base_offset, log_start_offset))
            }
            Ok(Ok(Response::Rejected(why))) => Err(Failure::refused(
                match why {
                    Rejection::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
                    Rejection::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
                    _ => ResponseError::InvalidRecord,
                },
                why.to_string(),
            )),
            Ok(Ok(other)) => Err(Failure::refused(
                ResponseError::UnknownServerError,
                format!("unexpected append result {other:?}"),
            )),
            Ok(Err(ProposeError::NotLeader { leader })) => {
                Err(not_leader(&self.replica, leader, None))
            }
            Ok(Err(ProposeError::Unavailable(reason))) => {
                Err(not_leader(&self.replica, None, Some(reason)))
            }
            // The entry may still commit; idempotent producers make the retry safe.
            Err(_) => Err(ResponseError::RequestTimedOut.into()),
        }
    }
}

async fn submit_partition(
    broker: &Broker,
    topic: &TopicInfo,
    data: PartitionProduceData,
    version: i16,
    waited: &mut bool,
) -> Result<Submitted, Failure> {
    let elsewhere = || Failure {
        leader: broker.leader_hint(topic, data.index),
        ..ResponseError::NotLeaderOrFollower.into()
    };
    let replica = match broker.route(topic, data.index) {
        PartitionRoute::Local(replica) => replica,
        PartitionRoute::Remote => return Err(elsewhere()),
        PartitionRoute::Unknown => return Err(ResponseError::UnknownTopicOrPartition.into()),
    };
    let leadership = replica.replica.leadership();
    if leadership.leader != Some(broker.node.id()) || !leadership.quorum {
        return Err(elsewhere());
    }

    let records: Bytes = data.records.unwrap_or_default();
    // The headers, read once for the checks made before anything is decompressed.
    let sent: Vec<BatchHeader> = split_batches(&records).map(|(h, _)| h).collect();
    if version < 7 && sent.iter().any(|h| h.codec() == Some(Codec::Zstd)) {
        // zstd came with Produce v7 and Fetch v10 (KIP-110): older clients cannot read it.
        return Err(Failure::refused(
            ResponseError::UnsupportedCompressionType,
            format!("Produce v{version} may not carry zstd batches; zstd needs v7 or later"),
        ));
    }
    let settings = TopicSettings::resolve(&topic.configs, &broker.config);
    if let Some(big) = sent
        .iter()
        .find(|h| h.total_len() > settings.max_message_bytes as usize)
    {
        return Err(Failure::refused(
            ResponseError::MessageTooLarge,
            format!(
                "batch of {} bytes exceeds max.message.bytes {}",
                big.total_len(),
                settings.max_message_bytes
            ),
        ));
    }
    let now = crate::groups::now_ms();
    let times = TimestampBounds::around(
        now,
        settings.timestamp_before_max_ms,
        settings.timestamp_after_max_ms,
    );
    let compressed = sent.iter().any(|h| h.codec() != Some(Codec::None));
    let validated = validate(broker, records.clone(), compressed, times)
        .await
        .map_err(|e| {
            if matches!(e, BatchError::InflatesTooLarge(_)) {
                broker.metrics.refused(Refused::InflatedBatchBytes);
            }
            batch_failure(e)
        })?;
    let headers = validated.headers;
    if headers.iter().any(|h| h.is_transactional()) {
        return Err(Failure::refused(
            ResponseError::InvalidRecord,
            "transactions are not supported",
        ));
    }
    let highest = headers.iter().map(|h| h.producer_id).max().unwrap_or(-1);
    if highest >= 0 && !allocated(broker, highest, waited).await {
        broker.metrics.refused(Refused::ProducerId);
        return Err(Failure::refused(
            ResponseError::UnknownProducerId,
            format!("producer id {highest} was not handed out by InitProducerId"),
        ));
    }
    if let Some(record) = validated.keyless.filter(|_| settings.compact) {
        // The cleaner keeps each key's last record: a record without a key has no place.
        return Err(Failure {
            record: Some(record),
            ..Failure::refused(
                ResponseError::InvalidRecord,
                format!(
                    "compacted topic {} cannot accept a record without a key",
                    topic.name
                ),
            )
        });
    }
    let append = AppendBatches {
        batches: headers
            .iter()
            .map(|h| BatchSummary {
                len: h.total_len() as u32,
                last_offset_delta: h.last_offset_delta,
                max_timestamp: h.max_timestamp,
                producer_id: h.producer_id,
                producer_epoch: h.producer_epoch,
                base_sequence: h.base_sequence,
            })
            .collect(),
        data: records.clone(),
        ..AppendBatches::default()
    };
    let command = if features::enabled(broker, features::TIMED_APPENDS) {
        Command::AppendAt { append, now }
    } else {
        Command::Append(append)
    };
    let proposal = match replica.replica.submit(command).await {
        Ok(proposal) => proposal,
        Err(ProposeError::NotLeader { leader }) => return Err(not_leader(&replica, leader, None)),
        Err(ProposeError::Unavailable(reason)) => {
            return Err(not_leader(&replica, None, Some(reason)))
        }
    };
    Ok(Submitted {
        replica,
        proposal,
        records: headers.iter().map(|h| h.record_count as u64).sum(),
        bytes: records.len() as u64,
    })
}
