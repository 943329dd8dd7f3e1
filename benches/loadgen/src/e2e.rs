//! End-to-end latency: producers at a fixed rate and, in the same process, a consumer on
//! every partition that reads each record's send time from its payload. One clock serves
//! both, so produce-to-consume latency needs no clock synchronisation.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use serde_json::Value;

use crate::payload;
use crate::produce::{self, ProduceArgs};
use crate::stats::{secs_to_ns, Clock, Latency, Series};
use crate::topic;

#[derive(Args, Debug, Clone)]
pub struct E2eArgs {
    #[command(flatten)]
    pub produce: ProduceArgs,
    /// After the last send, how long the consumer may take to see every acknowledged record.
    #[arg(long, default_value_t = 30.0)]
    pub drain_timeout: f64,
}

/// What the consumer saw of this run's measured records.
struct Seen {
    latency: Latency,
    series: Series,
    errors: u64,
}

pub fn run(args: &E2eArgs, run_id: u64) -> anyhow::Result<(Value, String)> {
    let p = &args.produce;
    anyhow::ensure!(
        p.rate.is_some(),
        "e2e needs --rate: end-to-end latency flat out measures only queueing"
    );
    anyhow::ensure!(
        p.record_size >= payload::HEADER_LEN,
        "e2e needs --record-size of at least {} bytes for the timestamp",
        payload::HEADER_LEN
    );
    let create_s = p.topic.ensure(&p.client)?;
    let partitions = topic::partitions(&p.client.config(), &p.client.topic)?;
    let mut config = p.client.consumer_config(run_id, 10_485_760);
    p.client.apply_overrides(&mut config);

    let clock = Clock::start();
    let expected = AtomicU64::new(u64::MAX);
    let ready = AtomicBool::new(false);
    let measure_from = AtomicU64::new(u64::MAX);
    let (outcome, seen) = std::thread::scope(|scope| -> anyhow::Result<_> {
        // The consumer starts first and is positioned at the end before any send.
        let consumer = scope.spawn(|| {
            consume(
                &config,
                &p.client.topic,
                &partitions,
                clock,
                run_id,
                (&measure_from, &expected, &ready),
                secs_to_ns(args.drain_timeout),
            )
        });
        while !ready.load(Ordering::Acquire) && !consumer.is_finished() {
            std::thread::sleep(Duration::from_millis(10));
        }
        let from = clock.now_ns() + secs_to_ns(p.warmup);
        measure_from.store(from, Ordering::Release);
        let outcome = produce::run(p, clock, run_id, from);
        // Whatever happened, the consumer must learn that sending is over.
        let acked = outcome.as_ref().map_or(0, |o| o.measured_acked);
        expected.store(acked, Ordering::Release);
        let seen = consumer.join().expect("consumer thread panicked");
        Ok((outcome?, seen?))
    })?;

    let mut report = produce::report(p, &outcome);
    report["mode"] = "e2e".into();
    report["topic_create_s"] = crate::stats::round3(create_s).into();
    report["e2e_latency_ms"] = seen.latency.summary();
    report["e2e_percentiles_ms"] = seen.latency.curve();
    report["e2e_missing"] = outcome
        .measured_acked
        .saturating_sub(seen.latency.count())
        .into();
    report["consume_series"] = seen.series.to_json();
    report["consumer_errors"] = seen.errors.into();
    let human = format!(
        "{}; end-to-end {}",
        produce::human(p, &outcome),
        seen.latency.human()
    );
    Ok((report, human))
}

/// Reads every partition from its end until it has seen `expected` measured records (or
/// the drain timeout passes once `expected` is known). `signals` are the time measuring
/// starts, the expected count and the ready flag this sets once it is positioned.
fn consume(
    config: &ClientConfig,
    topic: &str,
    partitions: &[i32],
    clock: Clock,
    run_id: u64,
    signals: (&AtomicU64, &AtomicU64, &AtomicBool),
    drain_timeout_ns: u64,
) -> anyhow::Result<Seen> {
    let (measure_from, expected, ready) = signals;
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    for &p in partitions {
        assignment.add_partition_offset(topic, p, Offset::End)?;
    }
    consumer.assign(&assignment)?;
    crate::consume::ready_coordinator(&consumer, topic, partitions);
    // Resolving "end" takes a ListOffsets round trip per leader; give it a moment so the
    // warm-up records, not the measured ones, are what a slow start misses.
    let settle_until = clock.now_ns() + 1_000_000_000;
    while clock.now_ns() < settle_until {
        consumer.poll(Duration::from_millis(50));
    }
    ready.store(true, Ordering::Release);

    let mut seen = Seen {
        latency: Latency::new(),
        series: Series::default(),
        errors: 0,
    };
    let mut drain_deadline = None;
    loop {
        let want = expected.load(Ordering::Acquire);
        if want != u64::MAX {
            if seen.latency.count() >= want {
                break;
            }
            let deadline = *drain_deadline.get_or_insert(clock.now_ns() + drain_timeout_ns);
            if clock.now_ns() >= deadline {
                break;
            }
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(message)) => {
                let now = clock.now_ns();
                let Some(sent) = message
                    .payload()
                    .and_then(|body| payload::sent_ns(body, run_id))
                else {
                    continue;
                };
                seen.series.add(now, 1, message.payload_len() as u64);
                if sent >= measure_from.load(Ordering::Acquire) {
                    seen.latency.record_ns(now.saturating_sub(sent));
                }
            }
            Some(Err(error)) => {
                seen.errors += 1;
                if seen.errors <= 5 {
                    eprintln!("loadgen: consumer error: {error}");
                }
            }
        }
    }
    Ok(seen)
}
