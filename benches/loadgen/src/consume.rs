//! Catch-up reading: consumers assigned to every partition from the beginning read until
//! a byte or record target, or the end of what the topic held when they started, and the
//! rate is what a consumer that fell behind would see.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::stats::{round3, secs_to_ns, Clock, Series};
use crate::{topic, ClientArgs};

#[derive(Args, Debug, Clone)]
pub struct ConsumeArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    /// Stop after this many payload bytes (default: everything the topic holds at the start).
    #[arg(long)]
    pub bytes: Option<u64>,
    /// Stop after this many records.
    #[arg(long)]
    pub records: Option<u64>,
    /// Consumer client instances; the partitions are dealt out among them.
    #[arg(long, default_value_t = 1)]
    pub consumers: usize,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 600.0)]
    pub timeout: f64,
    /// max.partition.fetch.bytes (the OpenMessaging Benchmark's Kafka driver uses 10 MiB).
    #[arg(long, default_value_t = 10_485_760)]
    pub max_partition_fetch_bytes: u64,
}

/// Catching up on a few hundred MB takes seconds, so the chart needs finer steps.
const SERIES_INTERVAL: Duration = Duration::from_millis(100);

/// Totals shared by the consumer threads, so one target stops them all.
struct Progress {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
}

pub fn run(args: &ConsumeArgs, run_id: u64) -> anyhow::Result<Value> {
    anyhow::ensure!(args.consumers > 0, "--consumers must be at least 1");
    let topic = &args.client.topic;
    let base = args.client.config();
    let partitions = topic::partitions(&base, topic)?;

    let mut config = args
        .client
        .consumer_config(run_id, args.max_partition_fetch_bytes);
    config.set("enable.partition.eof", "true");
    args.client.apply_overrides(&mut config);

    let probe: BaseConsumer = config.create().context("creating a consumer")?;
    let mut ends = Vec::new();
    let mut available = 0u64;
    for &p in &partitions {
        let (low, high) = probe
            .fetch_watermarks(topic, p, Duration::from_secs(30))
            .with_context(|| format!("watermarks of {topic}/{p}"))?;
        available += (high - low).max(0) as u64;
        ends.push((p, high));
    }
    ready_coordinator(&probe, topic, &partitions);
    drop(probe);

    let progress = Progress {
        records: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        errors: AtomicU64::new(0),
    };
    let clock = Clock::start();
    let deadline_ns = secs_to_ns(args.timeout);
    let results: Vec<anyhow::Result<Read>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..args.consumers)
            .map(|i| {
                let mine: Vec<(i32, i64)> = ends
                    .iter()
                    .copied()
                    .skip(i)
                    .step_by(args.consumers)
                    .collect();
                let config = &config;
                let progress = &progress;
                scope.spawn(move || {
                    read(
                        config,
                        args,
                        topic,
                        &mine,
                        progress,
                        clock,
                        deadline_ns,
                        available,
                    )
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("consumer thread panicked"))
            .collect()
    });
    let (mut first_ns, mut finished_ns, mut timed_out) = (u64::MAX, 0, false);
    let mut series = Series::new(SERIES_INTERVAL);
    for result in results {
        let read = result?;
        first_ns = first_ns.min(read.first_ns.unwrap_or(u64::MAX));
        finished_ns = finished_ns.max(read.last_ns);
        timed_out |= read.timed_out;
        series.merge(&read.series);
    }
    let records = progress.records.load(Ordering::Relaxed);
    let bytes = progress.bytes.load(Ordering::Relaxed);
    // The rate runs from the first record to the last: connecting and finding the start
    // of each partition is reported apart, as the time to the first record.
    let first_ns = if first_ns == u64::MAX { 0 } else { first_ns };
    let seconds = finished_ns.saturating_sub(first_ns) as f64 / 1e9;
    let per_s = |x: u64| {
        if seconds > 0.0 {
            x as f64 / seconds
        } else {
            0.0
        }
    };
    if timed_out {
        eprintln!("loadgen: consume timed out after {} s", args.timeout);
    }
    Ok(json!({
        "mode": "consume",
        "config": {
            "bootstrap": args.client.bootstrap,
            "topic": topic,
            "partitions": partitions.len(),
            "consumers": args.consumers,
            "target_bytes": args.bytes,
            "target_records": args.records,
            "max_partition_fetch_bytes": args.max_partition_fetch_bytes,
        },
        "available_records": available,
        "records": records,
        "bytes": bytes,
        "seconds": round3(seconds),
        "first_record_s": round3(first_ns as f64 / 1e9),
        "records_per_s": per_s(records).round() as u64,
        "mb_per_s": round3(per_s(bytes) / 1e6),
        "series": series.to_json(),
        "errors": progress.errors.load(Ordering::Relaxed),
        "timed_out": timed_out,
    }))
}

/// Waits until the consumer's group coordinator answers. Even an assigned consumer looks
/// one up, and on Kafka the first lookup creates `__consumer_offsets` (50 partitions), which
/// must not happen inside a measurement.
pub fn ready_coordinator(consumer: &BaseConsumer, topic: &str, partitions: &[i32]) {
    let mut list = TopicPartitionList::new();
    for &p in partitions {
        list.add_partition(topic, p);
    }
    // While the offsets topic is being created the broker answers NOT_COORDINATOR or
    // COORDINATOR_NOT_AVAILABLE, and librdkafka hands that back rather than retrying.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match consumer.committed_offsets(list.clone(), Duration::from_secs(10)) {
            Ok(_) => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("loadgen: the group coordinator did not answer ({e}); going ahead");
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// What one consumer thread read.
struct Read {
    first_ns: Option<u64>,
    /// When its last record arrived.
    last_ns: u64,
    series: Series,
    timed_out: bool,
}

/// One consumer: reads its partitions until each reaches the end it had at the start, or
/// the shared target is met.
#[allow(clippy::too_many_arguments)]
fn read(
    config: &rdkafka::ClientConfig,
    args: &ConsumeArgs,
    topic: &str,
    partitions: &[(i32, i64)],
    progress: &Progress,
    clock: Clock,
    deadline_ns: u64,
    available: u64,
) -> anyhow::Result<Read> {
    let mut series = Series::new(SERIES_INTERVAL);
    let mut open: Vec<(i32, i64)> = partitions
        .iter()
        .copied()
        .filter(|&(_, end)| end > 0)
        .collect();
    if open.is_empty() {
        return Ok(Read {
            first_ns: None,
            last_ns: 0,
            series,
            timed_out: false,
        });
    }
    let consumer: BaseConsumer = config.create().context("creating a consumer")?;
    let mut assignment = TopicPartitionList::new();
    for &(p, _) in &open {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let target_records = args.records.unwrap_or(available);
    let target_bytes = args.bytes.unwrap_or(u64::MAX);
    let mut first_ns = None;
    let mut last_ns = clock.now_ns();
    let mut timed_out = false;
    while !open.is_empty() {
        if clock.now_ns() >= deadline_ns {
            timed_out = true;
            break;
        }
        if progress.records.load(Ordering::Relaxed) >= target_records
            || progress.bytes.load(Ordering::Relaxed) >= target_bytes
        {
            break;
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let len = message.payload_len() as u64;
                last_ns = clock.now_ns();
                first_ns.get_or_insert(last_ns);
                series.add(last_ns, 1, len);
                progress.records.fetch_add(1, Ordering::Relaxed);
                progress.bytes.fetch_add(len, Ordering::Relaxed);
                let (p, offset) = (message.partition(), message.offset());
                open.retain(|&(q, end)| q != p || offset + 1 < end);
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                let position = consumer
                    .position()
                    .ok()
                    .and_then(|tpl| tpl.find_partition(topic, p)?.offset().to_raw());
                open.retain(|&(q, end)| q != p || position.is_some_and(|o| o < end));
            }
            Some(Err(error)) => {
                let earlier = progress.errors.fetch_add(1, Ordering::Relaxed);
                if earlier < 5 {
                    eprintln!("loadgen: consumer error: {error}");
                }
            }
        }
    }
    Ok(Read {
        first_ns,
        last_ns,
        series,
        timed_out,
    })
}
