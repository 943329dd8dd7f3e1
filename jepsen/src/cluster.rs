//! A cluster of `strand` processes for one test run, with the faults the nemesis injects:
//! kill -9 and restart, pause (SIGSTOP) and resume, network partitions, and crashes that
//! lose every un-fsynced write (each node's data directory is then a [`LazyFs`]).
//!
//! Nodes run either each in its own network namespace (see [`crate::netns`]; partitions
//! need this) or all on 127.0.0.1 with ports of their own.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::lazyfs::{LazyFs, LossReport};
use crate::netns::Network;

/// The nodes' log filter: Strand's default, plus the answers that move a consumer's
/// position (a fetch out of range, the end of a leader epoch), which an anomaly report
/// quotes (`report::node_notices`).
const NODE_LOG: &str = "info,openraft=warn,strand_broker::handlers::fetch=debug,\
                        strand_broker::handlers::offset_for_leader_epoch=debug";

/// Where the nodes run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Net {
    /// Each node in its own network namespace, on its own address.
    Namespaces,
    /// Every node on 127.0.0.1; no partitions.
    Loopback,
}

/// One node: its ports, data and the running process, if any.
pub struct Node {
    pub id: u64,
    /// Its place in the network: namespace `sj-n{slot}`, address 10.77.0.{slot}. The same
    /// as the id, except for spare nodes, which take ids the cluster has not seen yet.
    slot: u64,
    host: String,
    kafka_port: u16,
    raft_port: u16,
    dir: PathBuf,
    process: Option<Child>,
    /// The node's data directory, when crashes may lose what it did not fsync; unmounted
    /// once the cluster has stopped (see `Drop`).
    disk: Option<LazyFs>,
    /// For a node that joins a running cluster: the Raft addresses it joins through.
    join: Option<String>,
}

pub struct Cluster {
    strand: PathBuf,
    /// More arguments for every node (the self-check's `--unsafe-mode`).
    strand_args: Vec<String>,
    initial: String,
    pub nodes: Vec<Node>,
    /// Dropped after the nodes have stopped (see `Drop`): a namespace lives on while a
    /// process runs in it.
    network: Option<Network>,
    dir: PathBuf,
    net: Net,
    lazy_disks: bool,
    /// Where a spare node runs, if the network has room for one.
    spare_slot: Option<u64>,
    next_spare_id: u64,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Node {
    /// A node not yet started, with a fresh directory under `dir`.
    fn create(dir: &Path, id: u64, slot: u64, net: Net, lazy_disk: bool) -> anyhow::Result<Node> {
        let node_dir = dir.join(format!("n{id}"));
        // A fresh node: nothing of an earlier run in this directory survives.
        if node_dir.exists() {
            // A run that died may have left its lazy filesystem mounted.
            let _ = Command::new("fusermount3")
                .arg("-uz")
                .arg(node_dir.join("data"))
                .stderr(Stdio::null())
                .status();
            fs::remove_dir_all(&node_dir)
                .with_context(|| format!("cannot clear {}", node_dir.display()))?;
        }
        fs::create_dir_all(&node_dir)?;
        let disk = lazy_disk
            .then(|| LazyFs::mount(&node_dir.join("disk"), &node_dir.join("data")))
            .transpose()?;
        let (host, kafka_port, raft_port) = match net {
            Net::Namespaces => (Network::address(slot), 9092, 19092),
            Net::Loopback => ("127.0.0.1".to_string(), free_port()?, free_port()?),
        };
        Ok(Node {
            id,
            slot,
            host,
            kafka_port,
            raft_port,
            dir: node_dir,
            process: None,
            disk,
            join: None,
        })
    }

    fn kafka_addr(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }

    fn raft_addr(&self) -> String {
        format!("{}:{}", self.host, self.raft_port)
    }
}

impl Cluster {
    /// Starts `size` nodes forming one cluster, each with its data and log under `dir`.
    /// With `lazy_disks`, each node's data directory is a [`LazyFs`] (see
    /// [`Cluster::crash_losing_unsynced`]); with `spare`, the network has room for one node
    /// more, which joins and leaves while the test runs (see [`Cluster::add_spare`]).
    pub fn start(
        strand: &Path,
        strand_args: &[String],
        dir: &Path,
        size: usize,
        net: Net,
        lazy_disks: bool,
        spare: bool,
    ) -> anyhow::Result<Cluster> {
        let network = match net {
            Net::Namespaces => Some(Network::create(size + usize::from(spare))?),
            Net::Loopback => None,
        };
        let nodes = (1..=size as u64)
            .map(|id| Node::create(dir, id, id, net, lazy_disks))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let initial = nodes
            .iter()
            .map(|n| format!("{}@{}", n.id, n.raft_addr()))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            strand: strand.to_path_buf(),
            strand_args: strand_args.to_vec(),
            initial,
            nodes,
            network,
            dir: dir.to_path_buf(),
            net,
            lazy_disks,
            spare_slot: spare.then_some(size as u64 + 1),
            next_spare_id: size as u64 + 1,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_serving(i, Duration::from_secs(60))?;
        }
        Ok(cluster)
    }

    /// Starts a new node (a new id each time, in the spare slot of the network) that joins
    /// the running cluster; returns its id. Remove it with [`Cluster::remove_spare`].
    pub fn add_spare(&mut self) -> anyhow::Result<u64> {
        let slot = self
            .spare_slot
            .context("a spare node needs the cluster started with room for one")?;
        let join = self
            .nodes
            .iter()
            .map(Node::raft_addr)
            .collect::<Vec<_>>()
            .join(",");
        let id = self.next_spare_id;
        self.next_spare_id += 1;
        let mut node = Node::create(&self.dir, id, slot, self.net, self.lazy_disks)?;
        node.join = Some(join);
        self.nodes.push(node);
        let i = self.nodes.len() - 1;
        self.spawn(i)?;
        self.wait_serving(i, Duration::from_secs(60))?;
        Ok(id)
    }

    /// Stops the spare node `id` (SIGTERM) and forgets it; its directory stays, for its log.
    pub fn remove_spare(&mut self, id: u64) -> anyhow::Result<()> {
        let i = self
            .nodes
            .iter()
            .position(|n| n.id == id && n.join.is_some())
            .with_context(|| format!("no spare node {id}"))?;
        self.stop_node(i);
        self.nodes.remove(i);
        Ok(())
    }

    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(Node::kafka_addr)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The private network, if the nodes run in namespaces.
    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(node.dir.join("strand.log"))?;
        // `ip netns exec` execs the program, so the child's pid is strand's own.
        let mut command = if self.network.is_some() {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &Network::namespace(node.slot)])
                .arg(&self.strand);
            c
        } else {
            Command::new(&self.strand)
        };
        let child = command
            .args(["--log", NODE_LOG])
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &node.kafka_addr()])
            .args(["--raft-listen", &node.raft_addr()])
            .args(["--metrics-listen", "off"])
            .args(["--log-cleaner-backoff-ms", "1000"])
            .args(match &node.join {
                Some(peers) => ["--join", peers],
                None => ["--initial-cluster", &self.initial],
            })
            .arg("--data-dir")
            .arg(node.dir.join("data"))
            .args(&self.strand_args)
            .stdout(log.try_clone()?)
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("cannot start {}", self.strand.display()))?;
        node.process = Some(child);
        Ok(())
    }

    /// Waits until node `i` accepts Kafka connections.
    fn wait_serving(&mut self, i: usize, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        let addr = self.nodes[i].kafka_addr();
        loop {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(());
            }
            if let Some(status) = self.nodes[i]
                .process
                .as_mut()
                .and_then(|p| p.try_wait().ok()?)
            {
                bail!(
                    "node {} exited with {status}; see its strand.log",
                    self.nodes[i].id
                );
            }
            if Instant::now() >= deadline {
                bail!("node {} did not start serving", self.nodes[i].id);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn signal(&self, i: usize, signal: &str) -> anyhow::Result<()> {
        let Some(child) = &self.nodes[i].process else {
            return Ok(());
        };
        let status = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} node {} failed", self.nodes[i].id);
        }
        Ok(())
    }

    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut child) = self.nodes[i].process.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// kill -9, then the node's data loses every write it had not fsynced, as in a power
    /// cut. Needs the cluster started with lazy disks.
    pub fn crash_losing_unsynced(&mut self, i: usize) -> anyhow::Result<LossReport> {
        self.kill(i)?;
        let disk = self.nodes[i]
            .disk
            .as_ref()
            .context("losing un-fsynced writes needs the cluster started with lazy disks")?;
        Ok(disk.lose_unsynced())
    }

    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn(i)?;
        self.wait_serving(i, Duration::from_secs(60))
    }

    pub fn pause(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-STOP")
    }

    pub fn resume(&self, i: usize) -> anyhow::Result<()> {
        self.signal(i, "-CONT")
    }

    /// Undoes every fault: heals the network, resumes paused nodes and restarts killed
    /// ones, carrying on past a node that fails; the first error is returned.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        let mut outcome = match &self.network {
            Some(network) => network.heal(),
            None => Ok(()),
        };
        for i in 0..self.nodes.len() {
            let healed = if self.nodes[i].process.is_some() {
                self.resume(i)
            } else {
                self.restart(i)
            };
            outcome = outcome.and(healed);
        }
        outcome
    }

    /// Stops every node (resuming paused ones first), all at once.
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            self.terminate(i);
        }
        for i in 0..self.nodes.len() {
            self.reap(i);
        }
    }

    fn stop_node(&mut self, i: usize) {
        self.terminate(i);
        self.reap(i);
    }

    /// SIGCONT, in case it is paused, then SIGTERM.
    fn terminate(&self, i: usize) {
        let _ = self.resume(i);
        let _ = self.signal(i, "-TERM");
    }

    /// Waits up to 20 s for node `i` to exit, then kills it.
    fn reap(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].process.take() {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        for node in &mut self.nodes {
            node.disk.take();
        }
        self.network.take();
    }
}
