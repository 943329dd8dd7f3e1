#!/usr/bin/env python3
"""A three-node cluster on this machine: replicated produce throughput, the produce stall
when a partition's leader is killed, and idle CPU with many partitions.

Starts its own cluster with deploy/local-cluster.sh (in a throw-away directory, on the
standard ports 9092-9094), so stop any `make cluster` first. Each figure is printed as it
is measured, then all of them as one Markdown table and JSON.

    python3 benches/cluster.py                 # everything, short
    python3 benches/cluster.py --kills 10 --partitions-idle 1000 --seconds 20
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from systems import proc_sample

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "deploy" / "local-cluster.sh"
BOOTSTRAP = "127.0.0.1:9092,127.0.0.1:9093,127.0.0.1:9094"


class Cluster:
    def __init__(self, binary, workdir):
        self.env = {**os.environ, "STRAND_BIN": binary, "STRAND_CLUSTER_DIR": str(workdir)}
        self.dir = Path(workdir)

    def run(self, *args):
        subprocess.run([str(SCRIPT), *map(str, args)], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pid(self, n):
        return int((self.dir / f"node{n}" / "strand.pid").read_text())

    def cpu_seconds(self, n):
        return proc_sample(self.pid(n))["cpu_s"]

    def rss_mb(self, n):
        return proc_sample(self.pid(n))["rss_mb"]


def create(name, partitions):
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    admin.create_topics([NewTopic(name, partitions)], request_timeout=120)[name].result(180)


def leaders(topic):
    md = AdminClient({"bootstrap.servers": BOOTSTRAP}).list_topics(topic, timeout=10)
    return {p: d.leader for p, d in md.topics[topic].partitions.items()}


def throughput(seconds, record_size=1024, partitions=16):
    create("bench-replicated", partitions)
    p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 5,
                  "batch.size": 1_000_000, "enable.idempotence": True,
                  "queue.buffering.max.kbytes": 1_048_576})
    payload = os.urandom(record_size)
    acked = [0]

    def cb(err, msg):
        if err is None:
            acked[0] += 1

    warmup_end = time.monotonic() + 3
    end = warmup_end + seconds
    started, start_acks = None, 0
    i = 0
    while time.monotonic() < end:
        if started is None and time.monotonic() >= warmup_end:
            started, start_acks = time.monotonic(), acked[0]
        try:
            p.produce("bench-replicated", payload, key=str(i % 1024).encode(), on_delivery=cb)
            i += 1
        except BufferError:
            p.poll(0.001)
        if i % 256 == 0:
            p.poll(0)
    p.flush(60)
    elapsed = time.monotonic() - started
    records = acked[0] - start_acks
    return {"replicated_records_per_s": round(records / elapsed),
            "replicated_mb_per_s": round(records * record_size / elapsed / 1e6, 1)}


def failover(cluster, kills, rate_per_partition=200):
    """For each kill: the longest gap between acknowledgements on the partitions the killed
    node led. The producer sends at a steady rate well below capacity, so every message is
    acknowledged within milliseconds and a gap in acknowledgements is a gap in
    availability, not a client-side queue."""
    create("bench-failover", 6)
    stalls = []
    for k in range(kills):
        acks, lock, stop = [], threading.Lock(), threading.Event()
        p = Producer({"bootstrap.servers": BOOTSTRAP, "acks": "all", "linger.ms": 0,
                      "enable.idempotence": True, "message.timeout.ms": 60_000})

        def cb(err, msg):
            if err is None:
                with lock:
                    acks.append((time.monotonic(), msg.partition()))

        def write():
            interval = 1.0 / (rate_per_partition * 6)
            next_send, i = time.monotonic(), 0
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_send:
                    p.produce("bench-failover", b"x" * 100, partition=i % 6, on_delivery=cb)
                    i += 1
                    next_send += interval
                p.poll(0.0005)

        t = threading.Thread(target=write)
        t.start()
        time.sleep(2)
        led = leaders("bench-failover")
        victim = led[k % 6]
        partitions = [part for part, leader in led.items() if leader == victim]
        killed = time.monotonic()
        cluster.run("kill", victim)
        time.sleep(6)
        stop.set()
        t.join()
        p.flush(60)
        cluster.run("restart", victim)
        with lock:
            times = {part: sorted(ts for ts, q in acks if q == part and ts > killed - 1) for part in partitions}
        stall = 0.0
        for part, ts in times.items():
            gaps = [b - a for a, b in zip(ts, ts[1:]) if b > killed]
            stall = max([stall, *gaps]) if gaps else float("inf")
        print(f"  kill {k + 1}: node {victim} led partitions {partitions}: stall {stall:.2f}s", flush=True)
        stalls.append(stall)
        time.sleep(3)
    return {"failover_stall_median_s": round(statistics.median(stalls), 2),
            "failover_stall_max_s": round(max(stalls), 2), "kills": kills}


def idle(cluster, partitions, seconds):
    create("bench-idle", partitions)
    time.sleep(10)
    before = {n: cluster.cpu_seconds(n) for n in (1, 2, 3)}
    time.sleep(seconds)
    cpu = {n: (cluster.cpu_seconds(n) - before[n]) / seconds * 100 for n in (1, 2, 3)}
    return {"idle_partitions": partitions,
            "idle_cpu_percent_per_node": [round(cpu[n], 1) for n in (1, 2, 3)],
            "rss_mb_per_node": [round(cluster.rss_mb(n)) for n in (1, 2, 3)]}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strand", default=os.environ.get("STRAND_BIN", str(REPO / "target/release/strand")))
    ap.add_argument("--seconds", type=float, default=10, help="throughput measurement")
    ap.add_argument("--kills", type=int, default=3)
    ap.add_argument("--partitions-idle", type=int, default=1000)
    ap.add_argument("--idle-seconds", type=float, default=20)
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--workdir", help="keep the nodes' data and logs here instead of a temporary directory")
    ap.add_argument("--only", choices=["throughput", "failover", "idle"], help="run one measurement")
    args = ap.parse_args()

    result = {}
    with tempfile.TemporaryDirectory(prefix="strand-cluster-bench-") as tmp:
        cluster = Cluster(args.strand, args.workdir or tmp)
        cluster.run("start")
        try:
            if args.only in (None, "throughput"):
                print("replicated throughput (acks=all, RF 3, 1 KiB, 16 partitions)...", flush=True)
                result.update(throughput(args.seconds))
                print(f"  {result}", flush=True)
            if args.only in (None, "failover"):
                print(f"failover ({args.kills} leader kills)...", flush=True)
                result.update(failover(cluster, args.kills))
            if args.only in (None, "idle"):
                print(f"idle CPU ({args.partitions_idle} partitions, RF 3)...", flush=True)
                result.update(idle(cluster, args.partitions_idle, args.idle_seconds))
        finally:
            cluster.run("stop")
    print(json.dumps(result))
    print("\n| figure | value |\n|---|---|")
    for k, v in result.items():
        print(f"| {k} | {v} |")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
