//! The one table of Kafka APIs and versions Strand implements, and the ApiVersions answer
//! built from it.
//!
//! Advertise exactly what is implemented: clients pick the highest version both sides share,
//! so an over-claim breaks them and an under-claim (old maxima) breaks Sarama. One exception
//! is deliberate: Produce is advertised from v0 although only v3+ is decoded, as Kafka 4
//! does, because librdkafka turns compression off when Produce v0 is missing.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// An API and the inclusive version range Strand advertises for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

const fn range(key: ApiKey, min: i16, max: i16) -> ApiRange {
    ApiRange { key, min, max }
}

/// Every API Strand implements. Adding an API handler means adding its line here.
pub const SUPPORTED_APIS: &[ApiRange] = &[
    range(ApiKey::Produce, 0, 12),
    range(ApiKey::Fetch, 4, 12),
    range(ApiKey::ListOffsets, 1, 8),
    range(ApiKey::Metadata, 0, 12),
    range(ApiKey::ApiVersions, 0, 4),
    range(ApiKey::CreateTopics, 2, 7),
    range(ApiKey::DeleteTopics, 1, 6),
    range(ApiKey::InitProducerId, 0, 5),
    // v0-v1 were removed in Kafka 4, which advertises 2-4 as well.
    range(ApiKey::OffsetForLeaderEpoch, 2, 4),
    range(ApiKey::DescribeCluster, 0, 2),
    range(ApiKey::DescribeProducers, 0, 0),
    range(ApiKey::FindCoordinator, 0, 6),
    range(ApiKey::JoinGroup, 0, 9),
    range(ApiKey::SyncGroup, 0, 5),
    range(ApiKey::Heartbeat, 0, 4),
    range(ApiKey::LeaveGroup, 0, 5),
    range(ApiKey::OffsetCommit, 2, 9),
    range(ApiKey::OffsetFetch, 1, 9),
    range(ApiKey::OffsetDelete, 0, 0),
    range(ApiKey::DescribeGroups, 0, 5),
    range(ApiKey::ListGroups, 0, 5),
    range(ApiKey::DeleteGroups, 0, 2),
    range(ApiKey::ElectLeaders, 0, 2),
    range(ApiKey::DescribeConfigs, 1, 4),
    range(ApiKey::IncrementalAlterConfigs, 0, 1),
    range(ApiKey::DescribeLogDirs, 1, 4),
    range(ApiKey::AlterPartitionReassignments, 0, 1),
    range(ApiKey::ListPartitionReassignments, 0, 0),
    range(ApiKey::UnregisterBroker, 0, 0),
];

/// The advertised range for `key`, or `None` if Strand does not implement it.
pub fn supported_range(key: ApiKey) -> Option<ApiRange> {
    SUPPORTED_APIS.iter().copied().find(|r| r.key == key)
}

/// Whether `version` of `key` is inside the advertised range.
pub fn is_supported(key: ApiKey, version: i16) -> bool {
    supported_range(key).is_some_and(|r| (r.min..=r.max).contains(&version))
}

/// The ApiVersions response body listing [`SUPPORTED_APIS`], with `error_code` as given
/// (0, or 35 UNSUPPORTED_VERSION for the fallback answer).
pub fn api_versions_response(error_code: i16) -> ApiVersionsResponse {
    let api_keys = SUPPORTED_APIS
        .iter()
        .map(|r| {
            ApiVersion::default()
                .with_api_key(r.key as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect();
    ApiVersionsResponse::default()
        .with_error_code(error_code)
        .with_api_keys(api_keys)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advertised_ranges_are_within_what_the_codec_can_decode() {
        for r in SUPPORTED_APIS {
            let codec = r.key.valid_versions();
            // Produce v0-v2 is advertised but refused; see the module docs.
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
    fn produce_is_advertised_from_v0_and_topic_id_versions_are_not() {
        let produce = supported_range(ApiKey::Produce).unwrap();
        assert_eq!((produce.min, produce.max), (0, 12));
        assert_eq!(supported_range(ApiKey::Fetch).unwrap().max, 12);
    }
}
