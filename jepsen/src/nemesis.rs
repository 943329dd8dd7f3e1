//! The nemesis: which faults exist and whom they hit, network partitions as grudges (who
//! stops hearing whom), the fault loop that injects and heals them, and the membership
//! nemesis that moves partitions between nodes and takes nodes out and back in.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::BaseConsumer;
use serde_json::{json, Value};

use crate::admin::Admin;
use crate::clients::{client_config, leader_of, replicas_of, retry};
use crate::cluster::Cluster;
use crate::recorder::Recorder;
use crate::run::RunOptions;
use crate::workload::TOPIC;

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
    pub(crate) fn applies_to(self, fault: Fault) -> bool {
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
    history: &'a Recorder,
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
pub(crate) fn nemesis(
    options: &RunOptions,
    bootstrap: &str,
    cluster: &Mutex<Cluster>,
    history: &Recorder,
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
