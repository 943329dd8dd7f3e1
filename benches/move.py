#!/usr/bin/env python3
"""Moving a large partition to a node that never had it, with and without deleted records.

Two fresh strand nodes. Topic `kept` (one partition, on node 1) gets `--produce-gb` of
records and keeps them all; topic `trimmed` gets as much, then DeleteRecords leaves the last
`--retain-gb`, and node 1 purges its Raft log below them. Each partition is then moved to
node 2 (AlterPartitionReassignments) and timed until the move completes. Reported per move:
the time, the Raft log bytes node 2 wrote, and the snapshot bytes it installed (its
metrics). The first shows a replica catching up by replaying the log, the second by a
snapshot of what is retained.

    python3 benches/move.py --produce-gb 5 --retain-gb 1
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer, TopicPartition as ConfluentPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import TopicPartition
from kafka.admin import KafkaAdminClient

from systems import Strand

REPO = Path(__file__).resolve().parents[1]
RECORD = 64 * 1024


def metric(node, n, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.metrics_port(n)}/metrics",
                                  timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def produce(bootstrap, topic, gigabytes):
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "batch.size": 1 << 20, "compression.type": "none"})
    value = bytes(RECORD)
    count = int(gigabytes * 1e9 / RECORD)
    for i in range(count):
        while True:
            try:
                p.produce(topic, value)
                break
            except BufferError:
                p.poll(0.05)
        if i % 1000 == 0:
            p.poll(0)
    assert p.flush(300) == 0
    return count


def wait(what, check, timeout):
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"gave up waiting for {what}")
        time.sleep(0.2)


def move(cluster, topic):
    """Moves `topic`'s partition to node 2; returns seconds and node 2's byte counters."""
    admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
    log_before = metric(cluster, 2, "strand_raft_log_bytes_total")
    snap_before = metric(cluster, 2, "strand_raft_snapshot_bytes_total")
    started = time.monotonic()
    admin.alter_partition_reassignments({TopicPartition(topic, 0): [2]})
    wait(f"the move of {topic}", lambda: not admin.list_partition_reassignments(), 1800)
    seconds = time.monotonic() - started
    admin.close()
    return {
        "seconds": round(seconds, 1),
        "raft_log_bytes_written_by_new_node": int(metric(cluster, 2, "strand_raft_log_bytes_total") - log_before),
        "snapshot_bytes_received": int(metric(cluster, 2, "strand_raft_snapshot_bytes_total") - snap_before),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strand", default=str(REPO / "target/release/strand"))
    ap.add_argument("--produce-gb", type=float, default=5)
    ap.add_argument("--retain-gb", type=float, default=1)
    ap.add_argument("--json", help="also write the result as JSON to this file")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="strand-move-"))
    cluster = Strand(args.strand, workdir, 2)
    cluster.start()
    results = {}
    try:
        admin = AdminClient({"bootstrap.servers": cluster.bootstrap})
        for topic in ("kept", "trimmed"):
            admin.create_topics([NewTopic(topic, 1, replica_assignment=[[1]])])[topic].result(30)
        for topic in ("kept", "trimmed"):
            started = time.monotonic()
            count = produce(cluster.bootstrap, topic, args.produce_gb)
            print(f"{topic}: produced {count} records of {RECORD} bytes in "
                  f"{time.monotonic() - started:.0f} s", flush=True)
        keep = int(args.retain_gb * 1e9 / RECORD)
        purged = metric(cluster, 1, "strand_raft_purged_entries")
        [(_, done)] = admin.delete_records([ConfluentPartition("trimmed", 0, count - keep)]).items()
        done.result(60)
        wait("node 1 purges the trimmed log",
             lambda: metric(cluster, 1, "strand_raft_purged_entries") > purged, 120)
        for topic in ("kept", "trimmed"):
            results[topic] = move(cluster, topic)
            print(f"{topic}: {json.dumps(results[topic])}", flush=True)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
