//! InitProducerId: a fresh producer id, epoch 0, for an idempotent producer.
//!
//! As in Kafka, a request without a transactional id always gets a new id, whatever id it
//! names: an idempotent producer bumps its epoch by itself and only asks again when it must
//! start over. Transactions are not supported.

use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;
use strand_protocol::api_versions::ApiRange;

use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::InitProducerId, 0, 5);

pub async fn handle(
    broker: &Broker,
    request: InitProducerIdRequest,
    _version: i16,
) -> InitProducerIdResponse {
    let failed = |error: ResponseError| {
        InitProducerIdResponse::default()
            .with_error_code(error.code())
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    };
    if request.transactional_id.is_some() {
        return failed(ResponseError::InvalidRequest);
    }
    match broker.producer_ids.next(&broker.node).await {
        Ok(id) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => {
            tracing::warn!(error = %e, "cannot allocate producer ids");
            failed(ResponseError::CoordinatorNotAvailable)
        }
    }
}
