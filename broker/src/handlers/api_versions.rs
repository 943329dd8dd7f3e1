//! ApiVersions: which APIs and versions this broker implements, and (v3+) the cluster
//! features it supports and the cluster has finalized. Requests of a version we do not
//! know never get here; the codec answers them with the KIP-511 fallback.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use strand_protocol::api_versions::ApiRange;

use crate::{features, Broker};

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ApiVersions, 0, 4);

pub fn handle(broker: &Broker) -> ApiVersionsResponse {
    let metadata = broker.node.controller().metadata();
    strand_protocol::api_versions::api_versions_response(super::SUPPORTED_APIS, 0)
        .with_supported_features(features::supported())
        .with_finalized_features_epoch(features::finalized_epoch(&metadata))
        .with_finalized_features(features::finalized_keys(&metadata))
}
