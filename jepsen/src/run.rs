//! One test run: a fresh cluster, the queue workload ([`crate::workload`]) from several
//! workers, the nemesis ([`crate::nemesis`]) killing, pausing and partitioning nodes, then
//! healing and final reads of every partition; the history goes to `history.jsonl`
//! ([`crate::recorder`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use serde_json::json;

use crate::clients::{client_config, retry};
use crate::cluster::{Cluster, Net};
use crate::nemesis::{nemesis, Fault, Target};
use crate::recorder::Recorder;
use crate::workload::{deleter, final_reads, worker, ReadPositions, REGISTERS, TOPIC};

/// The process id of the run's own entries in the history.
const SETUP: u64 = 3_000_000;

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
    /// How often the deleter moves a partition's log start (see [`crate::workload`]);
    /// `None`: never.
    pub delete_every: Option<Duration>,
    /// Whether the topic is compacted as well as deleted from (see [`crate::workload`]).
    pub compact: bool,
}

impl RunOptions {
    /// The fault and target pairs the nemesis chooses from.
    pub(crate) fn fault_choices(&self) -> Vec<(Fault, Target)> {
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
    // Compacted, records supersede earlier ones of their register (see [`crate::workload`]).
    let mut topic = NewTopic::new(
        TOPIC,
        options.keys,
        TopicReplication::Fixed(3.min(options.nodes as i32)),
    );
    if options.compact {
        topic = topic
            .set("cleanup.policy", "compact,delete")
            .set("min.cleanable.dirty.ratio", "0.01");
    }
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
    let history = Recorder::create(&history_path)?;
    if options.compact {
        // Tells the checker which records the log cleaner may remove.
        history.log(json!(SETUP), "ok", "registers", json!(REGISTERS), None);
    }
    let next_value: Vec<AtomicI64> = (0..options.keys).map(|_| AtomicI64::new(0)).collect();
    let stop = AtomicBool::new(false);
    let readers = options.workers.saturating_sub(options.subscribers);
    let positions = ReadPositions::new(readers, options.keys);
    let cluster = Arc::new(Mutex::new(cluster));
    let faults = std::thread::scope(|s| -> anyhow::Result<usize> {
        let mut workers: Vec<_> = (0..options.workers as u64)
            .map(|id| {
                let (history, next_value, positions, stop, bootstrap) =
                    (&history, &next_value, &positions, &stop, &bootstrap);
                s.spawn(move || {
                    worker(id, options, bootstrap, history, next_value, positions, stop)
                })
            })
            .collect();
        {
            let (history, positions, stop, bootstrap) = (&history, &positions, &stop, &bootstrap);
            workers.push(s.spawn(move || deleter(options, bootstrap, history, positions, stop)));
        }
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
