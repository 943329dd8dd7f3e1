//! One function per anomaly of Jepsen's Kafka queue analysis, each adding what it finds to
//! the findings under the anomaly's Jepsen name.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::json;

use super::version_order::Analysis;
use super::Findings;
use crate::history::{Mop, OpType, Process};

/// `inconsistent-offsets`: two values at one offset of a key.
pub fn inconsistent_offsets(a: &Analysis, found: &mut Findings) {
    for (key, log) in &a.logs {
        for (offset, values) in &log.by_offset {
            if values.len() > 1 {
                found.add(
                    "inconsistent-offsets",
                    json!({"key": key, "offset": offset, "values": values}),
                );
            }
        }
    }
}

/// `duplicate`: one value at two offsets of a key.
pub fn duplicates(a: &Analysis, found: &mut Findings) {
    for (key, log) in &a.logs {
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
    }
}

/// `lost-write`: a value that lies at or below the highest point ok polls reached, whose
/// writer must have committed, yet no ok poll read it.
pub fn lost_writes(a: &Analysis, found: &mut Findings) {
    for (key, log) in &a.logs {
        let Some(read) = a.read_ok.get(key) else {
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
            if last > bound || read.contains(value) || log.value_superseded(*value) {
                continue;
            }
            let writer = a.writer_of.get(&(*key, *value));
            if let Some(writer) = writer.filter(|w| a.must_have_committed(w)) {
                found.add(
                    "lost-write",
                    json!({"key": key, "value": value, "index": last, "max-read-index": bound,
                           "writer": writer.index}),
                );
            }
        }
    }
}

/// `unseen`: acknowledged sends no ok poll ever read. Returns how many sends were
/// acknowledged.
pub fn unseen(a: &Analysis, found: &mut Findings) -> usize {
    let mut acknowledged_sends = 0;
    for op in a.ok() {
        for mop in a.mops(op) {
            if let Mop::Send { key, value, offset } = mop {
                acknowledged_sends += 1;
                if !a.read_by_any_ok.contains(&(key, value)) && !a.superseded(key, value) {
                    found.add(
                        "unseen",
                        json!({"key": key, "value": value, "offset": offset, "writer": op.index}),
                    );
                }
            }
        }
    }
    acknowledged_sends
}

/// `final-read-gap` (not one of Jepsen's): an acknowledged send at an offset between a
/// partition's log start and end, as the final reads found them (their `ends` operation),
/// that those reads did not return. Jepsen's anomalies compare reads with one another, so a
/// record every worker read and the cluster then lost goes unnoticed by them; the final
/// reads, made once everything healed, must return all that the log still holds.
///
/// `unserved-partition` (not one of Jepsen's either): an acknowledged send to a partition
/// whose end the final reads could not find at all, once every fault had healed: the
/// cluster lost the partition (or the topic), or no longer serves it. Values read during
/// the run and then lost with their partition would otherwise go unnoticed.
pub fn final_read_gaps(a: &Analysis, found: &mut Findings) {
    let Some(ends) = a.ok().filter(|op| op.f == "ends").last() else {
        return;
    };
    let ranges: HashMap<u64, (i64, i64)> = ends.value[0][1]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| Some((r[0].as_u64()?, (r[1].as_i64()?, r[2].as_i64()?))))
        .collect();
    let mut read: HashSet<(u64, i64)> = HashSet::new();
    for op in a.ok().filter(|op| op.process == ends.process) {
        for mop in a.mops(op) {
            if let Mop::Poll(reads) = mop {
                for (key, pairs) in reads {
                    read.extend(pairs.into_iter().map(|(offset, _)| (key, offset)));
                }
            }
        }
    }
    for op in a.ok() {
        for mop in a.mops(op) {
            let Mop::Send {
                key,
                value,
                offset: Some(offset),
            } = mop
            else {
                continue;
            };
            let Some(&(start, end)) = ranges.get(&key) else {
                if !a.superseded(key, value) {
                    found.add(
                        "unserved-partition",
                        json!({"key": key, "value": value, "offset": offset, "writer": op.index}),
                    );
                }
                continue;
            };
            if (start..end).contains(&offset)
                && !read.contains(&(key, offset))
                && !a.superseded(key, value)
            {
                found.add(
                    "final-read-gap",
                    json!({"key": key, "value": value, "offset": offset, "log-start": start,
                           "log-end": end, "writer": op.index}),
                );
            }
        }
    }
}

/// `G1a` (aborted read): an ok operation read a value whose writer certainly failed.
pub fn aborted_reads(a: &Analysis, found: &mut Findings) {
    for op in a.ok() {
        for mop in a.mops(op) {
            let Mop::Poll(reads) = mop else { continue };
            for (key, pairs) in reads {
                for (offset, value) in pairs {
                    if let Some(w) = a.writer_of.get(&(key, value)) {
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
}

/// Within one operation (`int-poll-skip`, `int-nonmonotonic-poll`,
/// `int-nonmonotonic-send`): polls advance by exactly one index per key, and sends to one
/// key land in the order they were made.
pub fn within_operations(a: &Analysis, found: &mut Findings) {
    for op in a.ok() {
        let mut last_read: HashMap<u64, usize> = HashMap::new();
        let mut last_sent: HashMap<u64, usize> = HashMap::new();
        for mop in a.mops(op) {
            match mop {
                Mop::Poll(reads) => {
                    for (key, pairs) in reads {
                        if op.rebalance_log.contains(&key) {
                            continue;
                        }
                        for (offset, value) in pairs {
                            let Some(i) = a.index_of(key, offset) else {
                                continue;
                            };
                            if let Some(prev) = last_read.insert(key, i) {
                                let example = json!({"key": key, "process": op.process,
                                    "op": op.index, "from-index": prev, "to-index": i,
                                    "value": value});
                                if i <= prev {
                                    found.add("int-nonmonotonic-poll", example);
                                } else if !a.adjacent(key, prev, i) {
                                    found.add("int-poll-skip", example);
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
                    let Some(i) = a.index_of(key, offset) else {
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
}

/// Across the operations of one process (`poll-skip`, `nonmonotonic-poll`,
/// `nonmonotonic-send`): the next poll of a key starts right after where the previous one
/// ended, unless an assign or subscribe dropped the key in between; and a later send lands
/// after an earlier one. A process that subscribed (a consumer group member) may be moved
/// by a rebalance to a committed offset behind or ahead of where it was: its skips and
/// re-reads are reported as `subscribe-poll-skip` and `subscribe-nonmonotonic-poll`, which
/// are allowed, as in Jepsen.
pub fn across_operations(a: &Analysis, found: &mut Findings) {
    let mut polled_to: HashMap<(Process, u64), usize> = HashMap::new();
    let mut sent_to: HashMap<(Process, u64), usize> = HashMap::new();
    let mut subscribed: HashSet<Process> = HashSet::new();
    for op in &a.completions {
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
        for mop in a.mops(op) {
            match mop {
                Mop::Poll(reads) => {
                    for (key, pairs) in reads {
                        for (offset, _) in pairs {
                            if let Some(i) = a.index_of(key, offset) {
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
                    if let Some(i) = a.index_of(key, offset) {
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
                    if first > prev && !a.adjacent(key, prev, first) {
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
}
