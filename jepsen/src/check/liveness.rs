//! Liveness: how the system kept serving while faults were active, and how soon it came
//! back after each.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::history::{end_time, Op, OpType};

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
/// Fault windows (`start-X` to the next `stop-X` of the nemesis), the operations that
/// succeeded inside each, and how soon sends succeeded again after each ended.
pub fn liveness(history: &[Op]) -> Liveness {
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
