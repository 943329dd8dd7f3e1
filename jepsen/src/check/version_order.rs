//! What the history says each key's log holds: who sent each value, what ok polls read,
//! and each key's version order, numbered densely (see the module docs of `check`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::history::{Mop, Op, OpType};

/// The register a value was written under on a compacted topic: odd values share one of
/// `registers` Kafka keys (the value modulo it), even ones have keys of their own.
pub fn register(value: i64, registers: u64) -> Option<i64> {
    (value % 2 != 0).then(|| value.rem_euclid(registers as i64))
}

/// A key's log as the history reveals it.
#[derive(Default)]
pub struct KeyLog {
    /// Offset to the values seen there.
    pub by_offset: BTreeMap<i64, BTreeSet<i64>>,
    /// Dense index of each offset.
    pub index: HashMap<i64, usize>,
    /// Value to the indices it was seen at.
    pub indices_of: HashMap<i64, BTreeSet<usize>>,
    /// Indices a later index of the same register follows: the log cleaner may remove them.
    pub superseded: BTreeSet<usize>,
}

impl KeyLog {
    fn number(&mut self, registers: Option<u64>) {
        for (i, (offset, values)) in self.by_offset.iter().enumerate() {
            self.index.insert(*offset, i);
            for v in values {
                self.indices_of.entry(*v).or_default().insert(i);
            }
        }
        let Some(registers) = registers.filter(|&r| r > 0) else {
            return;
        };
        let mut later = BTreeSet::new();
        for (i, values) in self.by_offset.values().enumerate().rev() {
            let own: Vec<i64> = values
                .iter()
                .filter_map(|&v| register(v, registers))
                .collect();
            if own.iter().any(|r| later.contains(r)) {
                self.superseded.insert(i);
            }
            later.extend(own);
        }
    }

    /// Whether every index strictly between `from` and `to` is superseded: a reader may
    /// step over them on a compacted topic.
    pub fn only_superseded_between(&self, from: usize, to: usize) -> bool {
        to <= from + 1 || self.superseded.range(from + 1..to).count() == to - from - 1
    }

    /// Whether `value` was seen only at superseded indices (and seen at all).
    pub fn value_superseded(&self, value: i64) -> bool {
        self.indices_of
            .get(&value)
            .is_some_and(|at| at.iter().all(|i| self.superseded.contains(i)))
    }
}

/// The facts every anomaly is judged on, gathered once from the completions.
pub struct Analysis<'h> {
    /// Every completion of a client operation, in history order.
    pub completions: Vec<&'h Op>,
    mops_of: HashMap<u64, Vec<Mop>>,
    /// The completion that sent each (key, value).
    pub writer_of: HashMap<(u64, i64), &'h Op>,
    /// Values each key's ok polls read.
    pub read_ok: HashMap<u64, BTreeSet<i64>>,
    pub read_by_any_ok: BTreeSet<(u64, i64)>,
    /// Each key's version order.
    pub logs: BTreeMap<u64, KeyLog>,
    /// On a compacted topic, how many Kafka keys each key's odd values share (see
    /// [`register`]): the history's `registers` operation.
    pub registers: Option<u64>,
}

impl<'h> Analysis<'h> {
    pub fn new(history: &'h [Op]) -> anyhow::Result<Analysis<'h>> {
        let completions: Vec<&Op> = history
            .iter()
            .filter(|op| op.kind != OpType::Invoke && !op.is_nemesis())
            .collect();
        let mut mops_of = HashMap::new();
        for op in &completions {
            mops_of.insert(op.index, op.mops()?);
        }
        let mut analysis = Analysis {
            completions,
            mops_of,
            writer_of: HashMap::new(),
            read_ok: HashMap::new(),
            read_by_any_ok: BTreeSet::new(),
            logs: BTreeMap::new(),
            registers: None,
        };
        let registers = analysis.ok().find(|op| op.f == "registers");
        analysis.registers = registers.and_then(|op| op.value.as_u64());
        analysis.who_sent_and_read();
        analysis.logs = analysis.version_orders();
        Ok(analysis)
    }

    /// The micro-operations of a completion.
    pub fn mops(&self, op: &Op) -> Vec<Mop> {
        self.mops_of.get(&op.index).cloned().unwrap_or_default()
    }

    /// The ok completions.
    pub fn ok(&self) -> impl Iterator<Item = &'h Op> + '_ {
        self.completions
            .iter()
            .copied()
            .filter(|op| op.kind == OpType::Ok)
    }

    /// Whether `value` of `key` is one the log cleaner may have removed.
    pub fn superseded(&self, key: u64, value: i64) -> bool {
        self.logs
            .get(&key)
            .is_some_and(|l| l.value_superseded(value))
    }

    /// Whether a read of `key` may go from index `from` to `to` without a skip.
    pub fn adjacent(&self, key: u64, from: usize, to: usize) -> bool {
        to == from + 1
            || (to > from
                && self
                    .logs
                    .get(&key)
                    .is_some_and(|l| l.only_superseded_between(from, to)))
    }

    /// The dense index of `offset` in `key`'s version order.
    pub fn index_of(&self, key: u64, offset: i64) -> Option<usize> {
        self.logs
            .get(&key)
            .and_then(|l| l.index.get(&offset))
            .copied()
    }

    /// Whether `op` must have committed: it is ok, or info and something it sent was read.
    pub fn must_have_committed(&self, op: &Op) -> bool {
        match op.kind {
            OpType::Ok => true,
            OpType::Info => self.mops(op).iter().any(|m| {
                matches!(m, Mop::Send { key, value, .. }
                    if self.read_by_any_ok.contains(&(*key, *value)))
            }),
            _ => false,
        }
    }

    fn who_sent_and_read(&mut self) {
        for op in self.completions.clone() {
            for mop in self.mops(op) {
                match mop {
                    Mop::Send { key, value, .. } => {
                        self.writer_of.insert((key, value), op);
                    }
                    Mop::Poll(reads) if op.kind == OpType::Ok => {
                        for (key, pairs) in reads {
                            for (_, v) in pairs {
                                self.read_ok.entry(key).or_default().insert(v);
                                self.read_by_any_ok.insert((key, v));
                            }
                        }
                    }
                    Mop::Poll(_) => {}
                }
            }
        }
    }

    /// Each key's values by offset, from every poll and every send that must have
    /// committed, numbered densely.
    fn version_orders(&self) -> BTreeMap<u64, KeyLog> {
        let mut logs: BTreeMap<u64, KeyLog> = BTreeMap::new();
        for op in &self.completions {
            let committed = self.must_have_committed(op);
            for mop in self.mops(op) {
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
            log.number(self.registers);
        }
        logs
    }
}
