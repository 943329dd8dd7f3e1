#!/usr/bin/env python3
"""Produce throughput and latency against a fresh single strand node.

Starts `strand` with a throw-away data directory (or uses --bootstrap), creates a topic,
and produces fixed-size records flat out with librdkafka (confluent-kafka) for a while.
Reports records/s, MB/s, publish latency percentiles, and from the broker: WAL fsyncs
(how many appends each fsync carried) and bytes written to disk per byte produced (from
/proc/<pid>/io). Timings depend on the machine; compare runs made side by side.

    python3 benches/produce.py --partitions 16 --record-size 1024 --acks all --seconds 20
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from systems import Strand

REPO = Path(__file__).resolve().parents[1]


def broker_counters(metrics_url, pid):
    counters = {}
    if metrics_url:
        for line in urllib.request.urlopen(metrics_url, timeout=5).read().decode().splitlines():
            if line and not line.startswith("#") and "{" not in line:
                name, value = line.split()
                counters[name] = float(value)
    if pid:
        for line in Path(f"/proc/{pid}/io").read_text().splitlines():
            key, value = line.split(":")
            counters["io_" + key] = float(value)
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        counters["cpu_seconds"] = (int(stat[11]) + int(stat[12])) / ticks
    return counters


def percentile(sorted_values, p):
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bootstrap", help="use a running broker instead of starting one")
    ap.add_argument("--strand", default=os.environ.get("STRAND_BIN", str(REPO / "target/release/strand")))
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--record-size", type=int, default=1024)
    ap.add_argument("--acks", default="all")
    ap.add_argument("--compression", default="none")
    ap.add_argument("--linger-ms", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=1_000_000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--warmup", type=float, default=3)
    ap.add_argument("--json", help="also write the result as JSON to this file")
    args = ap.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="strand-bench-"))
    node, pid, metrics_url = None, None, None
    if args.bootstrap:
        bootstrap = args.bootstrap
    else:
        node = Strand(args.strand, workdir, nodes=1)
        try:
            node.start()
        except RuntimeError as e:
            sys.exit(str(e))
        bootstrap, pid = node.bootstrap, node.pids()[0]
        metrics_url = f"http://127.0.0.1:{node.metrics_port(1)}/metrics"
    try:
        topic = f"bench-{int(time.time())}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        admin.create_topics([NewTopic(topic, args.partitions, 1)])[topic].result(30)

        producer = Producer({
            "bootstrap.servers": bootstrap, "acks": args.acks, "linger.ms": args.linger_ms,
            "batch.size": args.batch_size, "compression.type": args.compression,
            "queue.buffering.max.kbytes": 1_048_576, "queue.buffering.max.messages": 1_000_000,
            "enable.idempotence": False,
        })
        payload = os.urandom(args.record_size)
        latencies, state = [], {"acked": 0, "errors": 0, "measuring": False}

        start_measure = time.monotonic() + args.warmup
        end = start_measure + args.seconds
        before = None
        n = 0
        measured_acks = 0

        def make_cb(t0, measuring):
            def cb(err, msg):
                nonlocal measured_acks
                if err is not None:
                    state["errors"] += 1
                elif measuring:
                    measured_acks += 1
                    if measured_acks % 16 == 0:
                        latencies.append(time.monotonic() - t0)
            return cb

        while True:
            now = time.monotonic()
            if now >= end:
                break
            measuring = now >= start_measure
            if measuring and before is None:
                producer.flush(30)
                measured_acks = 0
                before = (time.monotonic(), broker_counters(metrics_url, pid))
                continue
            try:
                producer.produce(topic, payload, key=str(n % 1024).encode(), on_delivery=make_cb(now, measuring))
                n += 1
            except BufferError:
                producer.poll(0.001)
            if n % 256 == 0:
                producer.poll(0)
        producer.flush(60)
        after = (time.monotonic(), broker_counters(metrics_url, pid))
        elapsed = after[0] - before[0]
        records = measured_acks
        mb = records * args.record_size / 1e6
        latencies.sort()
        result = {
            "partitions": args.partitions, "record_size": args.record_size, "acks": args.acks,
            "compression": args.compression, "seconds": round(elapsed, 2), "records": records,
            "records_per_s": round(records / elapsed), "mb_per_s": round(mb / elapsed, 1),
            "p50_ms": round(percentile(latencies, 50) * 1000, 1),
            "p99_ms": round(percentile(latencies, 99) * 1000, 1),
            "p999_ms": round(percentile(latencies, 99.9) * 1000, 1),
            "max_ms": round((latencies[-1] if latencies else float("nan")) * 1000, 1),
            "errors": state["errors"],
        }
        b, a = before[1], after[1]
        if "strand_wal_syncs_total" in a:
            syncs = a["strand_wal_syncs_total"] - b["strand_wal_syncs_total"]
            appends = a["strand_wal_synced_appends_total"] - b["strand_wal_synced_appends_total"]
            result["fsyncs_per_s"] = round(syncs / elapsed)
            result["appends_per_fsync"] = round(appends / max(syncs, 1), 1)
        if "io_write_bytes" in a:
            written = a["io_write_bytes"] - b["io_write_bytes"]
            result["disk_bytes_per_produced_byte"] = round(written / max(mb * 1e6, 1), 2)
            result["broker_cpu_s_per_gb"] = round((a["cpu_seconds"] - b["cpu_seconds"]) / max(mb / 1000, 1e-9), 1)
        print(json.dumps(result))
        print(
            f"\n| partitions | record | acks | records/s | MB/s | p50 ms | p99 ms | p99.9 ms | fsyncs/s | appends/fsync | disk B/B |\n"
            f"|---|---|---|---|---|---|---|---|---|---|---|\n"
            f"| {args.partitions} | {args.record_size} B | {args.acks} | {result['records_per_s']} | {result['mb_per_s']} "
            f"| {result['p50_ms']} | {result['p99_ms']} | {result['p999_ms']} | {result.get('fsyncs_per_s', '-')} "
            f"| {result.get('appends_per_fsync', '-')} | {result.get('disk_bytes_per_produced_byte', '-')} |"
        )
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    finally:
        if node:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
