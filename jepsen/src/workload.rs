//! Jepsen's queue workload: workers send unique, increasing values per key (a key is a
//! partition of one topic) with an idempotent acks=all producer, and poll: most with a
//! consumer assigned to every partition from the start, so each reads each partition in
//! order; some as members of one consumer group, committing what they read. A send that
//! fails is recorded as `info` (it may still have happened); the checker decides what it
//! means. After the faults heal, final reads read every partition to its end.
//!
//! Meanwhile a deleter moves each partition's log start with DeleteRecords, up to where
//! every assigning worker has read it: the records deleted were all seen, so the checker
//! needs no notion of deletion, and any acknowledged record at or above a log start that
//! the final reads miss is a lost write. Deleting makes the nodes purge their Raft logs,
//! and a node that was down meanwhile catch up by snapshot. With `--cleanup-policy
//! compact,delete` the topic is compacted too. A record with an odd value has one of
//! [`REGISTERS`] Kafka keys (its value modulo that), so later ones supersede it and the
//! cleaner may remove it; one with an even value has a key of its own and must stay, as
//! must each register's last record, while the cleaner moves batches out of the Raft log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::clients::{abandon, client_config, consumer, producer, retry, subscriber, Reader};
use crate::recorder::Recorder;
use crate::run::RunOptions;

pub(crate) const TOPIC: &str = "jepsen";

/// Kafka keys the odd values of a partition share: enough that one byte of a hash tells
/// some apart wrongly (the compact-by-hash unsafe mode), few enough that each is written
/// many times.
pub(crate) const REGISTERS: i64 = 64;

/// A message read but not yet recorded: partition, offset, value.
type Carried = Option<(i32, i64, i64)>;

/// Polls for up to `window`, grouping what was read by key. The consumer's errors while a
/// node is down (transport failures, leader changes) are notices: librdkafka retries by
/// itself, so the poll goes on and keeps what it read.
///
/// A rebalance ends the operation (a member may then re-read or skip, which the checker
/// allows between a member's operations but not inside one): the first message after it
/// is carried into the next operation.
fn poll_once(consumer: &Reader, window: Duration, carried: &mut Carried) -> Result<Value, String> {
    let deadline = Instant::now() + window;
    let rebalances = || consumer.context().rebalances.load(Ordering::Relaxed);
    let started = rebalances();
    let mut reads: BTreeMap<i32, Vec<Value>> = BTreeMap::new();
    if let Some((partition, offset, value)) = carried.take() {
        reads
            .entry(partition)
            .or_default()
            .push(json!([offset, value]));
    }
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(20)) {
            None => {}
            Some(Ok(m)) => {
                let value: i64 = m
                    .payload()
                    .and_then(|p| std::str::from_utf8(p).ok())
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| format!("unreadable value at offset {}", m.offset()))?;
                if rebalances() != started && !reads.is_empty() {
                    *carried = Some((m.partition(), m.offset(), value));
                    break;
                }
                reads
                    .entry(m.partition())
                    .or_default()
                    .push(json!([m.offset(), value]));
            }
            Some(Err(e)) => {
                let events = consumer.context();
                events
                    .log
                    .note(&events.process, &format!("poll error: {e}"));
            }
        }
    }
    let reads: Vec<Value> = reads.into_iter().map(|(k, r)| json!([k, r])).collect();
    Ok(json!([["poll", reads]]))
}

/// For each key of a poll's result, the offset after the last record read.
fn read_up_to(poll: &Value) -> Vec<(i32, i64)> {
    poll[0][1]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            let key = entry[0].as_i64()? as i32;
            let last = entry[1].as_array()?.last()?;
            Some((key, last[0].as_i64()? + 1))
        })
        .collect()
}

/// How far each assigning worker has read each key: the offset after the last record one
/// of its ok polls returned.
pub(crate) struct ReadPositions {
    keys: usize,
    next: Vec<AtomicI64>,
}

impl ReadPositions {
    pub(crate) fn new(readers: usize, keys: i32) -> ReadPositions {
        let keys = keys.max(0) as usize;
        ReadPositions {
            keys,
            next: (0..readers * keys).map(|_| AtomicI64::new(0)).collect(),
        }
    }

    fn advance(&self, reader: usize, key: i32, next: i64) {
        if let Some(slot) = self.next.get(reader * self.keys + key as usize) {
            slot.fetch_max(next, Ordering::Relaxed);
        }
    }

    /// The offset every reader has read `key` up to; `None` without readers.
    fn read_by_all(&self, key: i32) -> Option<i64> {
        self.next
            .iter()
            .skip(key as usize)
            .step_by(self.keys.max(1))
            .map(|n| n.load(Ordering::Relaxed))
            .min()
    }
}

/// The deleter's process id in the history.
const DELETER: u64 = 2_000_000;

/// Every `options.delete_every`, moves a random key's log start up to where every
/// assigning worker has read it (if that is past where it was last moved to).
pub(crate) fn deleter(
    options: &RunOptions,
    bootstrap: &str,
    history: &Recorder,
    positions: &ReadPositions,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let Some(every) = options.delete_every else {
        return Ok(());
    };
    let admin: AdminClient<DefaultClientContext> = client_config(bootstrap).create()?;
    let request = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    let mut rng = StdRng::seed_from_u64(options.seed ^ DELETER);
    let mut deleted = vec![0i64; options.keys.max(0) as usize];
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        next += every;
        let key = rng.gen_range(0..options.keys);
        let Some(offset) = positions.read_by_all(key) else {
            eprintln!("jepsen: no worker assigns itself partitions, so nothing is deleted");
            return Ok(());
        };
        if offset <= deleted[key as usize] {
            continue;
        }
        let process = json!(DELETER);
        history.log(
            process.clone(),
            "invoke",
            "delete",
            json!([["delete", key, offset]]),
            None,
        );
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition_offset(TOPIC, key, Offset::Offset(offset))?;
        let result = futures::executor::block_on(admin.delete_records(&partitions, &request))
            .map_err(|e| e.to_string())
            .and_then(|list| {
                let element = list.elements().into_iter().next();
                match element {
                    Some(e) => match e.error() {
                        Ok(()) => Ok(e.offset().to_raw().unwrap_or(-1)),
                        Err(err) => Err(err.to_string()),
                    },
                    None => Err("no result for the partition".to_string()),
                }
            });
        match result {
            Ok(start) => {
                deleted[key as usize] = offset;
                history.log(
                    process,
                    "ok",
                    "delete",
                    json!([["delete", key, start]]),
                    None,
                );
            }
            Err(e) => history.log(
                process,
                "info",
                "delete",
                json!([["delete", key, offset]]),
                Some(e),
            ),
        }
    }
    Ok(())
}

/// One worker's loop: sends and polls at its share of the rate until `stop`.
pub(crate) fn worker(
    id: u64,
    options: &RunOptions,
    bootstrap: &str,
    history: &Recorder,
    next_value: &[AtomicI64],
    positions: &ReadPositions,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(options.seed ^ (id + 1).wrapping_mul(0x9E37_79B9));
    let producer = producer(bootstrap)?;
    // The first `subscribers` workers are consumer group members; the rest assign.
    let member = (id as usize) < options.subscribers;
    let mut carried: Carried = None;
    let consumer = if member {
        let keys: Vec<i32> = (0..options.keys).collect();
        history.log(json!(id), "invoke", "subscribe", json!(keys), None);
        let consumer = subscriber(bootstrap, json!(id), history)?;
        history.log(json!(id), "ok", "subscribe", json!(keys), None);
        consumer
    } else {
        consumer(bootstrap, options.keys, json!(id), history)?
    };
    let pause = Duration::from_secs_f64(options.workers as f64 / options.rate);
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        if rng.gen_bool(0.5) {
            let key = rng.gen_range(0..options.keys);
            let value = next_value[key as usize].fetch_add(1, Ordering::Relaxed);
            history.log(
                json!(id),
                "invoke",
                "send",
                json!([["send", key, value]]),
                None,
            );
            let payload = value.to_string();
            let kafka_key = match value % 2 {
                0 => payload.clone(),
                _ => format!("r{}", value % REGISTERS),
            };
            let record = FutureRecord::to(TOPIC)
                .partition(key)
                .key(&kafka_key)
                .payload(&payload);
            let outcome = match producer.send_result(record) {
                Ok(delivery) => match futures::executor::block_on(delivery) {
                    // A negative offset is "unknown" (an unsafe mode answers so).
                    Ok(Ok(d)) => Ok((d.offset >= 0).then_some(d.offset)),
                    Ok(Err((e, _))) => Err(e.to_string()),
                    Err(_) => Err("the producer went away".to_string()),
                },
                Err((e, _)) => Err(e.to_string()),
            };
            match outcome {
                Ok(offset) => history.log(
                    json!(id),
                    "ok",
                    "send",
                    json!([["send", key, [offset, value]]]),
                    None,
                ),
                Err(e) => history.log(
                    json!(id),
                    "info",
                    "send",
                    json!([["send", key, [null, value]]]),
                    Some(e),
                ),
            }
        } else {
            history.log(json!(id), "invoke", "poll", json!([["poll"]]), None);
            match poll_once(&consumer, Duration::from_millis(100), &mut carried) {
                Ok(value) => {
                    if !member {
                        let reader = id as usize - options.subscribers;
                        for (key, next) in read_up_to(&value) {
                            positions.advance(reader, key, next);
                        }
                    }
                    history.log(json!(id), "ok", "poll", value, None);
                    if member {
                        // Commit what was read; a rebalance resumes from here. A commit
                        // lost in a fault only makes a later member re-read.
                        let _ = consumer.commit_consumer_state(CommitMode::Async);
                    }
                }
                Err(e) => history.log(json!(id), "info", "poll", json!([["poll"]]), Some(e)),
            }
        }
        if let Some(rest) = pause.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    if member {
        abandon(consumer);
    }
    Ok(())
}

/// Reads every partition from the start up to the end it had once everything healed, as a
/// fresh process, so that every acknowledged value has had its chance to be seen. The start
/// and end of each partition go into the history first (`ends`): the reads must return
/// everything acknowledged between them.
pub(crate) fn final_reads(
    options: &RunOptions,
    bootstrap: &str,
    history: &Recorder,
) -> anyhow::Result<()> {
    let process = json!(1_000_000u64);
    let consumer = consumer(bootstrap, options.keys, process.clone(), history)?;
    let mut carried: Carried = None;
    let mut ends = BTreeMap::new();
    let mut range = Vec::new();
    // Leadership may still be settling after the last fault: retry errors a while, two
    // minutes in all but at least 20 s for each partition.
    let all_deadline = Instant::now() + Duration::from_secs(120);
    for key in 0..options.keys {
        let limit = all_deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(20));
        let end = retry(limit, || {
            Ok(consumer.fetch_watermarks(TOPIC, key, Timeout::After(Duration::from_secs(10)))?)
        });
        match end {
            Ok((low, high)) => {
                ends.insert(key, high);
                range.push(json!([key, low, high]));
            }
            // A partition the cluster no longer serves at all (a broken broker may even
            // have lost the topic) is not read: the checker then finds its acknowledged
            // values unseen.
            Err(e) => {
                let error = format!("cannot find the end of partition {key}: {e}");
                eprintln!("jepsen: {error}");
                history.log(
                    process.clone(),
                    "info",
                    "poll",
                    json!([["poll"]]),
                    Some(error),
                );
            }
        }
    }
    // What the reads must return all of (the checker's final-read-gap).
    history.log(
        process.clone(),
        "ok",
        "ends",
        json!([["ends", range]]),
        None,
    );
    let mut reached: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline
        && ends
            .iter()
            .any(|(k, end)| reached.get(k).copied().unwrap_or(0) < *end)
    {
        history.log(process.clone(), "invoke", "poll", json!([["poll"]]), None);
        match poll_once(&consumer, Duration::from_millis(500), &mut carried) {
            Ok(value) => {
                reached.extend(read_up_to(&value));
                history.log(process.clone(), "ok", "poll", value, None);
            }
            Err(e) => history.log(process.clone(), "info", "poll", json!([["poll"]]), Some(e)),
        }
    }
    Ok(())
}
