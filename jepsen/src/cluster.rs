//! A cluster of `strand` processes for one test run, with the faults the nemesis injects:
//! kill -9 and restart, pause (SIGSTOP) and resume, and network partitions.
//!
//! Nodes run either each in its own network namespace (see [`crate::netns`]; partitions
//! need this) or all on 127.0.0.1 with ports of their own.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::netns::Network;

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
    host: String,
    kafka_port: u16,
    raft_port: u16,
    dir: PathBuf,
    process: Option<Child>,
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
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Node {
    fn kafka_addr(&self) -> String {
        format!("{}:{}", self.host, self.kafka_port)
    }
}

impl Cluster {
    /// Starts `size` nodes forming one cluster, each with its data and log under `dir`.
    pub fn start(
        strand: &Path,
        strand_args: &[String],
        dir: &Path,
        size: usize,
        net: Net,
    ) -> anyhow::Result<Cluster> {
        let network = match net {
            Net::Namespaces => Some(Network::create(size)?),
            Net::Loopback => None,
        };
        let mut nodes = Vec::new();
        for i in 1..=size as u64 {
            let node_dir = dir.join(format!("n{i}"));
            // A fresh cluster: nothing of an earlier run in this directory survives.
            if node_dir.exists() {
                fs::remove_dir_all(&node_dir)
                    .with_context(|| format!("cannot clear {}", node_dir.display()))?;
            }
            fs::create_dir_all(&node_dir)?;
            let (host, kafka_port, raft_port) = match net {
                Net::Namespaces => (Network::address(i), 9092, 19092),
                Net::Loopback => ("127.0.0.1".to_string(), free_port()?, free_port()?),
            };
            nodes.push(Node {
                id: i,
                host,
                kafka_port,
                raft_port,
                dir: node_dir,
                process: None,
            });
        }
        let initial = nodes
            .iter()
            .map(|n| format!("{}@{}:{}", n.id, n.host, n.raft_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            strand: strand.to_path_buf(),
            strand_args: strand_args.to_vec(),
            initial,
            nodes,
            network,
        };
        for i in 0..size {
            cluster.spawn(i)?;
        }
        for i in 0..size {
            cluster.wait_serving(i, Duration::from_secs(60))?;
        }
        Ok(cluster)
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
            c.args(["netns", "exec", &Network::namespace(node.id)])
                .arg(&self.strand);
            c
        } else {
            Command::new(&self.strand)
        };
        let child = command
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &node.kafka_addr()])
            .args([
                "--raft-listen",
                &format!("{}:{}", node.host, node.raft_port),
            ])
            .args(["--metrics-listen", "off"])
            .args(["--initial-cluster", &self.initial])
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

    /// Stops every node (resuming paused ones first).
    pub fn stop(&mut self) {
        for i in 0..self.nodes.len() {
            let _ = self.resume(i);
            let _ = self.signal(i, "-TERM");
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.process.take() {
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
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
        self.network.take();
    }
}
