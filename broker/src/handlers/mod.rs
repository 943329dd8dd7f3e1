//! One module per Kafka API. Each turns a decoded request into a response body; this
//! module dispatches and encodes.

mod api_versions;
mod configs;
mod create_topics;
mod delete_topics;
mod describe_cluster;
mod describe_producers;
pub mod details;
mod elect_leaders;
mod fetch;
mod group_admin;
mod groups;
mod init_producer_id;
mod list_offsets;
mod log_dirs;
mod metadata;
mod offset_for_leader_epoch;
mod offsets;
mod produce;
mod reassignments;
mod unregister_broker;

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::{ApiKey, RequestKind, ResponseKind};
use strand_protocol::codec::{encode_fetch_response, encode_response, EncodeError, Request};
use strand_protocol::frame::OutFrame;
use tokio::task::JoinHandle;

pub use self::fetch::read_ahead::{ReadAhead, ReadAheadBudget, ReadAheadPlan};
use crate::Broker;

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

/// Starts handling one request. The connection awaits this before reading the next
/// request, so every request's effects are submitted in the order the client sent them;
/// only the wait for replication overlaps with later requests.
pub async fn start(
    broker: &Arc<Broker>,
    request: Request,
    peer: SocketAddr,
    read_ahead: &ReadAhead,
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
            return Pending::Running(tokio::spawn(async move {
                let response =
                    groups::join_group(&broker, r, version, client_id, client_host).await;
                encode(
                    correlation_id,
                    api_key,
                    version,
                    ResponseKind::JoinGroup(response),
                )
            }));
        }
        RequestKind::SyncGroup(r) => {
            let broker = broker.clone();
            return Pending::Running(tokio::spawn(async move {
                let response = groups::sync_group(&broker, r).await;
                encode(
                    correlation_id,
                    api_key,
                    version,
                    ResponseKind::SyncGroup(response),
                )
            }));
        }
        RequestKind::FindCoordinator(r) => {
            ResponseKind::FindCoordinator(groups::find_coordinator(broker, r, version))
        }
        RequestKind::Heartbeat(r) => ResponseKind::Heartbeat(groups::heartbeat(broker, r)),
        RequestKind::LeaveGroup(r) => {
            ResponseKind::LeaveGroup(groups::leave_group(broker, r, version))
        }
        RequestKind::OffsetCommit(r) => {
            ResponseKind::OffsetCommit(offsets::commit(broker, r, version).await)
        }
        RequestKind::OffsetFetch(r) => {
            ResponseKind::OffsetFetch(offsets::fetch(broker, r, version))
        }
        RequestKind::OffsetDelete(r) => {
            ResponseKind::OffsetDelete(offsets::delete(broker, r).await)
        }
        RequestKind::DescribeGroups(r) => {
            ResponseKind::DescribeGroups(group_admin::describe(broker, r, version))
        }
        RequestKind::ListGroups(r) => ResponseKind::ListGroups(group_admin::list(broker, r)),
        RequestKind::DeleteGroups(r) => {
            ResponseKind::DeleteGroups(group_admin::delete(broker, r).await)
        }
        RequestKind::ApiVersions(_) => ResponseKind::ApiVersions(api_versions::handle()),
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
        RequestKind::AlterPartitionReassignments(r) => {
            ResponseKind::AlterPartitionReassignments(reassignments::alter(broker, r).await)
        }
        RequestKind::ListPartitionReassignments(r) => {
            ResponseKind::ListPartitionReassignments(reassignments::list(broker, r))
        }
        RequestKind::UnregisterBroker(r) => {
            ResponseKind::UnregisterBroker(unregister_broker::handle(broker, r).await)
        }
        RequestKind::DescribeConfigs(r) => {
            ResponseKind::DescribeConfigs(configs::describe(broker, r))
        }
        RequestKind::IncrementalAlterConfigs(r) => {
            ResponseKind::IncrementalAlterConfigs(configs::incremental_alter(broker, r).await)
        }
        RequestKind::DescribeLogDirs(r) => {
            ResponseKind::DescribeLogDirs(log_dirs::handle(broker, r))
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
