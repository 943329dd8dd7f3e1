//! A private network for one test: each node in its own network namespace, joined to the
//! test's clients (which stay in the host namespace) by a veth pair and a bridge. Faults
//! cut real traffic: a node's iptables drops packets from chosen sources, so TCP sees what
//! it sees in a real partition (silence, then timeouts), not a refused connection.
//!
//! Layout: bridge `sjbr0` holds 10.77.0.254 (the clients' address); node `i` lives in
//! namespace `sj-n{i}` with address 10.77.0.{i} on its `eth0`, whose peer `sjv{i}` sits
//! on the bridge. Setting up removes what a crashed run left behind.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, Context};

const BRIDGE: &str = "sjbr0";
const SUBNET: &str = "10.77.0";
/// The address the clients (this process) use on the bridge.
pub const CLIENT_ADDR: &str = "10.77.0.254";

/// Runs a command and fails with its error output if it fails.
fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new(program).args(args).output().with_context(|| {
        format!("cannot run {program} (is it installed? scripts/setup.sh installs it)")
    })?;
    if !output.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

/// Runs a command inside node `node`'s namespace.
fn run_in(node: u64, args: &[&str]) -> anyhow::Result<()> {
    let ns = Network::namespace(node);
    let mut all = vec!["netns", "exec", &ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// The namespaces and bridge of one test. Dropping it removes them.
pub struct Network {
    nodes: usize,
}

impl Network {
    pub fn namespace(node: u64) -> String {
        format!("sj-n{node}")
    }

    pub fn address(node: u64) -> String {
        format!("{SUBNET}.{node}")
    }

    /// Creates the bridge and one namespace per node (ids 1..=nodes).
    pub fn create(nodes: usize) -> anyhow::Result<Network> {
        if !is_root() {
            bail!(
                "network namespaces need root (CAP_NET_ADMIN); run as root, or pass \
                 --net loopback and leave partitions out of --nemesis"
            );
        }
        remove_leftovers(nodes.max(5));
        let network = Network { nodes };
        run("ip", &["link", "add", BRIDGE, "type", "bridge"])?;
        run(
            "ip",
            &["addr", "add", &format!("{CLIENT_ADDR}/24"), "dev", BRIDGE],
        )?;
        run("ip", &["link", "set", BRIDGE, "up"])?;
        for id in 1..=nodes as u64 {
            let ns = Self::namespace(id);
            let veth = format!("sjv{id}");
            run("ip", &["netns", "add", &ns])?;
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", BRIDGE, "up"])?;
            let address = format!("{}/24", Self::address(id));
            run_in(id, &["ip", "addr", "add", &address, "dev", "eth0"])?;
            run_in(id, &["ip", "link", "set", "eth0", "up"])?;
            run_in(id, &["ip", "link", "set", "lo", "up"])?;
        }
        Ok(network)
    }

    /// Makes `node` drop every packet from the given sources (node ids, or `None` for the
    /// clients).
    pub fn drop_from(&self, node: u64, sources: &BTreeSet<Option<u64>>) -> anyhow::Result<()> {
        for source in sources {
            let address = source.map_or(CLIENT_ADDR.to_string(), Self::address);
            run_in(
                node,
                &["iptables", "-A", "INPUT", "-s", &address, "-j", "DROP"],
            )?;
        }
        Ok(())
    }

    /// Removes every drop rule: the network is whole again.
    pub fn heal(&self) -> anyhow::Result<()> {
        for id in 1..=self.nodes as u64 {
            run_in(id, &["iptables", "-F", "INPUT"])?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        remove_leftovers(self.nodes);
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Deletes the bridge, veth pairs and node namespaces if they exist. A veth pair goes
/// with its host end at once; a deleted namespace frees its devices only later, so
/// leaving the pair to it would make the next run's `ip link add` fail.
fn remove_leftovers(nodes: usize) {
    for id in 1..=nodes as u64 {
        // Nodes of a run that was killed before it could stop them.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &Network::namespace(id)])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = run("kill", &["-9", pid]);
            }
        }
        let _ = run("ip", &["link", "del", &format!("sjv{id}")]);
        let _ = run("ip", &["netns", "del", &Network::namespace(id)]);
    }
    let _ = run("ip", &["link", "del", BRIDGE]);
}
