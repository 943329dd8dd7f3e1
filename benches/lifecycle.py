#!/usr/bin/env python3
"""What deleting data costs, Strand against Apache Kafka on this machine (issue 27):

  retention    workloads 1 and 2 of compare.py (one node RF 1 acks=1; three nodes RF 3
               acks=all; 1 KiB records, 16 partitions, flat out) into a topic whose
               retention.ms keeps about a minute of data, after enough load that retention
               deletes as fast as the producer writes; Strand also without retention.
  compaction   one node, a topic with cleanup.policy=compact written flat out with 10,000
               keys and 1 KiB values (producer throughput while the cleaner runs); then
               MB/s cleaned: a second topic filled with the same records under
               cleanup.policy=delete is switched to compact, and the clock runs until every
               partition has shrunk to its keys' last records (plus Kafka's active segment,
               which Kafka never cleans).

Each system starts fresh per run, as in compare.py; results go to
benches/results/lifecycle.md and lifecycle.json, as ratios Strand ÷ Kafka from one run.

    python3 benches/lifecycle.py                         # both parts (make bench-lifecycle)
    python3 benches/lifecycle.py --parts compaction --systems strand,kafka-durable
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, ResourceType
from kafka import KafkaAdminClient

import systems
from compare import SYSTEM_LABELS, TARGET, Runner, git_revision, publish_metrics, settle

REPO = Path(__file__).resolve().parents[1]
RECORD_SIZE = 1024
PARTITIONS = 16
KEYS = 10_000
# Kafka deletes and cleans whole segments and never its active one, so its topics need
# segments far smaller than the 1 GiB default to show either within minutes. Strand's unit
# is the record batch; it stores segment.bytes without using it.
SEGMENT_BYTES = 16 * 1024 * 1024
RETENTION_MS = 60_000
# How often each system looks for work: Kafka's log.retention.check.interval.ms (5 minutes
# by default) and log.cleaner.backoff.ms, and Strand's flags of the same names.
CHECK_MS = 5_000
CLEANER_BACKOFF_MS = 1_000
# Retention must have started deleting before anything is measured.
PREWARM_S = RETENTION_MS / 1000 + 20
SECONDS, WARMUP = 30, 10
DIRTY_BYTES = 1_000_000_000


def make_system(name, workdir, nodes, tag, base_port):
    if name == "strand":
        return systems.Strand(args.strand, workdir / tag, nodes, base_port, extra_config={
            "log-retention-check-interval-ms": CHECK_MS, "log-cleaner-backoff-ms": CLEANER_BACKOFF_MS})
    return systems.Kafka(workdir / tag, nodes, durable=(name == "kafka-durable"), extra_props={
        "log.retention.check.interval.ms": CHECK_MS, "log.cleaner.backoff.ms": CLEANER_BACKOFF_MS})


def topic_configs(**configs):
    return [arg for key, value in configs.items() for arg in ("--topic-config", f"{key.replace('_', '.')}={value}")]


def create(runner, system, topic, rf, configs):
    runner.loadgen(system, "create-topic", "--topic", topic, "--partitions", PARTITIONS,
                   "--replication-factor", rf, *configs)


def flat_out(runner, system, rf, acks, configs, keys=0, prewarm=PREWARM_S):
    """Fills the topic for `prewarm` seconds, then measures SECONDS of the same load."""
    create(runner, system, "bench", rf, configs)
    common = ["--topic", "bench", "--partitions", PARTITIONS, "--replication-factor", rf, "--acks", acks,
              *runner.client(keys)]
    runner.loadgen(system, "produce", *common, "--seconds", prewarm, "--warmup", 0, label="(prewarm) ",
                   timeout=prewarm + 600)
    result, usage = runner.produce_measured(system, "produce", *common, "--seconds", SECONDS, "--warmup", WARMUP)
    metrics = publish_metrics(result, usage)
    metrics["log_start_moved"] = sum(1 for start in log_starts(system, "bench") if start > 0)
    metrics["stored_gb"] = topic_bytes(system, "bench") / 1e9
    return {"metrics": metrics, "loadgen": result, "usage": usage}


def log_starts(system, topic):
    """Each partition's earliest offset (ListOffsets)."""
    consumer = Consumer({"bootstrap.servers": system.bootstrap, "group.id": "lifecycle-bench"})
    try:
        return [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in range(PARTITIONS)]
    finally:
        consumer.close()


def partition_bytes(system, topic):
    """Each partition's stored bytes, from DescribeLogDirs (the largest replica's)."""
    admin = KafkaAdminClient(bootstrap_servers=system.bootstrap.split(","), request_timeout_ms=10_000)
    try:
        sizes = {}
        for broker in admin.describe_log_dirs(topic_partitions=[topic]):
            for log_dir in broker["log_dirs"]:
                for found in log_dir["topics"]:
                    for p in found["partitions"] if found["name"] == topic else []:
                        index = p["partition_index"]
                        sizes[index] = max(sizes.get(index, 0), p["partition_size"])
        return sizes
    finally:
        admin.close()


def topic_bytes(system, topic):
    return sum(partition_bytes(system, topic).values())


def compaction(runner, system):
    """Producer throughput to a compacted topic, then MB/s cleaned."""
    run = flat_out(runner, system, 1, "1", topic_configs(cleanup_policy="compact", segment_bytes=SEGMENT_BYTES),
                   keys=KEYS, prewarm=20)
    run["metrics"].pop("log_start_moved")

    create(runner, system, "dirty", 1, topic_configs(cleanup_policy="delete", retention_ms=-1,
                                                     segment_bytes=SEGMENT_BYTES))
    runner.loadgen(system, "produce", "--topic", "dirty", "--partitions", PARTITIONS, "--replication-factor", 1,
                   "--acks", "1", "--records", DIRTY_BYTES // RECORD_SIZE, "--warmup", 0, *runner.client(KEYS),
                   label="(fill) ")
    before = topic_bytes(system, "dirty")
    # Cleaned: every key's last record (its share of KEYS per partition) plus, for Kafka, up
    # to a segment it does not clean; Strand keeps an emptied batch's header.
    done_below = SEGMENT_BYTES + 4 * KEYS * RECORD_SIZE // PARTITIONS
    admin = AdminClient({"bootstrap.servers": system.bootstrap})
    change = ConfigResource(ResourceType.TOPIC, "dirty", incremental_configs=[
        ConfigEntry("cleanup.policy", "compact", incremental_operation=AlterConfigOpType.SET)])
    started = time.monotonic()
    for future in admin.incremental_alter_configs([change]).values():
        future.result(30)
    def clean(sizes):
        return len(sizes) == PARTITIONS and all(size < done_below for size in sizes.values())

    sizes = {}
    while time.monotonic() - started < 900:
        sizes = partition_bytes(system, "dirty")
        if clean(sizes):
            break
        time.sleep(1)
    seconds = time.monotonic() - started
    cleaned = clean(sizes)
    after = sum(sizes.values())
    # What the cleaner removed per second: Kafka's uncleaned active segment is not credited.
    run["metrics"].update({
        "cleaned_mb_per_s": (before - after) / 1e6 / seconds if cleaned else None,
        "clean_seconds": seconds if cleaned else None,
        "dirty_mb": before / 1e6, "cleaned_mb": after / 1e6,
    })
    run["cleaning"] = {"before_bytes": before, "after_bytes": after, "seconds": seconds, "finished": cleaned}
    return run


METRICS = [
    ("records_per_s", "records/s", "higher"),
    ("mb_per_s", "MB/s", "higher"),
    ("publish_p99", "publish latency p99 (ms)", "lower"),
    ("cpu_s_per_gb", "broker CPU-seconds per GB produced (all nodes)", "lower"),
    ("disk_per_byte", "bytes written to disk per byte produced (all nodes)", "lower"),
    ("peak_mb", "peak memory per node (MB, largest node)", "lower"),
    ("stored_gb", "topic size at the end (GB, DescribeLogDirs)", "lower"),
    ("log_start_moved", "partitions whose log start moved", None),
    ("dirty_mb", "MB written to the topic switched to compact", None),
    ("clean_seconds", "seconds from the switch until every partition was clean", "lower"),
    ("cleaned_mb_per_s", "MB/s cleaned (MB removed per second)", "higher"),
    ("cleaned_mb", "MB left after cleaning", None),
    ("errors", "errors", None),
]


def median_run(runs, run):
    """Adds `run` to the repeated runs of one system and returns the one with the median
    throughput (the lower middle one of an even number)."""
    runs.append(run)
    ranked = sorted(runs, key=lambda r: r.get("metrics", {}).get("records_per_s") or 0)
    return ranked[(len(ranked) - 1) // 2]


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}" if abs(value) >= 10 else f"{value:.2f}"


def write_markdown(path, results):
    lines = [
        "# Data lifecycle: Strand vs Apache Kafka", "",
        f"Written by `benches/lifecycle.py`, Strand at {results['meta']['revision']}, Apache Kafka {results['meta']['kafka_version']}, on a machine with "
        f"{results['meta']['cpus']} CPUs shared by every node and the load generator. Client: `loadgen` as in "
        f"latest.md; each run measures {SECONDS} s after a {WARMUP} s warm-up. Every system checks retention "
        f"every {CHECK_MS} ms and looks for cleaning work every {CLEANER_BACKOFF_MS} ms; topics have "
        f"segment.bytes={SEGMENT_BYTES} (Kafka deletes and cleans whole segments, never the active one; Strand "
        "ignores it). Strand fsyncs before every acknowledgement; Kafka durable fsyncs every append (equal "
        "durability); Kafka default fsyncs lazily.", ""]
    for part in results["parts"].values():
        runs = part["runs"]
        names = list(runs)
        lines += [f"## {part['title']}", "", f"Run {part.get('started', '')}. {part['about']}", ""]
        header = "| Metric | " + " | ".join(runs[n]["label"] for n in names) + " |"
        lines += [header, "|---|" + "---|" * len(names)]
        for key, label, _ in METRICS:
            values = [runs[n].get("metrics", {}).get(key) for n in names]
            if all(v is None for v in values):
                continue
            lines.append(f"| {label} | " + " | ".join(fmt(v) for v in values) + " |")
        for n in names:
            if "error" in runs[n]:
                lines.append(f"\n{runs[n]['label']} failed: {runs[n]['error'][:300]}")
        ratios = []
        for title, a, b, key in part.get("ratios", []):
            va, vb = (runs.get(x, {}).get("metrics", {}).get(key) for x in (a, b))
            if va and vb:
                ratios.append(f"- {title}: **{va / vb:.2f}×**")
        for n in names:
            repeats = part.get("repeats", {}).get(n, [])
            if len(repeats) > 1:
                each = ", ".join(fmt(r.get("metrics", {}).get("records_per_s")) for r in repeats)
                ratios.append(f"- {runs[n]['label']}, records/s of each run in turn (the table shows the median): "
                              f"{each}")
        lines += [""] + ratios + [""]
    Path(path).write_text("\n".join(lines))


def main():
    global args
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="retention,compaction", help="retention, compaction or both")
    ap.add_argument("--systems", default="strand,kafka-durable,kafka", help="any of strand, kafka, kafka-durable")
    ap.add_argument("--strand", default=os.environ.get("STRAND_BIN", str(TARGET / "release" / "strand")))
    ap.add_argument("--loadgen", default=str(TARGET / "release" / "loadgen"))
    ap.add_argument("--out", default=str(REPO / "benches" / "results"))
    ap.add_argument("--strand-base-port", type=int, default=systems.STRAND_BASE_PORT)
    ap.add_argument("--workloads", default="1,2", help="the retention part's workloads: 1, 2 or both")
    ap.add_argument("--repeat", type=int, default=1,
                    help="runs of Strand with and without retention, interleaved; the tables show the median")
    args = ap.parse_args()
    args.record_size, args.partitions, args.kafka_perf_test = RECORD_SIZE, PARTITIONS, False
    chosen = [s.strip() for s in args.systems.split(",")]
    parts = [p.strip() for p in args.parts.split(",")]
    if unknown := [s for s in chosen if s not in SYSTEM_LABELS] + [p for p in parts
                                                                  if p not in ("retention", "compaction")]:
        sys.exit(f"unknown system or part {unknown}: systems are strand, kafka, kafka-durable; "
                 "parts are retention, compaction")
    for binary in (args.strand, args.loadgen):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is missing: run `make build`")

    plan = []  # (part, run key, label, system, nodes, body)
    retained = topic_configs(retention_ms=RETENTION_MS, segment_bytes=SEGMENT_BYTES)
    if "retention" in parts:
        chosen_workloads = {int(w) for w in args.workloads.split(",")}
        for w, nodes, rf, acks in ((1, 1, 1, "1"), (2, 3, 3, "all")):
            if w not in chosen_workloads:
                continue
            part = f"retention-w{w}"
            for name in chosen:
                # Strand against itself is the closest ratio, so its runs are repeated in turns.
                for _ in range(args.repeat if name == "strand" else 1):
                    if name == "strand":
                        plan.append((part, "strand-forever", "Strand, kept forever", name, nodes,
                                     lambda r, s, rf=rf, acks=acks: flat_out(r, s, rf, acks, [])))
                    plan.append((part, name, f"{SYSTEM_LABELS[name]}, retention", name, nodes,
                                 lambda r, s, rf=rf, acks=acks: flat_out(r, s, rf, acks, retained)))
    if "compaction" in parts:
        for name in chosen:
            plan.append(("compaction", name, SYSTEM_LABELS[name], name, 1, compaction))

    about = {
        "retention-w1": ("Retention, workload 1: one node, RF 1, acks=1, flat out",
                         f"retention.ms={RETENTION_MS}; {PREWARM_S:.0f} s of load before the measured run, so "
                         "retention is deleting throughout it."),
        "retention-w2": ("Retention, workload 2: three nodes, RF 3, acks=all, flat out",
                         f"retention.ms={RETENTION_MS}; {PREWARM_S:.0f} s of load before the measured run."),
        "compaction": ("Compaction: one node, RF 1, acks=1, 10,000 keys, 1 KiB values",
                       "A compacted topic written flat out (20 s of load first), then "
                       f"{DIRTY_BYTES / 1e9:.0f} GB of the same records under cleanup.policy=delete switched to "
                       "compact and timed until every partition holds little more than its keys' last records."),
    }
    ratios = {
        "retention-w1": [("Strand with retention ÷ without (target ≥ 0.95)", "strand", "strand-forever",
                          "records_per_s"),
                         ("Strand ÷ Kafka durable, both with retention (target ≥ 1.5)", "strand", "kafka-durable",
                          "records_per_s"),
                         ("Strand ÷ Kafka default, both with retention", "strand", "kafka", "records_per_s")],
        "compaction": [("producer throughput, Strand ÷ Kafka durable", "strand", "kafka-durable", "records_per_s"),
                       ("producer throughput, Strand ÷ Kafka default", "strand", "kafka", "records_per_s"),
                       ("MB/s cleaned, Strand ÷ Kafka durable", "strand", "kafka-durable", "cleaned_mb_per_s"),
                       ("MB/s cleaned, Strand ÷ Kafka default", "strand", "kafka", "cleaned_mb_per_s")],
    }
    ratios["retention-w2"] = ratios["retention-w1"]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"meta": {"started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
                        "revision": git_revision(), "cpus": os.cpu_count(),
                        "kafka_version": os.environ.get("KAFKA_VERSION", "4.3.1")},
               "parts": {}}
    workdir = Path(tempfile.mkdtemp(prefix="strand-lifecycle-"))
    runner = Runner(args, {"prewarm": 0, "seconds": SECONDS, "warmup": WARMUP}, workdir)
    try:
        for part, key, label, name, nodes, body in plan:
            title, text = about[part]
            entry = results["parts"].setdefault(part, {
                "title": title, "about": text, "runs": {}, "ratios": ratios[part],
                "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")})
            print(f"== {title} -- {label}", flush=True)
            tag = f"{part}-{key}"
            system = make_system(name, workdir, nodes, tag, args.strand_base_port)
            settle()
            started = time.monotonic()
            try:
                system.start()
                run = body(runner, system)
            except Exception as e:  # one failed run must not lose the others
                print(f"    FAILED: {e}", flush=True)
                run = {"error": str(e)}
            finally:
                system.stop()
                shutil.rmtree(workdir / tag, ignore_errors=True)
            run["label"], run["durability"] = label, system.durability
            run["wall_s"] = round(time.monotonic() - started, 1)
            print(f"    {json.dumps(run.get('metrics', {}))}", flush=True)
            entry["runs"][key] = median_run(entry.setdefault("repeats", {}).setdefault(key, []), run)
            (out / "lifecycle.json").write_text(json.dumps(results, indent=1) + "\n")
            write_markdown(out / "lifecycle.md", results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"results: {out / 'lifecycle.md'}")


if __name__ == "__main__":
    main()
