//! ApiVersions: which APIs and versions this broker implements. Requests of a version we
//! do not know never get here; the codec answers them with the KIP-511 fallback.

use kafka_protocol::messages::ApiVersionsResponse;

pub fn handle() -> ApiVersionsResponse {
    strand_protocol::api_versions::api_versions_response(0)
}
