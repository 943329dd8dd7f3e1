//! Version ranges of Kafka APIs, and the ApiVersions answer built from a table of them.
//!
//! The table itself belongs to the server: each handler declares the range it implements
//! (`broker/src/handlers/`), and the codec refuses versions outside it. Advertise exactly
//! what is implemented: clients pick the highest version both sides share, so an over-claim
//! breaks them and an under-claim (old maxima) breaks Sarama.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

/// An API and the inclusive version range Strand advertises for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiRange {
    pub key: ApiKey,
    pub min: i16,
    pub max: i16,
}

impl ApiRange {
    pub const fn new(key: ApiKey, min: i16, max: i16) -> ApiRange {
        ApiRange { key, min, max }
    }

    pub fn contains(&self, version: i16) -> bool {
        (self.min..=self.max).contains(&version)
    }
}

/// The advertised range for `key` in `apis`, or `None` if it is not implemented.
pub fn find(apis: &[ApiRange], key: ApiKey) -> Option<ApiRange> {
    apis.iter().copied().find(|r| r.key == key)
}

/// The ApiVersions response body listing `apis`, with `error_code` as given (0, or 35
/// UNSUPPORTED_VERSION for the fallback answer).
pub fn api_versions_response(apis: &[ApiRange], error_code: i16) -> ApiVersionsResponse {
    let api_keys = apis
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
