//! The queue checker: the anomalies of Jepsen's Kafka queue analysis, written from their
//! published definitions (see `../shared/research/jepsen.md`, §1.3).
//!
//! Every key is one partition's log. The *version order* of a key maps each offset to the
//! values seen there: by every poll (polls report what the log holds, even in operations
//! that failed), and by every send whose writer must have committed (it is `ok`, or `info`
//! and something it wrote was read). Offsets are then numbered densely (*indices*), so
//! gaps in offsets never count as skips.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::Serialize;
use serde_json::{json, Value};

use crate::history::{end_time, Mop, Op, OpType, Process};

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

/// How the system kept going while faults were active, and came back after them.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Liveness {
    /// Acknowledged operations per second outside every fault window.
    pub ok_per_second_outside_faults: f64,
    /// One per fault, in order.
    pub windows: Vec<Window>,
    /// Per fault kind (`kill-leader`, `partition-ring`, ...): how many, the median share
    /// of the fault-free rate kept during them, the median and worst recovery.
    pub by_kind: BTreeMap<String, KindLiveness>,
    /// Seconds from the last fault's end to the next acknowledged send, if any came.
    pub recovery_seconds: Option<f64>,
}

/// One fault window: start to stop of one nemesis fault.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Window {
    /// The fault and what it hit, e.g. `kill-leader`, `partition-ring`.
    pub kind: String,
    /// Seconds since the test started.
    pub start: f64,
    pub stop: f64,
    /// Operations (sends and polls) that succeeded inside the window.
    pub ok_ops: usize,
    /// Whether a majority of nodes stayed up and connected (not a killed or paused
    /// majority), so the cluster should have kept serving.
    pub majority_healthy: bool,
    /// Seconds from the stop to the next acknowledged send.
    pub recovery_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KindLiveness {
    pub count: usize,
    pub median_rate_kept: f64,
    pub median_recovery_seconds: Option<f64>,
    pub max_recovery_seconds: Option<f64>,
}

#[derive(Default)]
struct Findings(BTreeMap<&'static str, Anomaly>);

impl Findings {
    fn add(&mut self, name: &'static str, example: Value) {
        let a = self.0.entry(name).or_default();
        a.count += 1;
        if a.examples.len() < EXAMPLES {
            a.examples.push(example);
        }
    }
}

/// A key's log as the history reveals it.
#[derive(Default)]
struct KeyLog {
    /// Offset to the values seen there.
    by_offset: BTreeMap<i64, BTreeSet<i64>>,
    /// Dense index of each offset.
    index: HashMap<i64, usize>,
    /// Value to the indices it was seen at.
    indices_of: HashMap<i64, BTreeSet<usize>>,
}

impl KeyLog {
    fn number(&mut self) {
        for (i, (offset, values)) in self.by_offset.iter().enumerate() {
            self.index.insert(*offset, i);
            for v in values {
                self.indices_of.entry(*v).or_default().insert(i);
            }
        }
    }
}

pub fn check(history: &[Op], options: Options) -> anyhow::Result<Report> {
    let completions: Vec<&Op> = history
        .iter()
        .filter(|op| op.kind != OpType::Invoke && !op.is_nemesis())
        .collect();
    let mut mops_of: HashMap<u64, Vec<Mop>> = HashMap::new();
    for op in &completions {
        mops_of.insert(op.index, op.mops()?);
    }
    let mops = |op: &Op| mops_of.get(&op.index).cloned().unwrap_or_default();

    // Who sent what, and what ok operations read.
    // The completion that sent each value.
    let mut writer_of: HashMap<(u64, i64), &Op> = HashMap::new();
    let mut read_ok: HashMap<u64, BTreeSet<i64>> = HashMap::new();
    let mut read_by_any_ok: BTreeSet<(u64, i64)> = BTreeSet::new();
    for op in &completions {
        for mop in mops(op) {
            match mop {
                Mop::Send { key, value, .. } => {
                    writer_of.insert((key, value), op);
                }
                Mop::Poll(reads) if op.kind == OpType::Ok => {
                    for (key, pairs) in reads {
                        for (_, v) in pairs {
                            read_ok.entry(key).or_default().insert(v);
                            read_by_any_ok.insert((key, v));
                        }
                    }
                }
                Mop::Poll(_) => {}
            }
        }
    }
    // An info operation must have committed if anything it sent was read.
    let must_have_committed = |op: &Op| {
        match op.kind {
        OpType::Ok => true,
        OpType::Info => mops(op).iter().any(|m| {
            matches!(m, Mop::Send { key, value, .. } if read_by_any_ok.contains(&(*key, *value)))
        }),
        _ => false,
    }
    };

    // Version orders.
    let mut logs: BTreeMap<u64, KeyLog> = BTreeMap::new();
    for op in &completions {
        let committed = must_have_committed(op);
        for mop in mops(op) {
            match mop {
                Mop::Send {
                    key,
                    offset: Some(offset),
                    value,
                } if committed => {
                    let log = logs.entry(key).or_default();
                    log.by_offset.entry(offset).or_default().insert(value);
                }
                Mop::Poll(reads) => {
                    for (key, pairs) in reads {
                        let log = logs.entry(key).or_default();
                        for (offset, value) in pairs {
                            log.by_offset.entry(offset).or_default().insert(value);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for log in logs.values_mut() {
        log.number();
    }

    let mut found = Findings::default();

    for (key, log) in &logs {
        // inconsistent-offsets: two values at one offset.
        for (offset, values) in &log.by_offset {
            if values.len() > 1 {
                found.add(
                    "inconsistent-offsets",
                    json!({"key": key, "offset": offset, "values": values}),
                );
            }
        }
        // duplicate: one value at two offsets.
        let mut offsets_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (offset, values) in &log.by_offset {
            for v in values {
                offsets_of.entry(*v).or_default().push(*offset);
            }
        }
        for (value, offsets) in offsets_of {
            if offsets.len() > 1 {
                found.add(
                    "duplicate",
                    json!({"key": key, "value": value, "offsets": offsets}),
                );
            }
        }
        // lost-write: a value that lies at or below the highest point ok polls reached,
        // whose writer must have committed, yet no ok poll read it.
        let Some(read) = read_ok.get(key) else {
            continue;
        };
        let bound = read
            .iter()
            .filter_map(|v| log.indices_of.get(v).and_then(|i| i.first()))
            .max()
            .copied();
        let Some(bound) = bound else { continue };
        for (value, indices) in &log.indices_of {
            let last = *indices.last().expect("a value is seen somewhere");
            if last > bound || read.contains(value) {
                continue;
            }
            let committed = writer_of
                .get(&(*key, *value))
                .is_some_and(|w| must_have_committed(w));
            if committed {
                found.add(
                    "lost-write",
                    json!({"key": key, "value": value, "index": last, "max-read-index": bound,
                           "writer": writer_of[&(*key, *value)].index}),
                );
            }
        }
    }

    // unseen: acknowledged sends no ok poll ever read.
    let mut acknowledged_sends = 0;
    for op in completions.iter().filter(|op| op.kind == OpType::Ok) {
        for mop in mops(op) {
            if let Mop::Send { key, value, offset } = mop {
                acknowledged_sends += 1;
                if !read_by_any_ok.contains(&(key, value)) {
                    found.add(
                        "unseen",
                        json!({"key": key, "value": value, "offset": offset, "writer": op.index}),
                    );
                }
            }
        }
    }

    // G1a: an ok operation read a value whose writer certainly failed.
    for op in completions.iter().filter(|op| op.kind == OpType::Ok) {
        for mop in mops(op) {
            let Mop::Poll(reads) = mop else { continue };
            for (key, pairs) in reads {
                for (offset, value) in pairs {
                    if let Some(w) = writer_of.get(&(key, value)) {
                        if w.kind == OpType::Fail {
                            found.add(
                                "G1a",
                                json!({"key": key, "value": value, "offset": offset,
                                       "reader": op.index, "writer": w.index}),
                            );
                        }
                    }
                }
            }
        }
    }

    let index_of =
        |key: u64, offset: i64| logs.get(&key).and_then(|l| l.index.get(&offset)).copied();

    // Within one operation: polls advance by exactly one index per key, and sends to one
    // key land in the order they were made.
    for op in completions.iter().filter(|op| op.kind == OpType::Ok) {
        let mut last_read: HashMap<u64, usize> = HashMap::new();
        let mut last_sent: HashMap<u64, usize> = HashMap::new();
        for mop in mops(op) {
            match mop {
                Mop::Poll(reads) => {
                    for (key, pairs) in reads {
                        if op.rebalance_log.contains(&key) {
                            continue;
                        }
                        for (offset, value) in pairs {
                            let Some(i) = index_of(key, offset) else {
                                continue;
                            };
                            if let Some(prev) = last_read.insert(key, i) {
                                let example = json!({"key": key, "process": op.process,
                                    "op": op.index, "from-index": prev, "to-index": i,
                                    "value": value});
                                if i > prev + 1 {
                                    found.add("int-poll-skip", example);
                                } else if i <= prev {
                                    found.add("int-nonmonotonic-poll", example);
                                }
                            }
                        }
                    }
                }
                Mop::Send {
                    key,
                    offset: Some(offset),
                    value,
                } => {
                    let Some(i) = index_of(key, offset) else {
                        continue;
                    };
                    if let Some(prev) = last_sent.insert(key, i) {
                        if i <= prev {
                            found.add(
                                "int-nonmonotonic-send",
                                json!({"key": key, "process": op.process, "op": op.index,
                                       "from-index": prev, "to-index": i, "value": value}),
                            );
                        }
                    }
                }
                Mop::Send { .. } => {}
            }
        }
    }

    // Across the operations of one process: the next poll of a key starts right after
    // where the previous one ended, unless an assign or subscribe dropped the key in
    // between; and a later send lands after an earlier one.
    // A process that subscribed (a consumer group member) may be moved by a rebalance to
    // a committed offset behind or ahead of where it was: its skips and re-reads are
    // reported under their own names and allowed, as in Jepsen.
    let mut polled_to: HashMap<(Process, u64), usize> = HashMap::new();
    let mut sent_to: HashMap<(Process, u64), usize> = HashMap::new();
    let mut subscribed: HashSet<Process> = HashSet::new();
    for op in &completions {
        if matches!(op.f.as_str(), "assign" | "subscribe") && op.kind == OpType::Ok {
            let keep = op.keys();
            polled_to.retain(|(p, k), _| *p != op.process || keep.contains(k));
            if op.f == "subscribe" {
                subscribed.insert(op.process);
            } else {
                subscribed.remove(&op.process);
            }
            continue;
        }
        let mut this_poll: HashMap<u64, (usize, usize)> = HashMap::new();
        let mut this_send: HashMap<u64, (usize, usize)> = HashMap::new();
        for mop in mops(op) {
            match mop {
                Mop::Poll(reads) => {
                    for (key, pairs) in reads {
                        for (offset, _) in pairs {
                            if let Some(i) = index_of(key, offset) {
                                this_poll.entry(key).or_insert((i, i)).1 = i;
                            }
                        }
                    }
                }
                Mop::Send {
                    key,
                    offset: Some(offset),
                    ..
                } => {
                    if let Some(i) = index_of(key, offset) {
                        this_send.entry(key).or_insert((i, i)).1 = i;
                    }
                }
                Mop::Send { .. } => {}
            }
        }
        if op.kind == OpType::Ok {
            for (key, (first, last)) in this_poll {
                if let Some(prev) = polled_to.insert((op.process, key), last) {
                    let example = json!({"key": key, "process": op.process, "op": op.index,
                                         "from-index": prev, "to-index": first});
                    let group = subscribed.contains(&op.process);
                    if first > prev + 1 {
                        let name = if group {
                            "subscribe-poll-skip"
                        } else {
                            "poll-skip"
                        };
                        found.add(name, example);
                    } else if first <= prev {
                        let name = if group {
                            "subscribe-nonmonotonic-poll"
                        } else {
                            "nonmonotonic-poll"
                        };
                        found.add(name, example);
                    }
                }
            }
        }
        if matches!(op.kind, OpType::Ok | OpType::Info) {
            for (key, (first, last)) in this_send {
                if let Some(prev) = sent_to.insert((op.process, key), last) {
                    if first <= prev {
                        found.add(
                            "nonmonotonic-send",
                            json!({"key": key, "process": op.process, "op": op.index,
                                   "from-index": prev, "to-index": first}),
                        );
                    }
                }
            }
        }
    }

    let mut counts: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for op in &completions {
        let slot = match op.kind {
            OpType::Ok => 0,
            OpType::Fail => 1,
            _ => 2,
        };
        counts.entry(op.f.clone()).or_default()[slot] += 1;
    }
    let liveness = liveness(history);
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

/// Fault windows (`start-X` to the next `stop-X` of the nemesis), the operations that
/// succeeded inside each, and how soon sends succeeded again after each ended.
fn liveness(history: &[Op]) -> Liveness {
    let seconds = |ns: u64| ns as f64 / 1e9;
    let mut open: HashMap<String, (u64, String, bool)> = HashMap::new();
    let mut spans: Vec<(String, u64, u64, bool)> = Vec::new();
    for op in history.iter().filter(|op| op.is_nemesis()) {
        if let Some(fault) = op.f.strip_prefix("start-") {
            let why = op.value.get("why").and_then(Value::as_str).unwrap_or("");
            let kind = if why.is_empty() {
                fault.to_string()
            } else {
                format!("{fault}-{why}")
            };
            let majority_down = (why == "majority" || why == "all") && fault != "partition";
            open.entry(fault.to_string())
                .or_insert((op.time, kind, !majority_down));
        } else if let Some(fault) = op.f.strip_prefix("stop-") {
            if let Some((start, kind, healthy)) = open.remove(fault) {
                spans.push((kind, start, op.time, healthy));
            }
        }
    }
    let end = end_time(history);
    spans.extend(
        open.into_values()
            .map(|(start, kind, h)| (kind, start, end, h)),
    );
    spans.sort_by_key(|w| w.1);
    // Sorted, so each fault window is two binary searches rather than a scan of the whole
    // history (a long run has thousands of windows and millions of operations).
    let sorted_times = |keep: &dyn Fn(&Op) -> bool| {
        let mut times: Vec<u64> = history
            .iter()
            .filter(|op| op.kind == OpType::Ok && keep(op))
            .map(|op| op.time)
            .collect();
        times.sort_unstable();
        times
    };
    let ok_times = sorted_times(&|op| !op.is_nemesis());
    let send_times = sorted_times(&|op| op.f == "send");
    let next_send = |after: u64| {
        let first = send_times.partition_point(|t| *t < after);
        send_times.get(first).map(|t| seconds(t - after))
    };
    let ok_between = |start: u64, stop: u64| {
        ok_times.partition_point(|t| *t <= stop) - ok_times.partition_point(|t| *t < start)
    };
    let windows: Vec<Window> = spans
        .iter()
        .map(|(kind, start, stop, majority_healthy)| Window {
            kind: kind.clone(),
            start: seconds(*start),
            stop: seconds(*stop),
            ok_ops: ok_between(*start, *stop),
            majority_healthy: *majority_healthy,
            recovery_seconds: next_send(*stop),
        })
        .collect();
    let inside: f64 = windows.iter().map(|w| w.stop - w.start).sum();
    let ok_inside: usize = windows.iter().map(|w| w.ok_ops).sum();
    let outside_seconds = seconds(end) - inside;
    let ok_per_second_outside_faults = if outside_seconds > 0.0 {
        (ok_times.len() - ok_inside) as f64 / outside_seconds
    } else {
        0.0
    };
    let mut by_kind: BTreeMap<String, KindLiveness> = BTreeMap::new();
    for kind in windows.iter().map(|w| &w.kind) {
        if by_kind.contains_key(kind) {
            continue;
        }
        let of_kind: Vec<&Window> = windows.iter().filter(|w| &w.kind == kind).collect();
        let mut kept: Vec<f64> = of_kind
            .iter()
            .map(|w| {
                let rate = w.ok_ops as f64 / (w.stop - w.start).max(1e-9);
                rate / ok_per_second_outside_faults.max(1e-9)
            })
            .collect();
        let mut recoveries: Vec<f64> = of_kind.iter().filter_map(|w| w.recovery_seconds).collect();
        by_kind.insert(
            kind.clone(),
            KindLiveness {
                count: of_kind.len(),
                median_rate_kept: median(&mut kept).unwrap_or(0.0),
                median_recovery_seconds: median(&mut recoveries),
                max_recovery_seconds: recoveries.iter().copied().reduce(f64::max),
            },
        );
    }
    Liveness {
        ok_per_second_outside_faults,
        recovery_seconds: windows.last().and_then(|w| w.recovery_seconds),
        windows,
        by_kind,
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
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
