//! One test run: a fresh cluster, Jepsen's queue workload through librdkafka (the rdkafka
//! crate) from several workers, a nemesis killing, pausing and partitioning nodes, then
//! healing and final reads of every partition; the history goes to `history.jsonl`.
//!
//! Workers send unique, increasing values per key (a key is a partition of one topic) with
//! an idempotent acks=all producer, and poll: most with a consumer assigned to every
//! partition from the start, so each reads each partition in order; some as members of one
//! consumer group, committing what they read. A send that fails is recorded as `info` (it
//! may still have happened); the checker decides what it means.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

use crate::admin::Admin;
use crate::cluster::{Cluster, Net};

const TOPIC: &str = "jepsen";

/// The faults the nemesis may inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9, then restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// Nodes drop packets from other nodes (or from the clients), then the network heals.
    Partition,
    /// kill -9, the node's data loses every write it had not fsynced, then restart (see
    /// [`crate::lazyfs`]).
    LoseUnsynced,
    /// A new node joins and a replica of a random partition moves to it; then the move is
    /// undone (cancelled, or moved back) and the node unregistered and stopped.
    Membership,
}

/// Which nodes a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// One node at random (a partition isolates it from the other nodes).
    One,
    /// The leader of a random partition (a partition isolates it from the other nodes).
    Leader,
    /// A majority of the nodes: killed or paused, the cluster stops until they come back;
    /// for a partition, a random majority and the minority are split apart.
    Majority,
    /// Partitions only: every node hears a majority, but no two nodes the same one (see
    /// `ring`).
    Ring,
    /// Partitions only: the leader of a random partition stops hearing from the clients,
    /// while it still hears the other nodes.
    Clients,
    /// Every node at once (not for partitions): after a crash of all, only what each node
    /// fsynced remains anywhere.
    All,
}

impl Target {
    fn applies_to(self, fault: Fault) -> bool {
        match self {
            Target::Ring | Target::Clients => fault == Fault::Partition,
            Target::All => !matches!(fault, Fault::Partition | Fault::Membership),
            Target::Majority => fault != Fault::Membership,
            Target::One | Target::Leader => true,
        }
    }
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::Kill => "kill",
            Fault::Pause => "pause",
            Fault::Partition => "partition",
            Fault::LoseUnsynced => "lose-unsynced",
            Fault::Membership => "membership",
        }
    }
}

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub strand: PathBuf,
    /// More arguments for every node.
    pub strand_args: Vec<String>,
    pub dir: PathBuf,
    pub nodes: usize,
    pub net: Net,
    pub duration: Duration,
    pub workers: usize,
    /// How many of the workers consume with `subscribe` (one consumer group, committed
    /// offsets) instead of `assign`.
    pub subscribers: usize,
    /// Operations per second, over all workers.
    pub rate: f64,
    pub keys: i32,
    pub seed: u64,
    pub faults: Vec<Fault>,
    pub targets: Vec<Target>,
    /// How long each fault lasts, and the quiet time between faults.
    pub fault_length: Duration,
    pub fault_gap: Duration,
}

impl RunOptions {
    /// The fault and target pairs the nemesis chooses from.
    fn fault_choices(&self) -> Vec<(Fault, Target)> {
        self.faults
            .iter()
            .flat_map(|&f| self.targets.iter().map(move |&t| (f, t)))
            .filter(|(f, t)| t.applies_to(*f))
            .collect()
    }

    /// Whether any target applies to any fault.
    pub fn can_fault(&self) -> bool {
        !self.fault_choices().is_empty()
    }
}

/// Appends operations to the history, numbering and timing them.
pub struct History {
    out: Mutex<(BufWriter<File>, u64)>,
    start: Instant,
    /// The consumers' own account, beside the history and on its clock.
    clients: ClientLog,
}

impl History {
    fn create(path: &std::path::Path) -> anyhow::Result<History> {
        let out = create_file(path)?;
        let start = Instant::now();
        Ok(History {
            out: Mutex::new((out, 0)),
            start,
            clients: ClientLog::create(&path.with_file_name("clients.log"), start)?,
        })
    }

    fn log(&self, process: Value, kind: &str, f: &str, value: Value, error: Option<String>) {
        let mut out = self.out.lock().expect("history lock");
        let mut op = json!({
            "index": out.1, "time": self.start.elapsed().as_nanos() as u64,
            "process": process, "type": kind, "f": f, "value": value,
        });
        if let Some(error) = error {
            op["error"] = json!(error);
        }
        out.1 += 1;
        let line = op.to_string();
        let _ = writeln!(out.0, "{line}");
    }

    fn finish(&self) -> anyhow::Result<()> {
        self.clients.flush()?;
        Ok(self.out.lock().expect("history lock").0.flush()?)
    }
}

/// How `clients.log` opens: this, then the Unix time of the history's time 0.
pub const RUN_STARTED: &str = "started at unix time";

/// What the consumers saw besides records (`clients.log`): the errors their polls return
/// and librdkafka's warnings, such as an offset reset, each line with the history's time
/// (ns) and the process, so that an anomaly in the history can be traced to its cause.
#[derive(Clone)]
pub struct ClientLog {
    out: Arc<Mutex<BufWriter<File>>>,
    start: Instant,
}

impl ClientLog {
    fn create(path: &std::path::Path, start: Instant) -> anyhow::Result<ClientLog> {
        let log = ClientLog {
            out: Arc::new(Mutex::new(create_file(path)?)),
            start,
        };
        // The wall clock at the history's time 0, to line the nodes' logs up with it.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(start.elapsed());
        log.note(
            &json!("run"),
            &format!("{RUN_STARTED} {:.6}", unix.as_secs_f64()),
        );
        Ok(log)
    }

    fn note(&self, process: &Value, what: &str) {
        let time = self.start.elapsed().as_nanos();
        let mut out = self.out.lock().expect("client log lock");
        let _ = writeln!(out, "{time} {process} {what}");
    }

    fn flush(&self) -> anyhow::Result<()> {
        Ok(self.out.lock().expect("client log lock").flush()?)
    }
}

fn create_file(path: &std::path::Path) -> anyhow::Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::new(file))
}

fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("log_level", "3");
    config
}

fn producer(bootstrap: &str) -> anyhow::Result<FutureProducer> {
    Ok(client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "1")
        .create()?)
}

/// A consumer's context: counts its rebalances, so that a poll operation can end at one,
/// and writes to the client log each rebalance, what librdkafka warns of (an offset reset
/// is a warning) and every seek (validating its position after a leader change, librdkafka
/// moves it without a warning when the new leader's log ends before it).
pub struct ConsumerEvents {
    rebalances: AtomicU64,
    process: Value,
    log: ClientLog,
}

impl ConsumerEvents {
    fn new(process: Value, log: &ClientLog) -> ConsumerEvents {
        ConsumerEvents {
            rebalances: AtomicU64::new(0),
            process,
            log: log.clone(),
        }
    }
}

impl ClientContext for ConsumerEvents {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if (level as i32) <= RDKafkaLogLevel::Warning as i32 || log_message.starts_with("Seek ") {
            self.log
                .note(&self.process, &format!("{level:?} {fac} {log_message}"));
        }
    }
}

impl ConsumerContext for ConsumerEvents {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        self.rebalances.fetch_add(1, Ordering::Relaxed);
        // Which partitions, so that a member's re-read or skip can be traced to one.
        let partitions = |list: &TopicPartitionList| -> Vec<i32> {
            list.elements().iter().map(|e| e.partition()).collect()
        };
        let what = match rebalance {
            Rebalance::Assign(list) => format!("rebalance: assigned {:?}", partitions(list)),
            Rebalance::Revoke(list) => format!("rebalance: revoked {:?}", partitions(list)),
            Rebalance::Error(e) => format!("rebalance: error {e}"),
        };
        self.log.note(&self.process, &what);
    }
}

type Reader = BaseConsumer<ConsumerEvents>;

/// A message read but not yet recorded: partition, offset, value.
type Carried = Option<(i32, i64, i64)>;

/// What every consumer shares: manual commits, no end-of-partition events, and topic debug
/// logging, from which [`ConsumerEvents`] keeps the seeks.
fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = client_config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("debug", "topic")
        .set_log_level(RDKafkaLogLevel::Debug);
    config
}

/// A consumer assigned to every key from the start, for `process`.
fn consumer(
    bootstrap: &str,
    keys: i32,
    process: Value,
    history: &History,
) -> anyhow::Result<Reader> {
    let consumer: Reader = consumer_config(bootstrap, "jepsen")
        .create_with_context(ConsumerEvents::new(process, &history.clients))?;
    let mut assignment = TopicPartitionList::new();
    for key in 0..keys {
        assignment.add_partition_offset(TOPIC, key, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    Ok(consumer)
}

/// A member of the consumer group `jepsen-subscribe`, reading from the committed offsets
/// (from the start when there are none) of whatever the group assigns it.
fn subscriber(bootstrap: &str, process: Value, history: &History) -> anyhow::Result<Reader> {
    let consumer: Reader = consumer_config(bootstrap, "jepsen-subscribe")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create_with_context(ConsumerEvents::new(process, &history.clients))?;
    consumer.subscribe(&[TOPIC])?;
    Ok(consumer)
}

/// Leaves the group and lets go of a member without closing it: librdkafka can block for
/// ever closing a member while a rebalance is under way (librdkafka issue 4884), which
/// hung a run. The member's threads end with the process.
fn abandon(member: Reader) {
    member.unsubscribe();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && member.assignment().is_ok_and(|a| a.count() > 0) {
        let _ = member.poll(Duration::from_millis(100));
    }
    std::mem::forget(member);
}

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

/// One worker's loop: sends and polls at its share of the rate until `stop`.
fn worker(
    id: u64,
    options: &RunOptions,
    bootstrap: &str,
    history: &History,
    next_value: &[AtomicI64],
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
            let record = FutureRecord::<(), _>::to(TOPIC)
                .partition(key)
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

/// The node index leading partition `key`, as the cluster reports it.
fn leader_of(client: &BaseConsumer, key: i32) -> Option<usize> {
    let (leader, _) = replicas_of(client, key)?;
    usize::try_from(leader).ok()?.checked_sub(1)
}

/// The leader and the replicas of partition `key`, from fresh metadata.
fn replicas_of(client: &BaseConsumer, key: i32) -> Option<(i32, Vec<i32>)> {
    let metadata = client
        .fetch_metadata(Some(TOPIC), Duration::from_secs(5))
        .ok()?;
    let partition = metadata
        .topics()
        .first()?
        .partitions()
        .iter()
        .find(|p| p.id() == key)?;
    Some((partition.leader(), partition.replicas().to_vec()))
}

/// Retries `attempt` until it succeeds or `limit` has passed (then its last error).
fn retry<T>(limit: Duration, mut attempt: impl FnMut() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        match attempt() {
            Ok(answer) => return Ok(answer),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// One membership fault (see [`Fault::Membership`]). The replica that moves is the
/// leader's for `Target::Leader`, a random one's otherwise. The fault lasts until the
/// partition is back on its replicas, whichever way the move was undone.
fn membership(
    options: &RunOptions,
    admin: &Admin,
    metadata_client: &BaseConsumer,
    cluster: &Mutex<Cluster>,
    log: &mut FaultLog,
    rng: &mut StdRng,
    target: Target,
) -> anyhow::Result<()> {
    let key = rng.gen_range(0..options.keys);
    let (leader, replicas) = retry(Duration::from_secs(30), || {
        replicas_of(metadata_client, key).context("no metadata for the partition")
    })?;
    let victim = match target {
        Target::Leader if replicas.contains(&leader) => leader,
        _ => *replicas
            .choose(rng)
            .context("a partition without replicas")?,
    };
    log.start(
        "membership",
        json!({"targets": [victim], "why": format!("{target:?}").to_lowercase(),
               "partition": key, "from": replicas}),
    );
    let joined = cluster.lock().expect("cluster lock").add_spare()? as i32;
    let moved: Vec<i32> = replicas
        .iter()
        .map(|&r| if r == victim { joined } else { r })
        .collect();
    // The new node is a broker moves may use once the controller has registered it.
    retry(Duration::from_secs(30), || {
        admin.reassign(TOPIC, key, Some(&moved))
    })
    .with_context(|| format!("moving partition {key} to {moved:?}"))?;
    // Undo it: while it is still under way (cancel it, or move the replica back at once,
    // which retargets it), or once the fault's length has passed (move back).
    let mut undone = *["cancel", "retarget", "move-back"]
        .choose(rng)
        .expect("not empty");
    let undo_at = match undone {
        "move-back" => options.fault_length,
        _ => Duration::from_millis(rng.gen_range(0..300)),
    };
    std::thread::sleep(undo_at);
    let moving = || retry(Duration::from_secs(30), || admin.moving(TOPIC, key));
    if undone == "cancel" && !(moving()? && admin.reassign(TOPIC, key, None).is_ok()) {
        undone = "move-back (the move had ended)";
    }
    if undone != "cancel" {
        retry(Duration::from_secs(30), || {
            admin.reassign(TOPIC, key, Some(&replicas))
        })
        .with_context(|| format!("moving partition {key} back to {replicas:?}"))?;
    }
    let original: BTreeSet<i32> = replicas.iter().copied().collect();
    retry(Duration::from_secs(60), || {
        let (_, now) = replicas_of(metadata_client, key).context("no metadata")?;
        let settled =
            !admin.moving(TOPIC, key)? && now.iter().copied().collect::<BTreeSet<_>>() == original;
        settled
            .then_some(())
            .context("the partition is not back on its replicas")
    })
    .with_context(|| format!("partition {key} after the move was undone ({undone})"))?;
    retry(Duration::from_secs(30), || admin.unregister(joined))
        .with_context(|| format!("unregistering node {joined}"))?;
    cluster
        .lock()
        .expect("cluster lock")
        .remove_spare(joined as u64)?;
    log.stop(json!({"targets": [victim], "joined": joined, "to": moved, "undone": undone}));
    Ok(())
}

/// Who drops packets from whom during a partition: node id to the sources it no longer
/// hears (node ids, or `None` for the clients).
type Grudge = BTreeMap<u64, BTreeSet<Option<u64>>>;

/// A grudge that splits the nodes (0-based indices) into `side` and the rest.
fn split(side: &[usize], nodes: usize) -> Grudge {
    let id = |i: usize| i as u64 + 1;
    (0..nodes)
        .map(|i| {
            let inside = side.contains(&i);
            let unheard = (0..nodes)
                .filter(|j| side.contains(j) != inside)
                .map(|j| Some(id(j)))
                .collect();
            (id(i), unheard)
        })
        .collect()
}

/// Every node hears a majority, but no two nodes the same one: on a random ring, each
/// node hears its neighbours within ⌈(n/2)/2⌉ places either side (five nodes: one
/// each side). Three nodes are too few for that (everyone neighbours everyone), so there
/// each hears only the next node: one-way drops, which break every TCP connection.
fn ring(order: &[usize]) -> Grudge {
    let n = order.len();
    let reach = (n / 2).div_ceil(2);
    let id = |position: usize| Some(order[position % n] as u64 + 1);
    (0..n)
        .map(|k| {
            let unheard = if 2 * reach + 1 < n {
                (reach + 1..n - reach).map(|step| id(k + step)).collect()
            } else {
                (2..n).map(|step| id(k + step)).collect()
            };
            (order[k] as u64 + 1, unheard)
        })
        .collect()
}

/// The nemesis's records in the history: `start-X` and `stop-X`, and the fault now open, so
/// that one cut short by an error can still be closed.
struct FaultLog<'a> {
    history: &'a History,
    started: usize,
    open: Option<String>,
}

impl FaultLog<'_> {
    fn start(&mut self, name: &str, detail: Value) {
        let f = format!("start-{name}");
        self.history.log(json!("nemesis"), "info", &f, detail, None);
        self.started += 1;
        self.open = Some(name.to_string());
    }

    /// Closes the open fault, if any.
    fn stop(&mut self, detail: Value) {
        if let Some(name) = self.open.take() {
            let f = format!("stop-{name}");
            self.history.log(json!("nemesis"), "info", &f, detail, None);
        }
    }
}

/// Injects one fault after another, choosing uniformly among the fault and target pairs
/// the options allow, until `stop`; each fault heals before the next starts. Returns how
/// many it started. A fault that fails (a node that will not restart, a move that never
/// settles) is recorded in the history as an `error`; everything is then healed and no
/// more faults are injected, so that the run still ends with its final reads and a
/// checked history.
fn nemesis(
    options: &RunOptions,
    bootstrap: &str,
    cluster: &Mutex<Cluster>,
    history: &History,
    stop: &AtomicBool,
) -> anyhow::Result<usize> {
    let mut rng = StdRng::seed_from_u64(options.seed);
    let metadata_client: BaseConsumer = client_config(bootstrap).create()?;
    let admin = Admin::new(bootstrap.split(',').map(String::from).collect());
    let choices = options.fault_choices();
    let mut log = FaultLog {
        history,
        started: 0,
        open: None,
    };
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(options.fault_gap);
        if choices.is_empty() || stop.load(Ordering::Relaxed) {
            continue;
        }
        let (fault, target) = *choices.choose(&mut rng).expect("not empty");
        let injected = if fault == Fault::Membership {
            let client = &metadata_client;
            membership(options, &admin, client, cluster, &mut log, &mut rng, target)
        } else {
            node_fault(
                options,
                &metadata_client,
                cluster,
                &mut log,
                &mut rng,
                fault,
                target,
            )
        };
        if let Err(e) = injected {
            let error = format!("{} failed: {e:#}", fault.name());
            eprintln!("jepsen: {error}; healing everything, no more faults");
            history.log(
                json!("nemesis"),
                "info",
                "error",
                json!({"error": error}),
                None,
            );
            let healed = match cluster.lock().expect("cluster lock").heal_all() {
                Ok(()) => "everything".to_string(),
                Err(e) => format!("not everything: {e:#}"),
            };
            log.stop(json!({"error": error, "healed": healed}));
            break;
        }
    }
    Ok(log.started)
}

/// One kill, pause, partition or lost-unsynced crash: injected, held for the fault's
/// length, then healed.
fn node_fault(
    options: &RunOptions,
    metadata_client: &BaseConsumer,
    cluster: &Mutex<Cluster>,
    log: &mut FaultLog,
    rng: &mut StdRng,
    fault: Fault,
    target: Target,
) -> anyhow::Result<()> {
    let mut grudge = Grudge::new();
    let chosen: Vec<usize> = match target {
        Target::One => vec![rng.gen_range(0..options.nodes)],
        Target::Leader | Target::Clients => {
            let key = rng.gen_range(0..options.keys);
            let random = rng.gen_range(0..options.nodes);
            let leader = leader_of(metadata_client, key).filter(|i| *i < options.nodes);
            vec![leader.unwrap_or(random)]
        }
        Target::All => (0..options.nodes).collect(),
        Target::Majority | Target::Ring => {
            let mut all: Vec<usize> = (0..options.nodes).collect();
            all.shuffle(rng);
            if target == Target::Ring {
                grudge = ring(&all);
            } else {
                all.truncate(options.nodes / 2 + 1);
            }
            all
        }
    };
    if fault == Fault::Partition && target != Target::Ring {
        grudge = match target {
            Target::Clients => BTreeMap::from([(chosen[0] as u64 + 1, [None].into())]),
            _ => split(&chosen, options.nodes),
        };
    }
    let nodes: Vec<u64> = chosen.iter().map(|i| *i as u64 + 1).collect();
    let name = fault.name();
    let mut detail = json!({"targets": nodes, "why": format!("{target:?}").to_lowercase()});
    if fault == Fault::Partition {
        let drops: BTreeMap<String, Vec<String>> = grudge
            .iter()
            .map(|(node, from)| {
                let from = from
                    .iter()
                    .map(|s| s.map_or("clients".to_string(), |n| n.to_string()))
                    .collect();
                (node.to_string(), from)
            })
            .collect();
        detail["drops"] = json!(drops);
    }
    log.start(name, detail);
    let mut lost_pages = 0;
    {
        let mut c = cluster.lock().expect("cluster lock");
        match fault {
            Fault::Kill => chosen.iter().try_for_each(|&i| c.kill(i))?,
            Fault::LoseUnsynced => {
                for &i in &chosen {
                    lost_pages += c.crash_losing_unsynced(i)?.pages;
                }
            }
            Fault::Pause => chosen.iter().try_for_each(|&i| c.pause(i))?,
            Fault::Membership => unreachable!("handled by membership()"),
            Fault::Partition => {
                let network = c.network().context("partitions need --net ns")?;
                for (node, sources) in &grudge {
                    network.drop_from(*node, sources)?;
                }
            }
        }
    }
    std::thread::sleep(options.fault_length);
    {
        let mut c = cluster.lock().expect("cluster lock");
        match fault {
            Fault::Kill | Fault::LoseUnsynced => chosen.iter().try_for_each(|&i| c.restart(i))?,
            Fault::Membership => unreachable!("handled by membership()"),
            Fault::Pause => chosen.iter().try_for_each(|&i| c.resume(i))?,
            Fault::Partition => c.network().context("partitions need --net ns")?.heal()?,
        }
    }
    log.stop(if fault == Fault::LoseUnsynced {
        json!({"targets": nodes, "lost-unsynced-pages": lost_pages})
    } else {
        json!({"targets": nodes})
    });
    Ok(())
}

/// Reads every partition from the start up to the end it had once everything healed, as a
/// fresh process, so that every acknowledged value has had its chance to be seen.
fn final_reads(options: &RunOptions, bootstrap: &str, history: &History) -> anyhow::Result<()> {
    let process = json!(1_000_000u64);
    let consumer = consumer(bootstrap, options.keys, process.clone(), history)?;
    let mut carried: Carried = None;
    let mut ends = BTreeMap::new();
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
            Ok((_, high)) => {
                ends.insert(key, high);
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
                for entry in value[0][1].as_array().into_iter().flatten() {
                    let key = entry[0].as_i64().unwrap_or(-1) as i32;
                    if let Some(last) = entry[1].as_array().and_then(|r| r.last()) {
                        reached.insert(key, last[0].as_i64().unwrap_or(0) + 1);
                    }
                }
                history.log(process.clone(), "ok", "poll", value, None);
            }
            Err(e) => history.log(process.clone(), "info", "poll", json!([["poll"]]), Some(e)),
        }
    }
    Ok(())
}

/// Runs one test; returns the history's path and the number of faults injected.
pub fn run(options: &RunOptions) -> anyhow::Result<(PathBuf, usize)> {
    std::fs::create_dir_all(&options.dir)?;
    let cluster = Cluster::start(
        &options.strand,
        &options.strand_args,
        &options.dir,
        options.nodes,
        options.net,
        options.faults.contains(&Fault::LoseUnsynced),
        options.faults.contains(&Fault::Membership),
    )?;
    let bootstrap = cluster.bootstrap();
    let admin: AdminClient<_> = client_config(&bootstrap).create()?;
    let topic = NewTopic::new(
        TOPIC,
        options.keys,
        TopicReplication::Fixed(3.min(options.nodes as i32)),
    );
    // Nodes accept connections before they serve (they wait for the controller quorum).
    let wait = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
    retry(Duration::from_secs(60), || {
        let created = futures::executor::block_on(admin.create_topics([&topic], &wait))
            .map_err(|e| e.to_string())
            .and_then(|mut results| results.remove(0).map_err(|(t, e)| format!("{t}: {e}")));
        match created {
            Ok(_) => Ok(()),
            // An earlier attempt that timed out may have created it.
            Err(e) if e.contains("TopicAlreadyExists") => Ok(()),
            Err(e) => Err(anyhow::anyhow!(e)),
        }
    })
    .context("cannot create the topic")?;
    let history_path = options.dir.join("history.jsonl");
    let history = History::create(&history_path)?;
    let next_value: Vec<AtomicI64> = (0..options.keys).map(|_| AtomicI64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let cluster = Arc::new(Mutex::new(cluster));
    let faults = std::thread::scope(|s| -> anyhow::Result<usize> {
        let workers: Vec<_> = (0..options.workers as u64)
            .map(|id| {
                let (history, next_value, stop, bootstrap) =
                    (&history, &next_value, &stop, &bootstrap);
                s.spawn(move || worker(id, options, bootstrap, history, next_value, stop))
            })
            .collect();
        let nemesis = {
            let (cluster, history, stop, bootstrap) = (&cluster, &history, &stop, &bootstrap);
            s.spawn(move || nemesis(options, bootstrap, cluster, history, stop))
        };
        std::thread::sleep(options.duration);
        stop.store(true, Ordering::Relaxed);
        let faults = nemesis.join().expect("nemesis thread")?;
        for w in workers {
            w.join().expect("worker thread")?;
        }
        Ok(faults)
    })?;
    // Everything is healed; give the cluster a moment, then read it all back.
    std::thread::sleep(Duration::from_secs(3));
    final_reads(options, &bootstrap, &history)?;
    history.finish()?;
    cluster.lock().expect("cluster lock").stop();
    Ok((history_path, faults))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_takes_the_targets_that_mean_something_for_it() {
        for fault in [Fault::Kill, Fault::Pause, Fault::LoseUnsynced] {
            assert!(Target::All.applies_to(fault));
            assert!(Target::Majority.applies_to(fault));
            assert!(!Target::Ring.applies_to(fault));
            assert!(Target::Leader.applies_to(fault));
        }
        assert!(!Target::All.applies_to(Fault::Partition));
        assert!(Target::Clients.applies_to(Fault::Partition));
        // A membership change moves one replica: of one node, or of the leader.
        let membership: Vec<Target> = [
            Target::One,
            Target::Leader,
            Target::Majority,
            Target::Ring,
            Target::Clients,
            Target::All,
        ]
        .into_iter()
        .filter(|t| t.applies_to(Fault::Membership))
        .collect();
        assert_eq!(membership, [Target::One, Target::Leader]);
    }

    /// Who `node` hears: every node but itself and those it drops.
    fn hears(grudge: &Grudge, node: u64, n: u64) -> BTreeSet<u64> {
        (1..=n)
            .filter(|m| *m != node && !grudge[&node].contains(&Some(*m)))
            .collect()
    }

    #[test]
    fn a_ring_of_five_is_symmetric_and_every_node_hears_a_different_majority() {
        let grudge = ring(&[2, 0, 4, 1, 3]);
        let mut majorities = BTreeSet::new();
        for node in 1..=5 {
            let heard = hears(&grudge, node, 5);
            assert_eq!(heard.len(), 2, "node {node} hears itself and two more");
            for other in &heard {
                assert!(hears(&grudge, *other, 5).contains(&node), "{node}-{other}");
            }
            majorities.insert(heard);
        }
        assert_eq!(majorities.len(), 5);
    }

    #[test]
    fn a_ring_of_three_drops_one_way_and_a_split_both_ways() {
        let grudge = ring(&[0, 1, 2]);
        assert_eq!(hears(&grudge, 1, 3), [2].into());
        assert_eq!(hears(&grudge, 2, 3), [3].into());
        assert_eq!(hears(&grudge, 3, 3), [1].into());
        let grudge = split(&[0, 3], 5);
        assert_eq!(hears(&grudge, 1, 5), [4].into());
        assert_eq!(hears(&grudge, 2, 5), [3, 5].into());
    }
}
