//! What a bystander sees while clients attack one node: for each of the probe's resource
//! attacks in turn, a second client asks for Metadata every 20 ms, and its latencies are
//! printed (and written as JSON to `$STRAND_BYSTANDER_OUT`) for docs/benchmarks.md.
//!
//! A measurement, not a test of `make test`: it is ignored there and run by
//! `make bench-attacks`. It asserts only what must hold whatever the machine: the
//! bystander is answered throughout and the node outlives every attack.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{create_topic, name, produce_to, record_batch, Client, Node};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::Compression;

/// How long each attack runs while the bystander measures.
const ATTACK: Duration = Duration::from_secs(10);
/// The bystander's pace.
const EVERY: Duration = Duration::from_millis(20);

/// The attackers' shared state: when to stop, and how many requests they got through.
#[derive(Default)]
struct Attackers {
    stop: AtomicBool,
    requests: AtomicU64,
}

type Start = fn(&Node, &Arc<Attackers>) -> Vec<JoinHandle<()>>;

/// Runs `work` on `threads` threads, each with its own connection, until told to stop. A
/// connection the node closes is replaced.
fn on_threads(
    node: &Node,
    attackers: &Arc<Attackers>,
    threads: usize,
    work: fn(&mut Client, usize) -> std::io::Result<()>,
) -> Vec<JoinHandle<()>> {
    (0..threads)
        .map(|t| {
            let port = node.port;
            let attackers = attackers.clone();
            std::thread::spawn(move || {
                let mut round = 0;
                while !attackers.stop.load(Relaxed) {
                    let Ok(mut c) = Client::connect_to(port) else {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    while !attackers.stop.load(Relaxed)
                        && work(&mut c, t * 1_000_000 + round).is_ok()
                    {
                        attackers.requests.fetch_add(1, Relaxed);
                        round += 1;
                    }
                }
            })
        })
        .collect()
}

fn bombs(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    on_threads(node, a, 4, |c, _| {
        // 80 MiB of one letter, 80 KB gzipped: inflated up to the 64 MiB bound, then refused.
        static BOMB: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
        let bomb = BOMB
            .get_or_init(|| record_batch(&[("k", &"x".repeat(80 << 20))], Compression::Gzip, None));
        c.try_call(
            ApiKey::Produce,
            3,
            &produce_to("target", 0, bomb.clone(), -1),
        )
        .map(|_| ())
    })
}

fn invented_producers(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    on_threads(node, a, 4, |c, round| {
        // 32 in flight, each waiting out the node's allocation check.
        for i in 0..32 {
            let id = 1_000_000_000 + (round * 32 + i) as i64;
            let batch = record_batch(&[("k", "v")], Compression::None, Some((id, 0, 0)));
            c.try_send(ApiKey::Produce, 3, &produce_to("target", 0, batch, -1))?;
        }
        for _ in 0..32 {
            c.try_receive(ApiKey::Produce, 3)?;
        }
        Ok(())
    })
}

fn join(group: &str) -> RequestKind {
    let s = |v: &str| StrBytes::from_string(v.to_string());
    RequestKind::JoinGroup(
        JoinGroupRequest::default()
            .with_group_id(s(group).into())
            .with_session_timeout_ms(30_000)
            .with_rebalance_timeout_ms(30_000)
            .with_member_id(s(""))
            .with_protocol_type(s("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(s("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))]),
    )
}

fn group_floods(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    let mut threads = on_threads(node, a, 2, |c, round| {
        c.try_call(ApiKey::JoinGroup, 9, &join(&format!("flood-{round}")))
            .map(|_| ())
    });
    threads.extend(on_threads(node, a, 1, |c, _| {
        c.try_call(ApiKey::JoinGroup, 9, &join("crowded"))
            .map(|_| ())
    }));
    threads
}

fn topic_flood(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    on_threads(node, a, 2, |c, round| {
        let req = CreateTopicsRequest::default()
            .with_timeout_ms(30_000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(name(&format!("flood-{round}")))
                .with_num_partitions(8)
                .with_replication_factor(1)]);
        c.try_call(ApiKey::CreateTopics, 2, &RequestKind::CreateTopics(req))
            .map(|_| ())
    })
}

/// Connections that each hold `count` bytes of a `size`-byte frame, until the attack ends.
fn holders(
    node: &Node,
    a: &Arc<Attackers>,
    connections: usize,
    size: i32,
    count: usize,
) -> Vec<JoinHandle<()>> {
    let port = node.port;
    let a = a.clone();
    vec![std::thread::spawn(move || {
        let mut held = Vec::new();
        let body = vec![0u8; 1 << 20];
        for _ in 0..connections {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
            let _ = s.write_all(&size.to_be_bytes());
            let mut sent = 0;
            while sent < count && !a.stop.load(Relaxed) {
                let n = (count - sent).min(body.len());
                if s.write_all(&body[..n]).is_err() {
                    break;
                }
                sent += n;
            }
            a.requests.fetch_add(1, Relaxed);
            held.push(s);
        }
        while !a.stop.load(Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
    })]
}

fn slowloris(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    holders(node, a, 1_000, 1_000, 10)
}

fn held_frames(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    holders(node, a, 12, 100_000_000, 100_000_000 - 1)
}

fn connection_churn(node: &Node, a: &Arc<Attackers>) -> Vec<JoinHandle<()>> {
    let mut threads = holders(node, a, 3_000, 100, 0);
    threads.extend((0..2).map(|_| {
        let port = node.port;
        let a = a.clone();
        std::thread::spawn(move || {
            while !a.stop.load(Relaxed) {
                if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    a.requests.fetch_add(1, Relaxed);
                }
            }
        })
    }));
    threads
}

const ATTACKS: [(&str, Start); 7] = [
    ("gzip bombs (80 MiB each), 4 clients", bombs),
    (
        "invented producer ids, 4 clients x 32 in flight",
        invented_producers,
    ),
    ("new groups and members, 3 clients", group_floods),
    ("topics of 8 partitions, 2 clients", topic_flood),
    ("1,000 slowloris connections", slowloris),
    (
        "12 frames of 100 MB held short of their last byte",
        held_frames,
    ),
    (
        "3,000 idle connections and 2 clients reconnecting",
        connection_churn,
    ),
];

/// Latencies in milliseconds, sorted: the figure at fraction `q`.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
#[ignore = "a measurement: make bench-attacks"]
fn a_bystander_is_served_during_every_attack() {
    let mut node = Node::start();
    let mut setup = node.try_connect().unwrap();
    assert_eq!(create_topic(&mut setup, "target", 1, &[]), 0);
    let mut results = Vec::new();
    for (attack, start) in ATTACKS {
        let attackers = Arc::new(Attackers::default());
        let threads = start(&node, &attackers);
        // The attack gets going before the measurement starts.
        std::thread::sleep(Duration::from_secs(1));
        let mut bystander = node.try_connect().unwrap();
        let mut latencies = Vec::new();
        let began = Instant::now();
        while began.elapsed() < ATTACK {
            let asked = Instant::now();
            let request =
                RequestKind::Metadata(MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name("target"))),
            ])));
            let answer = bystander.try_call(ApiKey::Metadata, 12, &request);
            latencies.push(asked.elapsed().as_secs_f64() * 1000.0);
            assert!(answer.is_ok(), "{attack}: the bystander got {answer:?}");
            std::thread::sleep(EVERY.saturating_sub(asked.elapsed()));
        }
        attackers.stop.store(true, Relaxed);
        for t in threads {
            t.join().unwrap();
        }
        assert!(node.is_running(), "the node exited during {attack}");
        latencies.sort_by(f64::total_cmp);
        let over = latencies.iter().filter(|ms| **ms > 100.0).count();
        let line = serde_json::json!({
            "attack": attack,
            "attacker_requests": attackers.requests.load(Relaxed),
            "metadata_requests": latencies.len(),
            "p50_ms": quantile(&latencies, 0.5),
            "p99_ms": quantile(&latencies, 0.99),
            "max_ms": quantile(&latencies, 1.0),
            "over_100_ms": over,
        });
        println!("{line}");
        results.push(line);
    }
    if let Ok(path) = std::env::var("STRAND_BYSTANDER_OUT") {
        let out = serde_json::to_string_pretty(&results).unwrap();
        std::fs::write(&path, out).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}
