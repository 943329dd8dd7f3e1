//! The Strand broker: the Kafka listener and API handlers on top of the multi-raft node.
//!
//! - [`config`]: settings from flags, environment and file.
//! - [`broker`]: the node's shared context and start-up.
//! - [`server`], [`connection`]: the accept loop, and one task pair per client connection
//!   that keeps responses in request order.
//! - [`handlers`]: one module per Kafka API: parse, act, respond.
//! - [`cluster`]: topic creation and deletion through the controller Raft group, and
//!   the loop that opens and removes local partition replicas as metadata changes.
//! - [`topics`]: topic names and topic-level configs.
//! - [`groups`]: the group coordinator: consumer group membership and committed offsets.
//! - [`producer_ids`]: producer ids for idempotent producers, and expiring their state.
//! - [`metrics`]: the Prometheus endpoint.

pub mod broker;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod groups;
pub mod handlers;
pub mod metrics;
pub mod producer_ids;
pub mod server;
pub mod topics;
pub mod unsafe_modes;

pub use broker::Broker;
pub use config::Config;
