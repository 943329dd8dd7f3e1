#!/usr/bin/env python3
"""Disk use under retention: one fresh strand node, a topic that keeps `--retention-ms` of
data, and a producer writing at a steady rate for `--minutes`. Every `--sample-seconds` it
records `du` of the node's data directory, the partition's log start and end, and the Raft
entries purged (the node's metrics).

Disk use must stop growing once retention deletes as fast as the producer writes: the check
passes when the log start kept advancing and the largest size seen in the last third of the
run is at most `--tolerance` times the largest in the middle third. The size saw-tooths
rather than staying level: besides the retained data it holds RocksDB's write-ahead log,
which grows to its budget (1 GiB) before the files it covers are flushed and it is
recycled, and blob files until compaction drops them. A run needs several of those cycles
(each about 1 GiB produced), so minutes at a few MB/s.

    python3 benches/disk_flat.py --minutes 30              # the issue's check (make disk-flat)
    python3 benches/disk_flat.py --minutes 8 --retention-ms 30000   # a shorter look
"""

import argparse
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from systems import Strand

REPO = Path(__file__).resolve().parents[1]
TOPIC = "flat"


def du(path):
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())


def metric(port, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--strand", default=str(REPO / "target/release/strand"))
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--retention-ms", type=int, default=60_000)
    ap.add_argument("--rate-mb", type=float, default=4.0, help="MB/s produced")
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--sample-seconds", type=float, default=10)
    ap.add_argument("--tolerance", type=float, default=1.25)
    ap.add_argument("--out", help="write the samples here as JSON")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="strand-disk-flat-"))
    node = Strand(args.strand, workdir, 1, extra_config={
        "log-retention-check-interval-ms": 1000,
    })
    node.start()
    try:
        admin = AdminClient({"bootstrap.servers": node.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1, config={
            "retention.ms": str(args.retention_ms)})])[TOPIC].result(30)
        producer = Producer({"bootstrap.servers": node.bootstrap, "acks": "all",
                             "linger.ms": 5, "compression.type": "none"})
        watcher = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "disk-flat"})
        value = bytes(args.record_size)
        per_tick = max(1, int(args.rate_mb * 1e6 / args.record_size / 20))
        data = workdir / "node1" / "data"
        samples = []
        started = time.monotonic()
        end = started + args.minutes * 60
        next_sample = started
        while time.monotonic() < end:
            tick = time.monotonic()
            for _ in range(per_tick):
                producer.produce(TOPIC, value)
            producer.poll(0)
            if tick >= next_sample:
                low, high = watcher.get_watermark_offsets(TopicPartition(TOPIC, 0), timeout=10)
                sample = {"seconds": round(tick - started, 1), "du_bytes": du(data),
                          "log_start": low, "log_end": high,
                          "purged_entries": metric(node.metrics_port(1), "strand_raft_purged_entries")}
                samples.append(sample)
                print(json.dumps(sample), flush=True)
                next_sample += args.sample_seconds
            time.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
        producer.flush(30)
        watcher.close()
    finally:
        node.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    if args.out:
        Path(args.out).write_text(json.dumps(samples, indent=1))
    third = len(samples) // 3
    middle = max(s["du_bytes"] for s in samples[third:2 * third])
    last = max(s["du_bytes"] for s in samples[2 * third:])
    starts = [s["log_start"] for s in samples]
    advancing = starts[-1] > starts[2 * third] > starts[third] > 0
    flat = last <= args.tolerance * middle
    produced_mb = samples[-1]["log_end"] * args.record_size / 1e6
    print(f"produced {produced_mb:.0f} MB; data directory at most {middle / 1e6:.0f} MB in the "
          f"middle third of the run, {last / 1e6:.0f} MB in the last (x{last / middle:.2f}); "
          f"log start {starts[third]} -> {starts[-1]}")
    if not (flat and advancing):
        print("NOT FLAT" if not flat else "the log start did not advance", file=sys.stderr)
        return 1
    print("flat")
    return 0


if __name__ == "__main__":
    sys.exit(main())
