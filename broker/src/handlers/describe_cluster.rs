//! DescribeCluster: the brokers, the controller and the cluster id (AdminClient and the
//! Kafka tools use it instead of Metadata when the broker offers it).

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::ApiKey;
use kafka_protocol::messages::{DescribeClusterRequest, DescribeClusterResponse};
use strand_protocol::api_versions::ApiRange;

use super::details::{broker_id, str_bytes};
use crate::Broker;

pub const VERSIONS: ApiRange = ApiRange::new(ApiKey::DescribeCluster, 0, 2);

pub async fn handle(
    broker: &Broker,
    request: DescribeClusterRequest,
    _version: i16,
) -> DescribeClusterResponse {
    let metadata = broker.node.controller().metadata();
    let brokers = metadata
        .brokers
        .values()
        .map(|b| {
            DescribeClusterBroker::default()
                .with_broker_id(broker_id(b.id))
                .with_host(str_bytes(b.host.clone()))
                .with_port(b.port as i32)
                .with_rack(b.rack.clone().map(str_bytes))
        })
        .collect();
    DescribeClusterResponse::default()
        .with_endpoint_type(request.endpoint_type)
        .with_cluster_id(str_bytes(broker.config.cluster_id.clone()))
        .with_controller_id(broker.controller_id())
        .with_brokers(brokers)
}
