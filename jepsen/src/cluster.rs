//! A cluster of `strand` processes for one test run, on loopback ports, with the faults
//! the nemesis injects: kill -9 and restart, pause (SIGSTOP) and resume.
//!
//! Network namespaces (partitions that cut real traffic) come later; until then every node
//! listens on 127.0.0.1.

use std::fs::{self, File};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// One node: its ports, data and the running process, if any.
pub struct Node {
    pub id: u64,
    pub kafka_port: u16,
    raft_port: u16,
    dir: PathBuf,
    process: Option<Child>,
}

pub struct Cluster {
    strand: PathBuf,
    initial: String,
    pub nodes: Vec<Node>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

impl Cluster {
    /// Starts `size` nodes forming one cluster, each with its data and log under `dir`.
    pub fn start(strand: &Path, dir: &Path, size: usize) -> anyhow::Result<Cluster> {
        let mut nodes = Vec::new();
        for i in 1..=size as u64 {
            let node_dir = dir.join(format!("n{i}"));
            fs::create_dir_all(&node_dir)?;
            nodes.push(Node {
                id: i,
                kafka_port: free_port()?,
                raft_port: free_port()?,
                dir: node_dir,
                process: None,
            });
        }
        let initial = nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.raft_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut cluster = Cluster {
            strand: strand.to_path_buf(),
            initial,
            nodes,
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
            .map(|n| format!("127.0.0.1:{}", n.kafka_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) -> anyhow::Result<()> {
        let node = &mut self.nodes[i];
        let log = File::options()
            .create(true)
            .append(true)
            .open(node.dir.join("strand.log"))?;
        let child = Command::new(&self.strand)
            .args(["--node-id", &node.id.to_string()])
            .args(["--listen", &format!("127.0.0.1:{}", node.kafka_port)])
            .args(["--raft-listen", &format!("127.0.0.1:{}", node.raft_port)])
            .args(["--metrics-listen", "off"])
            .args(["--initial-cluster", &self.initial])
            .arg("--data-dir")
            .arg(node.dir.join("data"))
            .env("RUST_LOG", "info,openraft=warn")
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
        let addr = format!("127.0.0.1:{}", self.nodes[i].kafka_port);
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
    }
}
