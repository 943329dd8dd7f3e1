//! Strand's Jepsen-style harness.
//!
//! - [`history`]: the JSON Lines history format, shaped like Jepsen's.
//! - [`check`]: the queue checker, which reports Jepsen's Kafka anomalies (lost writes,
//!   duplicates, inconsistent offsets, unseen acknowledged sends, aborted reads, skipped or
//!   reordered polls and sends) plus fault windows and recovery time.
//! - [`cluster`], [`run`]: a test run against `strand` nodes, each in its own network
//!   namespace ([`netns`]), with kill, pause, partition and lost-unsynced-writes faults
//!   ([`lazyfs`]).

pub mod admin;
pub mod check;
pub mod cluster;
pub mod history;
pub mod lazyfs;
pub mod netns;
pub mod report;
pub mod run;
