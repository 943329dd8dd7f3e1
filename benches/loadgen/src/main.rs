//! `loadgen`: one load generator for Strand and Apache Kafka alike, through librdkafka
//! (the rdkafka crate), so both systems are measured by the same client with the same
//! settings. `benches/compare.py` runs it against each system; it also works on its own:
//!
//! ```text
//! loadgen produce --bootstrap 127.0.0.1:9092 --topic t --partitions 16 --acks all --seconds 10
//! loadgen e2e --bootstrap 127.0.0.1:9092 --topic t --rate 10000 --seconds 30
//! loadgen consume --bootstrap 127.0.0.1:9092 --topic t --bytes 1000000000
//! loadgen validate --compression lz4 --content words
//! ```
//!
//! Each run prints one JSON object on stdout (the figures, the settings, per-second
//! series for charts) and one human line on stderr.

mod consume;
mod e2e;
mod payload;
mod produce;
mod stats;
mod topic;
mod validate;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

#[derive(Parser, Debug)]
#[command(
    name = "loadgen",
    about = "Load generator for Kafka-compatible brokers: produce, consume, end-to-end latency"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a topic (an existing one is fine) and wait until every partition has a leader.
    CreateTopic {
        #[command(flatten)]
        client: ClientArgs,
        #[command(flatten)]
        topic: TopicArgs,
    },
    /// Produce flat out or at --rate: records/s, MB/s, publish latency.
    Produce(produce::ProduceArgs),
    /// Read a topic from the beginning: catch-up records/s and MB/s.
    Consume(consume::ConsumeArgs),
    /// Produce at --rate while a consumer reads: publish and end-to-end latency.
    E2e(e2e::E2eArgs),
    /// No broker: how fast Strand's Produce validation reads `produce`'s batches, on one
    /// thread.
    Validate(validate::ValidateArgs),
}

/// Where to connect and what every client gets.
#[derive(Args, Debug, Clone)]
pub struct ClientArgs {
    /// bootstrap.servers.
    #[arg(long, default_value = "127.0.0.1:9092")]
    pub bootstrap: String,
    #[arg(long, default_value = "loadgen")]
    pub topic: String,
    /// A librdkafka property for every client, `key=value`; repeatable, and it wins over
    /// the settings the flags make.
    #[arg(short = 'X', long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
}

impl ClientArgs {
    pub fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        // TCP_NODELAY, as the Java client always sets it: with Nagle's algorithm (librdkafka's
        // default) a small request can wait for the previous one's delayed ACK.
        config
            .set("bootstrap.servers", &self.bootstrap)
            .set("socket.nagle.disable", "true");
        self.apply_overrides(&mut config);
        config
    }

    /// Applies the `-X` properties; called last so they override anything set before.
    pub fn apply_overrides(&self, config: &mut ClientConfig) {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
    }

    /// A consumer that is assigned partitions and commits nothing. librdkafka needs a
    /// group.id even so, and looks up its coordinator: see `consume::ready_coordinator`.
    pub fn consumer_config(&self, run_id: u64, max_partition_fetch_bytes: u64) -> ClientConfig {
        let mut config = self.config();
        config
            .set("group.id", format!("loadgen-{run_id:x}"))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "max.partition.fetch.bytes",
                max_partition_fetch_bytes.to_string(),
            )
            // librdkafka stops fetching a partition while its local queue holds 100,000
            // records (queued.min.messages) and then waits fetch.queue.backoff.ms (1 s)
            // before asking again: with 100-byte records one fetch of 10 MiB fills it, and
            // a catch-up read measured that wait, not the broker (40 MB/s against either
            // system). The byte limit (queued.max.messages.kbytes, 64 MiB) still bounds it.
            .set("queued.min.messages", "10000000");
        config
    }
}

/// The topic a producing run creates if it does not exist.
#[derive(Args, Debug, Clone)]
pub struct TopicArgs {
    #[arg(long, default_value_t = 16)]
    pub partitions: i32,
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Seconds to wait for the topic and its partition leaders.
    #[arg(long, default_value_t = 300.0)]
    pub create_timeout: f64,
    /// A topic config for a topic this run creates, `key=value` (retention.ms=60000,
    /// cleanup.policy=compact); repeatable.
    #[arg(long = "topic-config", value_parser = parse_property)]
    pub configs: Vec<(String, String)>,
}

impl TopicArgs {
    /// Creates the topic if needed; returns the seconds until every partition had a leader.
    pub fn ensure(&self, client: &ClientArgs) -> anyhow::Result<f64> {
        topic::ensure(
            &client.config(),
            &client.topic,
            self.partitions,
            self.replication_factor,
            &self.configs,
            Duration::from_secs_f64(self.create_timeout),
        )
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    let (key, value) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    Ok((key.trim().to_string(), value.to_string()))
}

/// Tells this run's records from any other run's in the same topic.
fn new_run_id() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    nanos ^ (u64::from(std::process::id()) << 40)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let run_id = new_run_id();
    let (mut result, human): (Value, String) = match &cli.command {
        Command::CreateTopic { client, topic } => {
            let seconds = topic.ensure(client)?;
            let human = format!(
                "topic {} ready ({} partitions, RF {}) in {seconds:.1} s",
                client.topic, topic.partitions, topic.replication_factor
            );
            let result = json!({
                "mode": "create-topic",
                "topic": client.topic,
                "partitions": topic.partitions,
                "replication_factor": topic.replication_factor,
                "seconds": stats::round3(seconds),
            });
            (result, human)
        }
        Command::Produce(args) => {
            let create_s = args.topic.ensure(&args.client)?;
            let clock = stats::Clock::start();
            let measure_from = stats::secs_to_ns(args.warmup);
            let outcome = produce::run(args, clock, run_id, measure_from).context("producing")?;
            let mut result = produce::report(args, &outcome);
            result["topic_create_s"] = stats::round3(create_s).into();
            (result, produce::human(args, &outcome))
        }
        Command::Consume(args) => {
            let result = consume::run(args, run_id).context("consuming")?;
            let human = format!(
                "consumed {} records ({:.1} MB) in {} s: {} records/s, {} MB/s",
                result["records"],
                result["bytes"].as_f64().unwrap_or(0.0) / 1e6,
                result["seconds"],
                result["records_per_s"],
                result["mb_per_s"]
            );
            (result, human)
        }
        Command::E2e(args) => e2e::run(args, run_id).context("end-to-end run")?,
        Command::Validate(args) => validate::run(args)?,
    };
    result["client_cpu_s"] = stats::own_cpu_seconds().into();
    println!("{result}");
    eprintln!(
        "loadgen {}: {human}",
        result["mode"].as_str().unwrap_or("?")
    );
    Ok(())
}
