//! The queue checker: the anomalies of Jepsen's Kafka queue analysis, written from their
//! published definitions (see `../shared/research/jepsen.md`, §1.3).
//!
//! Every key is one partition's log. The *version order* of a key maps each offset to the
//! values seen there: by every poll (polls report what the log holds, even in operations
//! that failed), and by every send whose writer must have committed (it is `ok`, or `info`
//! and something it wrote was read). Offsets are then numbered densely (*indices*), so
//! gaps in offsets never count as skips. On a compacted topic (the history's `registers`
//! entry) an index is *superseded* when a later index holds a value of the same register:
//! the log cleaner may remove it, so missing it is neither a loss nor a skip.
//!
//! [`version_order`] gathers those facts once; [`anomalies`] has one function per anomaly;
//! [`liveness`] measures service during and after faults.

mod anomalies;
mod liveness;
mod version_order;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

pub use self::liveness::{KindLiveness, Liveness, Window};
use self::version_order::Analysis;
use crate::history::{Op, OpType};

/// At most this many examples are kept per anomaly.
const EXAMPLES: usize = 8;

/// Options of the analysis.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Treat every process as a consumer group member, as if each had logged a
    /// `subscribe` (for histories that do not record them): a rebalance may legitimately
    /// make a process skip or re-read, so `poll-skip` and `nonmonotonic-poll` are
    /// reported but not bad.
    pub subscribe: bool,
}

/// Found anomalies of one kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Anomaly {
    pub count: usize,
    pub examples: Vec<Value>,
}

/// What the checker concludes.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub valid: bool,
    /// Anomaly names that make the history invalid.
    pub bad: Vec<String>,
    pub anomalies: BTreeMap<String, Anomaly>,
    /// ok / fail / info completions per operation name.
    pub counts: BTreeMap<String, [usize; 3]>,
    pub acknowledged_sends: usize,
    pub faults: usize,
    /// Faults the nemesis could not carry out (after the first it heals everything and
    /// injects no more): the history is still checked, but the run did not do what it
    /// was asked to.
    pub nemesis_errors: Vec<String>,
    pub liveness: Liveness,
}

/// Anomalies found so far, by Jepsen name, with their first examples.
#[derive(Default)]
pub(crate) struct Findings(BTreeMap<&'static str, Anomaly>);

impl Findings {
    pub(crate) fn add(&mut self, name: &'static str, example: Value) {
        let a = self.0.entry(name).or_default();
        a.count += 1;
        if a.examples.len() < EXAMPLES {
            a.examples.push(example);
        }
    }
}

pub fn check(history: &[Op], options: Options) -> anyhow::Result<Report> {
    let analysis = Analysis::new(history)?;
    let mut found = Findings::default();
    anomalies::inconsistent_offsets(&analysis, &mut found);
    anomalies::duplicates(&analysis, &mut found);
    anomalies::lost_writes(&analysis, &mut found);
    let acknowledged_sends = anomalies::unseen(&analysis, &mut found);
    anomalies::final_read_gaps(&analysis, &mut found);
    anomalies::aborted_reads(&analysis, &mut found);
    anomalies::within_operations(&analysis, &mut found);
    anomalies::across_operations(&analysis, &mut found);

    let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for op in &analysis.completions {
        let slot = match op.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        counts.entry(op.f.clone()).or_default()[slot] += 1;
    }
    let liveness = liveness::liveness(history);
    let faults = liveness.windows.len();
    let nemesis_errors = history
        .iter()
        .filter(|op| op.is_nemesis() && op.f == "error")
        .map(|op| op.value["error"].as_str().unwrap_or("unknown").to_string())
        .collect();

    let allowed: &[&str] = if options.subscribe {
        &[
            "poll-skip",
            "nonmonotonic-poll",
            "subscribe-poll-skip",
            "subscribe-nonmonotonic-poll",
        ]
    } else {
        &["subscribe-poll-skip", "subscribe-nonmonotonic-poll"]
    };
    let bad: Vec<String> = found
        .0
        .keys()
        .filter(|name| !allowed.contains(name))
        .map(|name| name.to_string())
        .collect();
    Ok(Report {
        valid: bad.is_empty(),
        bad,
        anomalies: found
            .0
            .into_iter()
            .map(|(name, a)| (name.to_string(), a))
            .collect(),
        counts,
        acknowledged_sends,
        faults,
        nemesis_errors,
        liveness,
    })
}

impl Report {
    /// One line for logs and CI.
    pub fn summary(&self) -> String {
        let count = |name: &str| self.anomalies.get(name).map_or(0, |a| a.count);
        let ops: usize = self.counts.values().map(|c| c.iter().sum::<usize>()).sum();
        format!(
            "valid={} ops={} sends_ok={} faults={} lost={} dup={} incons={} unseen={} bad={:?} nemesis-errors={}",
            self.valid,
            ops,
            self.acknowledged_sends,
            self.faults,
            count("lost-write"),
            count("duplicate"),
            count("inconsistent-offsets"),
            count("unseen"),
            self.bad,
            self.nemesis_errors.len()
        )
    }
}
