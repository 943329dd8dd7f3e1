//! Cluster features (Kafka's finalized features, KIP-584): a node writes what an older
//! node could not decode only once the feature level that adds it is finalized, and the
//! controller's leader finalizes a level only when every registered broker says, in its
//! ApiVersions answer, that it supports it. During a rolling upgrade the level stays at
//! the oldest node's, and rises by itself once the last node runs the new version.
//!
//! `strand.version` levels:
//! - 1: appends carry the leader's clock, which idempotent producers' state keeps
//!   (`Command::AppendAt`), so a client's timestamps cannot keep a producer alive.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::api_versions_response::{FinalizedFeatureKey, SupportedFeatureKey};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, RequestKind, ResponseKind};
use strand_protocol::codec;
use strand_raft::{BrokerInfo, ClusterMetadata, Command, ControllerCommand};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::handlers::details::str_bytes;
use crate::Broker;

pub const STRAND_VERSION: &str = "strand.version";
/// The `strand.version` from which appends carry the leader's clock.
pub const TIMED_APPENDS: i16 = 1;
/// The highest `strand.version` this build reads and writes.
pub const SUPPORTED_LEVEL: i16 = TIMED_APPENDS;

/// How often the controller's leader looks for a level to finalize.
const CHECK_EVERY: Duration = Duration::from_secs(5);
/// How long a broker may take to answer ApiVersions.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// The cluster's finalized `strand.version` (0 before any).
pub fn finalized(metadata: &ClusterMetadata) -> i16 {
    metadata.features.get(STRAND_VERSION).copied().unwrap_or(0)
}

/// Whether this node may write what `level` adds: the cluster finalized it.
pub fn enabled(broker: &Broker, level: i16) -> bool {
    finalized(&broker.node.controller().metadata()) >= level
}

/// The epoch ApiVersions reports for the finalized features: -1 for none, as Kafka. Levels
/// only rise and there is one feature, so the level itself serves.
pub fn finalized_epoch(metadata: &ClusterMetadata) -> i64 {
    match finalized(metadata) {
        0 => -1,
        level => level as i64,
    }
}

/// What ApiVersions v3+ tells clients and other nodes: the levels this node supports, and
/// those the cluster finalized. The minimum is 1: clients before Kafka 3.8 refuse 0.
pub fn supported() -> Vec<SupportedFeatureKey> {
    vec![SupportedFeatureKey::default()
        .with_name(str_bytes(STRAND_VERSION))
        .with_min_version(1)
        .with_max_version(SUPPORTED_LEVEL)]
}

pub fn finalized_keys(metadata: &ClusterMetadata) -> Vec<FinalizedFeatureKey> {
    match finalized(metadata) {
        0 => Vec::new(),
        level => vec![FinalizedFeatureKey::default()
            .with_name(str_bytes(STRAND_VERSION))
            .with_min_version_level(1)
            .with_max_version_level(level)],
    }
}

/// The level to finalize, given the level each registered broker supports (`None`: it did
/// not answer): the lowest of them, if all answered and it is above `finalized`.
fn level_to_finalize(finalized: i16, supported: &[Option<i16>]) -> Option<i16> {
    let levels: Option<Vec<i16>> = supported.iter().copied().collect();
    let lowest = levels?.into_iter().min()?;
    (lowest > finalized).then_some(lowest)
}

/// The `strand.version` broker `b` supports, from its ApiVersions answer: 0 from a version
/// before features, `None` if it cannot be asked (logged: it holds the level back).
async fn supported_by(b: &BrokerInfo) -> Option<i16> {
    let ask = async {
        let mut stream = TcpStream::connect((b.host.as_str(), b.port)).await.ok()?;
        let request = RequestKind::ApiVersions(ApiVersionsRequest::default());
        let frame =
            codec::encode_request(1, "strand-features", ApiKey::ApiVersions, 3, &request).ok()?;
        stream.write_all(&frame).await.ok()?;
        let size = stream.read_i32().await.ok()?;
        if !(0..=1 << 20).contains(&size) {
            return None;
        }
        let mut body = vec![0; size as usize];
        stream.read_exact(&mut body).await.ok()?;
        let (_, answer) = codec::decode_response(Bytes::from(body), ApiKey::ApiVersions, 3).ok()?;
        let ResponseKind::ApiVersions(answer) = answer else {
            return None;
        };
        let level = answer
            .supported_features
            .iter()
            .find(|f| f.name.as_str() == STRAND_VERSION)
            .map_or(0, |f| f.max_version);
        Some(level)
    };
    let level = tokio::time::timeout(ASK_TIMEOUT, ask).await.ok().flatten();
    if level.is_none() {
        tracing::warn!(
            broker = b.id,
            address = %format!("{}:{}", b.host, b.port),
            "cannot ask this broker's ApiVersions; {STRAND_VERSION} stays where it is until it answers"
        );
    }
    level
}

/// On the controller's leader: raises `strand.version` as far as every registered broker
/// supports, through the controller group, so all nodes see the same level.
pub async fn finalize_loop(broker: Arc<Broker>) {
    loop {
        if let Err(e) = finalize_once(&broker).await {
            tracing::debug!(error = %e, "feature levels not finalized this time");
        }
        tokio::time::sleep(CHECK_EVERY).await;
    }
}

async fn finalize_once(broker: &Broker) -> Result<(), strand_raft::ProposeError> {
    let controller = broker.node.controller();
    let leadership = controller.replica.leadership();
    if leadership.leader != Some(broker.node.id()) || !leadership.serving {
        return Ok(());
    }
    let metadata = controller.metadata();
    let current = finalized(&metadata);
    if current >= SUPPORTED_LEVEL {
        return Ok(());
    }
    let mut supported = Vec::with_capacity(metadata.brokers.len());
    for b in metadata.brokers.values() {
        supported.push(if b.id == broker.node.id() {
            Some(SUPPORTED_LEVEL)
        } else {
            supported_by(b).await
        });
    }
    let Some(level) = level_to_finalize(current, &supported) else {
        return Ok(());
    };
    let command = Command::Controller(ControllerCommand::FinalizeFeature {
        name: STRAND_VERSION.to_string(),
        level,
    });
    controller.replica.propose(command).await?;
    tracing::info!(feature = STRAND_VERSION, level, "feature level finalized");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_level_rises_to_the_oldest_broker_once_all_answer() {
        assert_eq!(level_to_finalize(0, &[Some(1), Some(1)]), Some(1));
        assert_eq!(
            level_to_finalize(0, &[Some(1), Some(0)]),
            None,
            "a node of an older version holds the level"
        );
        assert_eq!(
            level_to_finalize(0, &[Some(2), None]),
            None,
            "a silent node holds it too"
        );
        assert_eq!(level_to_finalize(1, &[Some(3), Some(2)]), Some(2));
        assert_eq!(level_to_finalize(2, &[Some(2)]), None, "nothing to raise");
        assert_eq!(level_to_finalize(0, &[]), None, "no broker registered yet");
    }
}
