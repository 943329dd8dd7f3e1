//! The history of a test run: one JSON object per line, shaped like Jepsen's histories.
//!
//! ```json
//! {"index":0,"time":1200345,"process":3,"type":"invoke","f":"send","value":[["send",5,42]]}
//! {"index":1,"time":5300000,"process":3,"type":"ok","f":"send","value":[["send",5,[17,42]]]}
//! {"index":3,"time":5900000,"process":4,"type":"ok","f":"poll","value":[["poll",[[5,[[16,41],[17,42]]]]]]}
//! {"index":5,"time":6100000,"process":"nemesis","type":"info","f":"start-kill","value":{"targets":["n2"]}}
//! ```
//!
//! `time` is nanoseconds since the test started. A send completes as `["send", key,
//! [offset, value]]` (offset `null` when unknown); a poll as `["poll", [[key, [[offset,
//! value], ...]], ...]]`. `assign` and `subscribe` carry the keys. Nemesis operations come
//! as `start-X` / `stop-X` pairs with process `"nemesis"`.

use std::io::BufRead;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Jepsen's operation types: `ok` happened, `fail` certainly did not, `info` may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpType {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// Who performed an operation: a client worker or the nemesis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Process {
    Worker(u64),
    Nemesis(NemesisTag),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NemesisTag {
    Nemesis,
}

/// One line of the history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    pub index: u64,
    pub time: u64,
    pub process: Process,
    #[serde(rename = "type")]
    pub kind: OpType,
    pub f: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// Keys whose partitions were revoked or assigned while the operation ran.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rebalance_log: Vec<u64>,
}

/// A micro-operation of a completed send, poll or txn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mop {
    Send {
        key: u64,
        offset: Option<i64>,
        value: i64,
    },
    /// Per key, the (offset, value) pairs read, in the order read.
    Poll(Vec<(u64, Vec<(i64, i64)>)>),
}

/// The time of the history's last operation (its ops are in time order unless edited by
/// hand, so the latest, not the last line).
pub fn end_time(history: &[Op]) -> u64 {
    history.iter().map(|op| op.time).max().unwrap_or(0)
}

impl Op {
    pub fn is_nemesis(&self) -> bool {
        matches!(self.process, Process::Nemesis(_))
    }

    /// The micro-operations of a completed send, poll or txn.
    pub fn mops(&self) -> anyhow::Result<Vec<Mop>> {
        if self.kind == OpType::Invoke || !matches!(self.f.as_str(), "send" | "poll" | "txn") {
            return Ok(Vec::new());
        }
        let Some(list) = self.value.as_array() else {
            return Ok(Vec::new());
        };
        list.iter()
            .map(|mop| parse_mop(mop).with_context(|| format!("op {}: {mop}", self.index)))
            .collect()
    }

    /// The keys of an `assign` or `subscribe`.
    pub fn keys(&self) -> Vec<u64> {
        self.value
            .as_array()
            .map(|keys| keys.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default()
    }
}

fn parse_mop(mop: &Value) -> anyhow::Result<Mop> {
    let parts = mop.as_array().context("a micro-op is an array")?;
    match parts.first().and_then(Value::as_str) {
        Some("send") => {
            let key = parts.get(1).and_then(Value::as_u64).context("send key")?;
            let result = parts.get(2).context("send result")?;
            let (offset, value) = match result {
                Value::Array(pair) => (
                    pair.first().and_then(Value::as_i64),
                    pair.get(1).and_then(Value::as_i64).context("send value")?,
                ),
                // A send that never completed carries just the value.
                other => (None, other.as_i64().context("send value")?),
            };
            Ok(Mop::Send { key, offset, value })
        }
        Some("poll") => {
            let mut reads = Vec::new();
            if let Some(keys) = parts.get(1).and_then(Value::as_array) {
                for entry in keys {
                    let key = entry.get(0).and_then(Value::as_u64).context("poll key")?;
                    let pairs = entry
                        .get(1)
                        .and_then(Value::as_array)
                        .context("poll reads")?;
                    let mut read = Vec::with_capacity(pairs.len());
                    for pair in pairs {
                        let offset = pair.get(0).and_then(Value::as_i64).context("offset")?;
                        let value = pair.get(1).and_then(Value::as_i64).context("value")?;
                        read.push((offset, value));
                    }
                    reads.push((key, read));
                }
            }
            Ok(Mop::Poll(reads))
        }
        other => bail!("unknown micro-op {other:?}"),
    }
}

/// Reads a JSON Lines history.
pub fn read(reader: impl BufRead) -> anyhow::Result<Vec<Op>> {
    let mut ops = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        ops.push(serde_json::from_str(&line).with_context(|| format!("history line {}", n + 1))?);
    }
    Ok(ops)
}
