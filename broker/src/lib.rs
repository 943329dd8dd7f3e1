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
//! - [`retention`]: deleting records past their topic's retention.
//! - [`cleaner`]: the log cleaner of compacted topics.
//! - [`leader_tasks`]: the timer both run on in each partition's leader.
//! - [`metrics`]: the Prometheus endpoint.

pub mod broker;
pub mod cleaner;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod features;
pub mod groups;
pub mod handlers;
pub mod leader_tasks;
pub mod limits;
pub mod metrics;
pub mod producer_ids;
pub mod retention;
pub mod server;
pub mod topics;
pub mod unsafe_modes;

pub use broker::Broker;
pub use config::Config;

/// What the tests that keep documents in step with the code share.
#[cfg(test)]
pub(crate) mod doc_tests {
    /// The text of `file` (relative to the repository) between `<!-- name:start -->` and
    /// `<!-- name:end -->`, trimmed.
    pub fn marked_section(file: &str, name: &str) -> String {
        let path = format!("{}/../{file}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        text.split_once(&format!("<!-- {name}:start -->"))
            .and_then(|(_, rest)| rest.split_once(&format!("<!-- {name}:end -->")))
            .map(|(section, _)| section.trim().to_string())
            .unwrap_or_else(|| panic!("{file} has no {name} markers"))
    }
}
