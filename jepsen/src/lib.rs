//! Strand's Jepsen-style harness.
//!
//! - [`history`]: the JSON Lines history format, shaped like Jepsen's.
//! - [`check`]: the queue checker, which reports Jepsen's Kafka anomalies (lost writes,
//!   duplicates, inconsistent offsets, unseen acknowledged sends, aborted reads, skipped or
//!   reordered polls and sends) plus fault windows and recovery time.
//! - [`run`]: one test run against `strand` nodes ([`cluster`]), each in its own network
//!   namespace ([`netns`]): the queue [`workload`] through librdkafka [`clients`], the
//!   [`nemesis`] with kill, pause, partition and lost-unsynced-writes faults ([`lazyfs`]),
//!   and the [`recorder`] that writes the history. [`admin`]: the admin calls librdkafka
//!   lacks.
//! - [`report`]: the report and timeline plot of a checked run.

pub mod admin;
pub mod check;
pub mod clients;
pub mod cluster;
pub mod history;
pub mod lazyfs;
pub mod nemesis;
pub mod netns;
pub mod recorder;
pub mod report;
pub mod run;
pub mod workload;
