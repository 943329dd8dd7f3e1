//! Kafka's state machines, replicated by the engine around them: a partition's log
//! (`partition`: offsets, leader epochs, the batch index) with its idempotent producers'
//! sequence rules (`producer_state`) and its log cleaner (`compaction`), and the controller's cluster metadata and committed
//! offsets (`controller`); `replicas` pairs each with its Raft group. They are plain Rust,
//! tested without Raft. The plan to move them into a crate of their own, with an engine
//! that knows no Kafka, is docs/design/raft-engine-split.md.

pub(crate) mod compaction;
pub(crate) mod controller;
pub(crate) mod partition;
pub(crate) mod producer_state;
pub(crate) mod replicas;
