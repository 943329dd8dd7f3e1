//! The producing side: `producers` librdkafka clients, each fed by its own thread, either
//! flat out or at a fixed total rate, with publish latency taken in delivery callbacks.
//!
//! Sends never wait for their acknowledgement: each client keeps up to `--buffer-kb` of
//! records in flight (librdkafka's queue), and a ThreadedProducer's poll thread runs the
//! delivery callbacks. Latency runs from the moment a record was due to be sent to its
//! acknowledgement. At a fixed rate "due" is the schedule, so a client that falls behind
//! still reports the wait (no coordinated omission); flat out it is the first send
//! attempt, as kafka-producer-perf-test starts its timer before a send() that may block.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;
use serde_json::{json, Value};

use crate::payload;
use crate::stats::{round3, secs_to_ns, Clock, Latency, Series};
use crate::{ClientArgs, TopicArgs};

#[derive(Args, Debug, Clone)]
pub struct ProduceArgs {
    #[command(flatten)]
    pub client: ClientArgs,
    #[command(flatten)]
    pub topic: TopicArgs,
    /// Payload bytes per record.
    #[arg(long, default_value_t = 1024)]
    pub record_size: usize,
    /// Distinct keys the records cycle through; 0 sends records without keys.
    #[arg(long, default_value_t = 0)]
    pub keys: usize,
    /// acks: 0, 1 or all.
    #[arg(long, default_value = "all")]
    pub acks: String,
    /// compression.type: none, gzip, snappy, lz4 or zstd.
    #[arg(long, default_value = "none")]
    pub compression: String,
    /// What the payloads hold.
    #[arg(long, value_enum, default_value = "random")]
    pub content: payload::Content,
    #[arg(long, default_value_t = 5)]
    pub linger_ms: u64,
    /// batch.size in bytes.
    #[arg(long, default_value_t = 131_072)]
    pub batch_size: u64,
    /// Producer client instances, each with its own connections and sending thread.
    #[arg(long, default_value_t = 1)]
    pub producers: usize,
    /// Records per second over all producers; without it the producers go flat out.
    #[arg(long)]
    pub rate: Option<f64>,
    /// How long to measure, after the warm-up.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Stop after this many measured records instead of after --seconds.
    #[arg(long)]
    pub records: Option<u64>,
    /// Seconds sent before measuring starts; their records count in no figure except the
    /// totals and the throughput series.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Records each client may hold unacknowledged (queue.buffering.max.kbytes). The
    /// default, 32 MiB, is the Java client's buffer.memory, so flat-out latencies compare
    /// with kafka-producer-perf-test's.
    #[arg(long, default_value_t = 32_768)]
    pub buffer_kb: u64,
    /// enable.idempotence (librdkafka's default is off; the Java client's is on).
    #[arg(long)]
    pub idempotence: bool,
    /// max.in.flight.requests.per.connection: the Java client's 5 rather than librdkafka's
    /// million, so requests wait in the client, not in the broker's socket buffers.
    #[arg(long, default_value_t = 5)]
    pub max_in_flight: u32,
}

/// What the producers measured, before it becomes JSON.
pub struct Outcome {
    pub latency: Latency,
    pub series: Series,
    /// Records acknowledged while measuring, and over how many seconds.
    pub window_records: u64,
    pub window_seconds: f64,
    /// Records sent after the warm-up and acknowledged, by the end of the flush.
    pub measured_acked: u64,
    pub acked_total: u64,
    pub errors: u64,
    pub first_error: Option<String>,
}

impl Outcome {
    pub fn records_per_s(&self) -> f64 {
        if self.window_seconds > 0.0 {
            self.window_records as f64 / self.window_seconds
        } else {
            0.0
        }
    }
}

#[derive(Default)]
struct Delivered {
    latency: Latency,
    series: Series,
    acked_total: u64,
    measured_acked: u64,
    errors: u64,
    first_error: Option<String>,
}

/// One client's delivery callback state; only its poll thread writes it.
struct Deliveries {
    clock: Clock,
    measure_from_ns: u64,
    record_size: u64,
    delivered: Mutex<Delivered>,
    client_errors: AtomicU32,
}

impl ClientContext for Deliveries {
    /// Client-level errors (a broker connection lost, say) are printed, the first few only:
    /// librdkafka retries them, and a run's delivery errors say whether they mattered.
    fn error(&self, error: KafkaError, reason: &str) {
        if self.client_errors.fetch_add(1, Ordering::Relaxed) < 5 {
            eprintln!("loadgen: producer client error: {error}: {reason}");
        }
    }
}

impl ProducerContext for Deliveries {
    /// When the record was due, in nanoseconds on the run's clock.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, due_ns: usize) {
        let now = self.clock.now_ns();
        let due_ns = due_ns as u64;
        let mut d = self.delivered.lock().expect("delivery stats lock");
        match result {
            Ok(_) => {
                d.acked_total += 1;
                d.series.add(now, 1, self.record_size);
                if due_ns >= self.measure_from_ns {
                    d.measured_acked += 1;
                    d.latency.record_ns(now.saturating_sub(due_ns));
                }
            }
            Err((error, _)) => {
                d.errors += 1;
                if d.first_error.is_none() {
                    d.first_error = Some(error.to_string());
                }
            }
        }
    }
}

/// When the senders stop, and the fixed plan every sender follows.
struct Plan<'a> {
    args: &'a ProduceArgs,
    clock: Clock,
    run_id: u64,
    keys: Vec<Vec<u8>>,
    measure_from_ns: u64,
    /// Seconds mode: no record is due at or after this.
    stop_at_ns: Option<u64>,
    /// Records mode: measured records per sender.
    records_per_sender: Option<u64>,
    interval_ns: Option<f64>,
}

fn producer_config(args: &ProduceArgs) -> ClientConfig {
    let mut config = args.client.config();
    config
        .set("acks", &args.acks)
        .set("compression.type", &args.compression)
        .set("linger.ms", args.linger_ms.to_string())
        .set("batch.size", args.batch_size.to_string())
        .set("queue.buffering.max.kbytes", args.buffer_kb.to_string())
        .set("queue.buffering.max.messages", "2000000")
        .set("enable.idempotence", args.idempotence.to_string())
        .set(
            "max.in.flight.requests.per.connection",
            args.max_in_flight.to_string(),
        );
    args.client.apply_overrides(&mut config);
    config
}

/// Produces as `args` says into an existing topic, on `clock`, stamping every payload with
/// `run_id`; records due before `measure_from_ns` are the warm-up.
pub fn run(
    args: &ProduceArgs,
    clock: Clock,
    run_id: u64,
    measure_from_ns: u64,
) -> anyhow::Result<Outcome> {
    anyhow::ensure!(args.producers > 0, "--producers must be at least 1");
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let config = producer_config(args);
    let producers = (0..args.producers)
        .map(|_| {
            config
                .create_with_context(Deliveries {
                    clock,
                    measure_from_ns,
                    record_size: args.record_size as u64,
                    delivered: Mutex::new(Delivered::default()),
                    client_errors: AtomicU32::new(0),
                })
                .context("creating a producer")
        })
        .collect::<anyhow::Result<Vec<ThreadedProducer<Deliveries>>>>()?;
    let plan = Plan {
        args,
        clock,
        run_id,
        keys: payload::keys(args.keys),
        measure_from_ns,
        stop_at_ns: match args.records {
            Some(_) => None,
            None => Some(measure_from_ns + secs_to_ns(args.seconds)),
        },
        records_per_sender: args.records.map(|n| n.div_ceil(args.producers as u64)),
        interval_ns: args.rate.map(|r| 1e9 * args.producers as f64 / r),
    };

    let acked = |producers: &[ThreadedProducer<Deliveries>]| -> u64 {
        producers
            .iter()
            .map(|p| p.context().delivered.lock().expect("lock").acked_total)
            .sum()
    };
    let (send_errors, window) = std::thread::scope(|scope| {
        let senders: Vec<_> = producers
            .iter()
            .enumerate()
            .map(|(index, producer)| {
                let plan = &plan;
                scope.spawn(move || send(producer, plan, index))
            })
            .collect();
        clock.sleep_until(measure_from_ns);
        let (from_ns, from_acked) = (clock.now_ns(), acked(&producers));
        let send_errors: Vec<(u64, Option<String>)> = senders
            .into_iter()
            .map(|s| s.join().expect("sender thread panicked"))
            .collect();
        let (to_ns, to_acked) = (clock.now_ns(), acked(&producers));
        (
            send_errors,
            (
                to_acked.saturating_sub(from_acked),
                to_ns.saturating_sub(from_ns),
            ),
        )
    });

    for producer in &producers {
        if let Err(e) = producer.flush(Duration::from_secs(120)) {
            eprintln!("loadgen: flush did not finish: {e}");
        }
    }

    let mut outcome = Outcome {
        latency: Latency::new(),
        series: Series::default(),
        window_records: window.0,
        window_seconds: window.1 as f64 / 1e9,
        measured_acked: 0,
        acked_total: 0,
        errors: 0,
        first_error: None,
    };
    for (errors, first) in send_errors {
        outcome.errors += errors;
        outcome.first_error = outcome.first_error.or(first);
    }
    for producer in &producers {
        let d = producer.context().delivered.lock().expect("lock");
        outcome.latency.merge(&d.latency);
        outcome.series.merge(&d.series);
        outcome.measured_acked += d.measured_acked;
        outcome.acked_total += d.acked_total;
        outcome.errors += d.errors;
        if outcome.first_error.is_none() {
            outcome.first_error.clone_from(&d.first_error);
        }
    }
    Ok(outcome)
}

/// One sender thread: the records `plan` gives it, returning send errors (records the
/// client refused outright) and the first of them.
fn send(
    producer: &ThreadedProducer<Deliveries>,
    plan: &Plan,
    index: usize,
) -> (u64, Option<String>) {
    let args = plan.args;
    let clock = plan.clock;
    let seed = 0x9e37_79b9 + index as u64;
    let mut body = payload::random_bytes(args.record_size, seed);
    let mut words = seed | 1;
    let start_ns = clock.now_ns();
    let (mut sent, mut measured, mut errors, mut first_error) = (0u64, 0u64, 0u64, None);
    loop {
        let now = clock.now_ns();
        let due = match plan.interval_ns {
            Some(interval) => start_ns + (sent as f64 * interval) as u64,
            None => now,
        };
        if plan.stop_at_ns.is_some_and(|stop| due >= stop) {
            break;
        }
        if due >= plan.measure_from_ns {
            if plan.records_per_sender.is_some_and(|n| measured >= n) {
                break;
            }
            measured += 1;
        }
        if due > now {
            clock.sleep_until(due);
        }
        if args.content == payload::Content::Words {
            payload::fill_words(&mut body, &mut words);
        }
        payload::stamp(&mut body, plan.run_id, due);
        let mut record =
            BaseRecord::<[u8], [u8], usize>::with_opaque_to(&args.client.topic, due as usize)
                .payload(&body[..]);
        if !plan.keys.is_empty() {
            record = record.key(&plan.keys[(sent as usize + index) % plan.keys.len()][..]);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    // The in-flight buffer is full: wait for acknowledgements, as the Java
                    // client's send() blocks; give up only once the run is over.
                    if plan.stop_at_ns.is_some_and(|stop| clock.now_ns() >= stop) {
                        break;
                    }
                    record = back;
                    std::thread::sleep(Duration::from_micros(200));
                }
                Err((error, _)) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| error.to_string());
                    break;
                }
            }
        }
        sent += 1;
    }
    (errors, first_error)
}

/// The configuration part of the JSON, so a result says how it was made.
pub fn config_json(args: &ProduceArgs) -> Value {
    json!({
        "bootstrap": args.client.bootstrap,
        "topic": args.client.topic,
        "partitions": args.topic.partitions,
        "replication_factor": args.topic.replication_factor,
        "record_size": args.record_size,
        "keys": args.keys,
        "acks": args.acks,
        "compression": args.compression,
        "content": format!("{:?}", args.content).to_lowercase(),
        "linger_ms": args.linger_ms,
        "batch_size": args.batch_size,
        "producers": args.producers,
        "rate": args.rate,
        "seconds": args.seconds,
        "records": args.records,
        "warmup_s": args.warmup,
        "buffer_kb": args.buffer_kb,
        "idempotence": args.idempotence,
        "max_in_flight": args.max_in_flight,
    })
}

/// The produce subcommand's result.
pub fn report(args: &ProduceArgs, outcome: &Outcome) -> Value {
    let records_per_s = outcome.records_per_s();
    json!({
        "mode": "produce",
        "config": config_json(args),
        "records": outcome.window_records,
        "seconds": round3(outcome.window_seconds),
        "records_per_s": records_per_s.round() as u64,
        "mb_per_s": round3(records_per_s * args.record_size as f64 / 1e6),
        "records_total": outcome.acked_total,
        "bytes_total": outcome.acked_total * args.record_size as u64,
        "publish_latency_ms": outcome.latency.summary(),
        "publish_percentiles_ms": outcome.latency.curve(),
        "series": outcome.series.to_json(),
        "errors": outcome.errors,
        "first_error": outcome.first_error,
    })
}

pub fn human(args: &ProduceArgs, outcome: &Outcome) -> String {
    let records_per_s = outcome.records_per_s();
    format!(
        "{:.0} records/s, {:.1} MB/s; publish latency {}; {} errors",
        records_per_s,
        records_per_s * args.record_size as f64 / 1e6,
        outcome.latency.human(),
        outcome.errors
    )
}
