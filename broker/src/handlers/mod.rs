//! One module per Kafka API, named after it. Each declares the version range it implements
//! (`VERSIONS`, listed in [`SUPPORTED_APIS`], which ApiVersions advertises and the codec
//! enforces) and turns a decoded request into a response body; this module dispatches and
//! encodes.

mod alter_configs;
mod alter_partition_reassignments;
mod api_versions;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_records;
mod delete_topics;
mod describe_cluster;
mod describe_configs;
mod describe_groups;
mod describe_log_dirs;
mod describe_producers;
mod describe_topic_partitions;
pub mod details;
mod elect_leaders;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod incremental_alter_configs;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod list_partition_reassignments;
mod metadata;
mod offset_commit;
mod offset_delete;
mod offset_fetch;
mod offset_for_leader_epoch;
mod produce;
mod sync_group;
mod unregister_broker;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use strand_protocol::api_versions::ApiRange;
use strand_protocol::codec::{encode_fetch_response, encode_response, EncodeError, Request};
use strand_protocol::frame::OutFrame;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use self::fetch::read_ahead::{ReadAhead, ReadAheadBudget, ReadAheadPlan};
use crate::Broker;

/// Every API Strand implements, with the versions it advertises: one line per handler module.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    produce::VERSIONS,
    fetch::VERSIONS,
    list_offsets::VERSIONS,
    metadata::VERSIONS,
    offset_commit::VERSIONS,
    offset_fetch::VERSIONS,
    find_coordinator::VERSIONS,
    join_group::VERSIONS,
    heartbeat::VERSIONS,
    leave_group::VERSIONS,
    sync_group::VERSIONS,
    describe_groups::VERSIONS,
    list_groups::VERSIONS,
    api_versions::VERSIONS,
    create_topics::VERSIONS,
    delete_topics::VERSIONS,
    delete_records::VERSIONS,
    init_producer_id::VERSIONS,
    offset_for_leader_epoch::VERSIONS,
    describe_configs::VERSIONS,
    alter_configs::VERSIONS,
    describe_log_dirs::VERSIONS,
    create_partitions::VERSIONS,
    delete_groups::VERSIONS,
    elect_leaders::VERSIONS,
    incremental_alter_configs::VERSIONS,
    alter_partition_reassignments::VERSIONS,
    list_partition_reassignments::VERSIONS,
    offset_delete::VERSIONS,
    describe_cluster::VERSIONS,
    describe_producers::VERSIONS,
    unregister_broker::VERSIONS,
    describe_topic_partitions::VERSIONS,
];

/// What the connection does after a request.
pub enum Outcome {
    /// Send this frame.
    Reply(OutFrame),
    /// Send this frame, and once its records have been read, this read-ahead (a fetch's
    /// next response).
    ReplyThenReadAhead(OutFrame, ReadAheadPlan),
    /// Send nothing (produce with acks=0).
    NoReply,
    /// Close the connection (unreadable input, or an acks=0 produce that failed).
    Close,
}

/// A request's outcome, known now or later.
pub enum Pending {
    Ready(Outcome),
    /// Produce requests wait for replication, and JoinGroup and SyncGroup for the rest of
    /// their group, in a task of their own, so the connection can read and submit the next
    /// request meanwhile.
    Running(JoinHandle<Outcome>),
}

/// Resolves once the connection's reader has stopped: the client hung up, or the
/// connection is closing. A JoinGroup or SyncGroup still waiting for its group then stops
/// waiting, so the group sees that nobody will read the answer (a member that never hears
/// of a generation must not lead it).
#[derive(Clone)]
pub struct HungUp(watch::Receiver<()>);

impl HungUp {
    /// The signal, and the sender the connection's reader holds until it stops.
    pub fn channel() -> (watch::Sender<()>, HungUp) {
        let (tx, rx) = watch::channel(());
        (tx, HungUp(rx))
    }

    async fn wait(mut self) {
        // Nothing is ever sent: the sender's drop ends the loop.
        while self.0.changed().await.is_ok() {}
    }
}

/// [`SUPPORTED_APIS`] as a Markdown table (`strand --supported-apis`; the README's table).
pub fn supported_apis_table() -> String {
    let mut table = String::from("| API | key | versions |\n|---|---|---|\n");
    for r in SUPPORTED_APIS {
        table += &format!("| {:?} | {} | {}-{} |\n", r.key, r.key as i16, r.min, r.max);
    }
    table
}

/// Starts handling one request. The connection awaits this before reading the next
/// request, so every request's effects are submitted in the order the client sent them;
/// only the wait for replication overlaps with later requests.
pub async fn start(
    broker: &Arc<Broker>,
    request: Request,
    peer: SocketAddr,
    read_ahead: &ReadAhead,
    hung_up: &HungUp,
) -> Pending {
    let Request {
        api_key,
        version,
        header,
        body,
    } = request;
    broker.metrics.request(api_key);
    let correlation_id = header.correlation_id;
    let response = match body {
        RequestKind::Produce(r) => {
            let committed = produce::submit(broker, r, version).await;
            return Pending::Running(tokio::spawn(async move {
                match committed.await {
                    produce::Answer::Respond(r) => {
                        encode(correlation_id, api_key, version, ResponseKind::Produce(r))
                    }
                    produce::Answer::Nothing => Outcome::NoReply,
                    produce::Answer::Close => Outcome::Close,
                }
            }));
        }
        RequestKind::JoinGroup(r) => {
            let broker = broker.clone();
            let client_id = header.client_id.as_deref().unwrap_or_default().to_string();
            // Kafka shows a member's host as "/address".
            let client_host = format!("/{}", peer.ip());
            let hung_up = hung_up.clone();
            return Pending::Running(tokio::spawn(async move {
                // The handler first: its change to the group is made even when the
                // client has already gone.
                tokio::select! {
                    biased;
                    response = join_group::handle(&broker, r, version, client_id, client_host) => {
                        encode(correlation_id, api_key, version, ResponseKind::JoinGroup(response))
                    }
                    () = hung_up.wait() => Outcome::Close,
                }
            }));
        }
        RequestKind::SyncGroup(r) => {
            let broker = broker.clone();
            let hung_up = hung_up.clone();
            return Pending::Running(tokio::spawn(async move {
                // The handler first: its change to the group is made even when the
                // client has already gone.
                tokio::select! {
                    biased;
                    response = sync_group::handle(&broker, r) => {
                        encode(correlation_id, api_key, version, ResponseKind::SyncGroup(response))
                    }
                    () = hung_up.wait() => Outcome::Close,
                }
            }));
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(find_coordinator::handle(broker, r, version))
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(heartbeat::handle(broker, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(leave_group::handle(broker, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offset_commit::handle(broker, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offset_fetch::handle(broker, r, version))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offset_delete::handle(broker, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(describe_groups::handle(broker, r, version))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(list_groups::handle(broker, r)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(delete_groups::handle(broker, r).await)
        }
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle(broker)),
        RequestKind::Metadata(r) => {
            ResponseKind::Metadata(metadata::handle(broker, r, version).await)
        }
        RequestKind::Fetch(r) => {
            let fetched = fetch::handle(broker, r, version, read_ahead).await;
            let frame =
                encode_fetch_response(correlation_id, version, &fetched.response, fetched.late);
            return Pending::Ready(match (reply_or_close(frame), fetched.read_ahead) {
                (Outcome::Reply(frame), Some(plan)) => Outcome::ReplyThenReadAhead(frame, plan),
                (outcome, _) => outcome,
            });
        }
        RequestKind::ListOffsets(r) => {
            ResponseKind::ListOffsets(list_offsets::handle(broker, r, version).await)
        }
        RequestKind::CreateTopics(r) => {
            ResponseKind::CreateTopics(create_topics::handle(broker, r, version).await)
        }
        RequestKind::CreatePartitions(r) => {
            ResponseKind::CreatePartitions(create_partitions::handle(broker, r).await)
        }
        RequestKind::DeleteRecords(r) => {
            ResponseKind::DeleteRecords(delete_records::handle(broker, r).await)
        }
        RequestKind::InitProducerId(r) => {
            ResponseKind::InitProducerId(init_producer_id::handle(broker, r, version).await)
        }
        RequestKind::DescribeProducers(r) => {
            ResponseKind::DescribeProducers(describe_producers::handle(broker, r, version).await)
        }
        RequestKind::OffsetForLeaderEpoch(r) => ResponseKind::OffsetForLeaderEpoch(
            offset_for_leader_epoch::handle(broker, r, version).await,
        ),
        RequestKind::DescribeCluster(r) => {
            ResponseKind::DescribeCluster(describe_cluster::handle(broker, r, version).await)
        }
        RequestKind::AlterPartitionReassignments(r) => ResponseKind::AlterPartitionReassignments(
            alter_partition_reassignments::handle(broker, r).await,
        ),
        RequestKind::ListPartitionReassignments(r) => ResponseKind::ListPartitionReassignments(
            list_partition_reassignments::handle(broker, r),
        ),
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(unregister_broker::handle(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(describe_configs::handle(broker, r))
        }
        RequestKind::DescribeTopicPartitions(r) => {
            ResponseKind::DescribeTopicPartitions(describe_topic_partitions::handle(broker, r))
        }
        RequestKind::AlterConfigs(r) => {
            ResponseKind::AlterConfigs(alter_configs::handle(broker, r).await)
        }
        RequestKind::IncrementalAlterConfigs(r) => ResponseKind::IncrementalAlterConfigs(
            incremental_alter_configs::handle(broker, r).await,
        ),
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(describe_log_dirs::handle(broker, r))
        }
        RequestKind::ElectLeaders(r) => {
            ResponseKind::ElectLeaders(elect_leaders::handle(broker, r, version).await)
        }
        RequestKind::DeleteTopics(r) => {
            ResponseKind::DeleteTopics(delete_topics::handle(broker, r, version).await)
        }
        _ => {
            tracing::debug!(?api_key, version, "unsupported API; closing connection");
            return Pending::Ready(Outcome::Close);
        }
    };
    Pending::Ready(encode(correlation_id, api_key, version, response))
}

fn encode(correlation_id: i32, api_key: ApiKey, version: i16, response: ResponseKind) -> Outcome {
    reply_or_close(encode_response(correlation_id, api_key, version, &response))
}

fn reply_or_close(frame: Result<OutFrame, EncodeError>) -> Outcome {
    match frame {
        Ok(frame) => Outcome::Reply(frame),
        Err(e) => {
            tracing::error!(error = %e, "closing connection");
            Outcome::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_what_the_codec_can_decode() {
        for r in SUPPORTED_APIS {
            let codec = r.key.valid_versions();
            // Produce v0-v2 is advertised but refused; see produce::VERSIONS.
            let min = if r.key == ApiKey::Produce { 3 } else { r.min };
            assert!(
                codec.min <= min && r.max <= codec.max,
                "{:?} advertises {}..={} but the codec handles {}..={}",
                r.key,
                r.min,
                r.max,
                codec.min,
                codec.max
            );
        }
    }

    #[test]
    fn the_readme_lists_exactly_the_supported_apis() {
        let table = crate::doc_tests::marked_section("README.md", "supported-apis");
        assert_eq!(
            table,
            supported_apis_table().trim(),
            "README.md's API table is stale: replace it with `strand --supported-apis`"
        );
    }

    #[test]
    fn produce_is_advertised_from_v0() {
        assert_eq!(produce::VERSIONS.min, 0);
    }

    #[test]
    fn each_api_is_listed_once_in_key_order() {
        let keys: Vec<i16> = SUPPORTED_APIS.iter().map(|r| r.key as i16).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
    }
}
