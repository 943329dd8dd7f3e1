//! Strand's Jepsen-style harness (issue: `jepsen/`). So far: the history format
//! ([`history`]) and the queue checker ([`check`]), which reads a history and reports
//! Jepsen's Kafka anomalies (lost writes, duplicates, inconsistent offsets, unseen
//! acknowledged sends, aborted reads, skipped or reordered polls and sends) plus fault
//! windows and recovery time. The cluster control, nemeses and workload come next.

pub mod check;
pub mod history;
