//! ApiVersions: which APIs and versions this broker implements. Requests of a version we
//! do not know never get here; the codec answers them with the KIP-511 fallback.

use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use strand_protocol::api_versions::ApiRange;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::ApiVersions, 0, 4);

pub fn handle() -> ApiVersionsResponse {
    strand_protocol::api_versions::api_versions_response(super::SUPPORTED_APIS, 0)
}
