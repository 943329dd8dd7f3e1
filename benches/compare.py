#!/usr/bin/env python3
"""Strand against Apache Kafka, side by side on this machine, with one load generator.

For each workload, each system is started fresh (Strand: one or three nodes; Kafka 4.x
through benches/kafka/cluster.sh, once with its default lazy fsync and once durable, with
flush.messages=1), loaded with `loadgen` (benches/loadgen, librdkafka), sampled through
/proc/<pid>/{stat,status,io} before and after, and stopped. Results go to
benches/results/: latest.md (a table per workload: Strand, Kafka, ratio), latest.json
(everything loadgen printed, plus the samples) and PNG charts.

Workloads (issue 7):
  1. one node, RF 1, acks=1, 1 KiB records, 16 partitions, flat out
  2. three nodes, RF 3, acks=all, 1 KiB records, 16 partitions, flat out
  3. three nodes, RF 3, acks=all, 10,000 records/s of 1 KiB: publish and end-to-end latency
  4. three nodes, 1,000 partitions, RF 3, 1,000 records/s: latency, then idle CPU
  5. one node: a consumer reads 200 MB (--full: 1 GB) from the start of a topic, three times

    python3 benches/compare.py                      # --short: about 10 s of load per run
    python3 benches/compare.py --full --kafka-perf-test
    python3 benches/compare.py --workloads 1,3 --systems strand,kafka
    python3 benches/compare.py --record-size 100 --partitions 64 --many-partitions 2000
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import systems
from report import write_markdown, write_charts

REPO = Path(__file__).resolve().parents[1]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
PERF_TEST = REPO / "benches" / "kafka" / "perf-test.sh"

SYSTEM_LABELS = {
    "strand": "Strand",
    "kafka": "Kafka default",
    "kafka-durable": "Kafka durable",
}

# The same client settings for every system: 1 KiB records without keys (librdkafka's
# sticky partitioner fills one partition's batch at a time, as the Java client does for
# kafka-producer-perf-test and the OpenMessaging Benchmark's default NO_KEY workloads);
# linger and batch size as that benchmark's Kafka latency driver, with linger 5 ms (the
# Java client's default) rather than 1 ms.
def client(record_size, keys=0, compression="none", content="random"):
    return ["--record-size", str(record_size), "--keys", str(keys), "--linger-ms", "5",
            "--batch-size", "131072", "--compression", compression, "--content", content, "--producers", "1"]


def size_label(size):
    return f"{size // 1024:,} KiB" if size % 1024 == 0 else f"{size:,} B"


def workloads(record_size, partitions, many_partitions):
    """Each workload's title and node count. The issue's sizes are the defaults (1 KiB
    records, 16 partitions, 1,000 for workload 4); flags rerun them with others."""
    size, n, many = size_label(record_size), f"{partitions:,}", f"{many_partitions:,}"
    return {
        1: {"title": f"One node, RF 1, acks=1, {size} records, {n} partitions, flat out", "nodes": 1},
        2: {"title": f"Three nodes, RF 3, acks=all, {size} records, {n} partitions, flat out", "nodes": 3},
        3: {"title": f"Three nodes, RF 3, acks=all, 10,000 records/s of {size}, {n} partitions", "nodes": 3},
        4: {"title": f"Three nodes, {many} partitions, RF 3, acks=all, 1,000 records/s over 10,000 keys",
            "nodes": 3},
        5: {"title": f"One node: a consumer reads from the start of a {n}-partition topic", "nodes": 1},
    }

# prewarm: seconds of the workload's load before each measured run (into the same topic).
# Kafka's JVMs start cold and reach full speed only after several seconds of load (the
# JIT); Strand gets the same.
MODES = {
    "short": {"seconds": 10, "warmup": 3, "prewarm": 8, "consume_mb": 200, "idle_seconds": 10,
              "perf_seconds": 10},
    "full": {"seconds": 45, "warmup": 10, "prewarm": 20, "consume_mb": 1000, "idle_seconds": 30,
             "perf_seconds": 30},
}

# Free disk a run needs (GB): a flat-out replicated run writes ~110 MB/s to each of three
# nodes' disks for its prewarm and measured seconds, plus the perf test's topic. A disk that
# fills mid-run stops nodes (Strand) or stalls clients, which looks like a slow system.
MIN_FREE_GB = {"short": 15, "full": 60}


def free_gb(path) -> float:
    return shutil.disk_usage(path).free / 1e9


class Runner:
    def __init__(self, args, mode, workdir):
        self.args, self.mode, self.workdir = args, mode, Path(workdir)
        self.partitions = args.partitions

    def client(self, keys=0):
        return client(self.args.record_size, keys, getattr(self.args, "compression", "none"),
                      getattr(self.args, "content", "random"))

    def make_system(self, name, nodes, tag):
        if name == "strand":
            return systems.Strand(self.args.strand, self.workdir / tag, nodes, self.args.strand_base_port)
        return systems.Kafka(self.workdir / tag, nodes, durable=(name == "kafka-durable"))

    def loadgen(self, system, command, *args, timeout=600, label=None):
        cmd = [self.args.loadgen, command, "--bootstrap", system.bootstrap, *map(str, args)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        for line in out.stderr.splitlines():
            if line.startswith("loadgen"):
                print(f"    {label or ''}{line}", flush=True)
        if out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout)

    def create(self, system, topic, partitions, rf):
        return self.loadgen(system, "create-topic", "--topic", topic, "--partitions", partitions,
                            "--replication-factor", rf)["seconds"]

    def prewarm(self, system, partitions, rf, acks, keys=0, rate=None):
        """The workload's own load (flat out, or at its rate, so that no backlog is left
        behind) into its own topic, before anything is measured."""
        if self.mode["prewarm"] > 0:
            rate_args = ["--rate", rate] if rate else []
            self.loadgen(system, "produce", "--topic", "bench", "--partitions", partitions, "--replication-factor",
                         rf, "--acks", acks, "--seconds", self.mode["prewarm"], "--warmup", 0, *rate_args,
                         *self.client(keys), label="(prewarm) ")

    def produce_measured(self, system, command, *args):
        """Runs loadgen while sampling every node; the usage covers exactly this run."""
        before = systems.sample(system)
        result = self.loadgen(system, command, *args, timeout=self.mode["seconds"] + self.mode["warmup"] + 600)
        usage = systems.delta(before, systems.sample(system))
        return result, usage

    def perf_test(self, system, rf, acks, records_per_s):
        """kafka-producer-perf-test (the Java client's defaults, with our acks, linger and
        batch size) for about perf_seconds at the rate loadgen just reached."""
        self.create(system, "perf", self.partitions, rf)
        records = max(20_000, int(records_per_s * self.mode["perf_seconds"]))
        cmd = [str(PERF_TEST), "--topic", "perf", "--num-records", str(records),
               "--record-size", str(self.args.record_size),
               "--throughput", "-1", "--command-property", f"bootstrap.servers={system.bootstrap}",
               f"acks={acks}", "linger.ms=5", "batch.size=131072"]
        timeout = self.mode["perf_seconds"] * 6 + 120
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kept = keep_evidence(system, proc.pid)
            proc.kill()
            out, _ = proc.communicate()
            # Its progress lines (one per 5 s) say whether it stalled or crawled.
            last = out.strip().splitlines()[-3:]
            raise RuntimeError(f"timed out after {timeout} s; last progress: {' / '.join(last) or 'none'}; "
                               f"node logs and the client's threads in {kept}")
        return parse_perf_test(out)


def keep_evidence(system, java_pid):
    """Copies the nodes' logs and a thread dump of the stuck client where the run's files
    being deleted will not take them, and returns that directory."""
    kept = Path(tempfile.mkdtemp(prefix=f"strand-bench-evidence-{type(system).__name__.lower()}-"))
    dump = subprocess.run(["jstack", str(java_pid)], capture_output=True, text=True)
    (kept / "client-threads.txt").write_text(dump.stdout + dump.stderr)
    for log in Path(system.dir).glob("**/*.log"):
        if not log.name[0].isdigit():  # Kafka's segments (00000000000000000000.log) are data
            shutil.copy(log, kept / "-".join(log.relative_to(system.dir).parts))
    return kept


PERF_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th, (\d+) ms 99.9th")


def parse_perf_test(output):
    matches = PERF_LINE.findall(output)
    if not matches:
        return {"error": output.strip().splitlines()[-1] if output.strip() else "no output"}
    n, rps, mibps, avg, mx, p50, p95, p99, p999 = matches[-1]
    return {"records": int(n), "records_per_s": float(rps), "mib_per_s": float(mibps), "avg_ms": float(avg),
            "p50_ms": int(p50), "p95_ms": int(p95), "p99_ms": int(p99), "p999_ms": int(p999), "max_ms": float(mx)}


def publish_metrics(result, usage):
    lat = result["publish_latency_ms"]
    bytes_total = max(result["bytes_total"], 1)
    return {
        "records_per_s": result["records_per_s"],
        "mb_per_s": result["mb_per_s"],
        "publish_p50": lat["p50"], "publish_p99": lat["p99"], "publish_p999": lat["p999"], "publish_max": lat["max"],
        "cpu_s_per_gb": usage["cpu_s"] / (bytes_total / 1e9),
        "disk_per_byte": usage["write_bytes"] / bytes_total,
        "peak_mb": max(usage["peak_mb_per_node"], default=None),
        "errors": result["errors"],
    }


def e2e_metrics(result):
    lat = result["e2e_latency_ms"]
    return {"e2e_p50": lat["p50"], "e2e_p99": lat["p99"], "e2e_p999": lat["p999"], "e2e_max": lat["max"],
            "e2e_missing": result["e2e_missing"]}


def flat_out(runner, system, name, rf, acks):
    m = runner.mode
    runner.create(system, "bench", runner.partitions, rf)
    runner.prewarm(system, runner.partitions, rf, acks)
    result, usage = runner.produce_measured(
        system, "produce", "--topic", "bench", "--partitions", runner.partitions, "--replication-factor", rf,
        "--acks", acks, "--seconds", m["seconds"], "--warmup", m["warmup"], *runner.client())
    run = {"metrics": publish_metrics(result, usage), "loadgen": result, "usage": usage}
    if runner.args.kafka_perf_test:
        print("    kafka-producer-perf-test...", flush=True)
        try:  # the second opinion failing must not lose the first
            run["perf_test"] = runner.perf_test(system, rf, acks, result["records_per_s"])
        except Exception as e:
            run["perf_test"] = {"error": (str(e) or repr(e)).splitlines()[0][-300:]}
        print(f"    perf-test: {run['perf_test']}", flush=True)
    return run


def workload_1(runner, system, name):
    return flat_out(runner, system, name, rf=1, acks="1")


def workload_2(runner, system, name):
    return flat_out(runner, system, name, rf=3, acks="all")


def fixed_rate(runner, system, partitions, rate, keys=0):
    m = runner.mode
    create_s = runner.create(system, "bench", partitions, 3)
    runner.prewarm(system, partitions, 3, "all", keys, rate)
    result, usage = runner.produce_measured(
        system, "e2e", "--topic", "bench", "--partitions", partitions, "--replication-factor", 3, "--acks", "all",
        "--rate", rate, "--seconds", m["seconds"], "--warmup", m["warmup"], *runner.client(keys))
    metrics = {**publish_metrics(result, usage), **e2e_metrics(result)}
    return {"metrics": metrics, "loadgen": result, "usage": usage, "topic_create_s": create_s}


def workload_3(runner, system, name):
    return fixed_rate(runner, system, runner.partitions, 10_000)


def workload_4(runner, system, name):
    # 10,000 keys, so that records reach nearly all 1,000 partitions, not a sticky few.
    run = fixed_rate(runner, system, runner.args.many_partitions, 1_000, keys=10_000)
    for key in ("mb_per_s", "cpu_s_per_gb", "disk_per_byte"):  # too little data to mean much
        run["metrics"].pop(key)
    run["metrics"]["topic_create_s"] = run["topic_create_s"]
    # Idle: the producer is gone; what do 1,000 replicated partitions cost at rest?
    time.sleep(3)
    idle_s = runner.mode["idle_seconds"]
    before = systems.sample(system)
    time.sleep(idle_s)
    idle = systems.delta(before, systems.sample(system))
    per_node = [round(cpu / idle_s * 100, 1) for cpu in idle["cpu_s_per_node"]]
    run["idle"] = {"seconds": idle_s, "cpu_pct_per_node": per_node, **idle}
    run["metrics"]["idle_cpu_pct"] = sum(per_node) / max(len(per_node), 1)
    run["metrics"]["peak_mb"] = max(idle["peak_mb_per_node"], default=None)
    return run


CATCH_UP_READS = 3


def workload_5(runner, system, name):
    target = runner.mode["consume_mb"] * 1_000_000
    runner.create(system, "bench", runner.partitions, 1)
    fill, _ = runner.produce_measured(
        system, "produce", "--topic", "bench", "--partitions", runner.partitions, "--replication-factor", 1,
        "--acks", "1", "--records", target // runner.args.record_size + 1000, "--warmup", 0, *runner.client())
    time.sleep(2)
    # A read of a few hundred MB lasts a second or two, so one stall of the shared machine
    # swings it by half: read it CATCH_UP_READS times, each by a new consumer, and keep the
    # median read (its own CPU figures and series).
    in_order = [runner.produce_measured(system, "consume", "--topic", "bench", "--bytes", target)
                for _ in range(CATCH_UP_READS)]
    reads = sorted(in_order, key=lambda read: read[0]["mb_per_s"])
    result, usage = reads[len(reads) // 2]
    metrics = {
        "consume_mb_per_s": result["mb_per_s"],
        "consume_records_per_s": result["records_per_s"],
        "consume_first_s": result["first_record_s"],
        "consume_cpu_s_per_gb": usage["cpu_s"] / max(result["bytes"] / 1e9, 1e-9),
        "peak_mb": max(usage["peak_mb_per_node"], default=None),
        "fill_mb_per_s": fill["mb_per_s"],
        "errors": result["errors"] + fill["errors"],
    }
    return {"metrics": metrics, "loadgen": result, "fill": fill, "usage": usage,
            "each_read_mb_per_s": [read[0]["mb_per_s"] for read in in_order]}


RUNS = {1: workload_1, 2: workload_2, 3: workload_3, 4: workload_4, 5: workload_5}


def cpu_busy(seconds):
    """The fraction of all CPUs' time spent busy over the next `seconds` (/proc/stat)."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle, iowait
        return sum(fields), idle
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def settle(limit_s=90):
    """Waits, up to `limit_s`, until the machine is quiet: the page cache written back, then
    the CPUs at least 85% idle over two seconds. What the previous run leaves behind (a JVM
    exiting, its files still being written back) would otherwise load the next system's run
    and not its own. Returns the seconds waited."""
    started = time.monotonic()
    os.sync()
    while time.monotonic() - started < limit_s and cpu_busy(2.0) > 0.15:
        pass
    return round(time.monotonic() - started, 1)


def systems_for(workload, chosen):
    # Reading back does not depend on when Kafka fsyncs, and filling 1 GB durably on one
    # node takes minutes, so workload 5 compares Strand with Kafka's default only.
    return [s for s in chosen if not (workload == 5 and s == "kafka-durable")]


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return rev + (" (with uncommitted changes)" if dirty else "")
    except OSError:
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    length = ap.add_mutually_exclusive_group()
    length.add_argument("--short", dest="mode", action="store_const", const="short",
                        help="about 10 s of load per run, 200 MB for workload 5 (the default)")
    length.add_argument("--full", dest="mode", action="store_const", const="full",
                        help="45 s per run after a 10 s warm-up, 1 GB for workload 5")
    ap.add_argument("--workloads", default="1,2,3,4,5", help="comma-separated workload numbers")
    ap.add_argument("--systems", default="strand,kafka,kafka-durable", help="any of strand, kafka, kafka-durable")
    ap.add_argument("--kafka-perf-test", action="store_true",
                    help="also run Kafka's kafka-producer-perf-test against each system in workloads 1 and 2")
    ap.add_argument("--strand", default=os.environ.get("STRAND_BIN", str(TARGET / "release" / "strand")))
    ap.add_argument("--loadgen", default=str(TARGET / "release" / "loadgen"))
    ap.add_argument("--out", default=str(REPO / "benches" / "results"))
    ap.add_argument("--strand-base-port", type=int, default=systems.STRAND_BASE_PORT,
                    help="Strand node N serves Kafka on this + N - 1 (Raft +100, metrics +200)")
    ap.add_argument("--seconds", type=float, help="override the measured seconds of each run")
    ap.add_argument("--prewarm", type=float, help="override the seconds of load before each measured run")
    ap.add_argument("--record-size", type=int, default=1024, help="bytes per record (the issue's: 1024)")
    ap.add_argument("--partitions", type=int, default=16,
                    help="partitions of workloads 1, 2, 3 and 5 (the issue's: 16)")
    ap.add_argument("--many-partitions", type=int, default=1000,
                    help="partitions of workload 4 (the issue's: 1,000)")
    ap.add_argument("--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"],
                    help="the producer's compression.type")
    ap.add_argument("--content", default="random", choices=["random", "words"],
                    help="payloads: the same random bytes in every record, or fresh JSON-like words that compress")
    ap.add_argument("--keep-others", action="store_true",
                    help="keep the other workloads' results from the existing latest.json (re-run one workload)")
    args = ap.parse_args()
    mode_name = args.mode or "short"
    mode = dict(MODES[mode_name])
    if args.seconds:
        mode["seconds"] = args.seconds
    if args.prewarm is not None:
        mode["prewarm"] = args.prewarm

    if args.record_size < 16 or args.partitions < 1 or args.many_partitions < 1:
        sys.exit("--record-size must be at least 16 (end-to-end latency carries a timestamp in each record), "
                 "--partitions and --many-partitions at least 1")
    specs = workloads(args.record_size, args.partitions, args.many_partitions)
    chosen_workloads = [int(w) for w in args.workloads.split(",")]
    unknown = [w for w in chosen_workloads if w not in specs]
    if unknown:
        sys.exit(f"unknown workload(s) {unknown}: choose from 1 to 5")
    chosen = [s.strip() for s in args.systems.split(",")]
    for s in chosen:
        if s not in SYSTEM_LABELS:
            sys.exit(f"unknown system {s!r}: choose from {', '.join(SYSTEM_LABELS)}")
    for binary in (args.strand, args.loadgen):
        if not os.access(binary, os.X_OK):
            sys.exit(f"{binary} is missing: run `make build` (or cargo build --release --workspace --bins)")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    need = MIN_FREE_GB[mode_name]
    have = free_gb(tempfile.gettempdir())
    if have < need:
        sys.exit(f"only {have:.0f} GB free under {tempfile.gettempdir()}: a {mode_name} run needs {need} GB "
                 f"(remove old data, e.g. data/ or /tmp/strand-*, or point TMPDIR at a bigger disk)")
    results = {
        "meta": {
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": mode_name, "settings": mode, "revision": git_revision(), "cpus": os.cpu_count(),
            "client": client(args.record_size, 0, args.compression, args.content), "strand": args.strand, "kafka_version": os.environ.get("KAFKA_VERSION", "4.3.1"),
            "labels": SYSTEM_LABELS,
        },
        "workloads": {},
    }
    previous = out / "latest.json"
    if args.keep_others and previous.exists():
        kept = json.loads(previous.read_text())["workloads"]
        results["workloads"] = {w: data for w, data in kept.items() if int(w) not in chosen_workloads}
    workdir = tempfile.mkdtemp(prefix="strand-compare-")
    runner = Runner(args, mode, workdir)
    try:
        for w in chosen_workloads:
            spec = specs[w]
            results["workloads"][str(w)] = {"title": spec["title"], "runs": {},
                                             "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
            for name in systems_for(w, chosen):
                print(f"== workload {w}: {spec['title']} -- {SYSTEM_LABELS[name]}", flush=True)
                tag = f"w{w}-{name}"
                system = runner.make_system(name, spec["nodes"], tag)
                settled_s = settle()
                load_before = os.getloadavg()[0]
                disk_free = free_gb(runner.workdir)
                if disk_free < need:
                    print(f"    note: {disk_free:.0f} GB free before the run (wants {need}): it may fill the disk",
                          flush=True)
                if load_before > (os.cpu_count() or 1):
                    print(f"    note: load average {load_before:.1f} before the run: the machine is busy", flush=True)
                started = time.monotonic()
                try:
                    system.start()
                    run = RUNS[w](runner, system, name)
                except Exception as e:  # one failed run must not lose the others
                    print(f"    FAILED: {e}", flush=True)
                    run = {"error": str(e)}
                finally:
                    system.stop()
                    # A flat-out run leaves tens of GB: the next ones need the disk.
                    shutil.rmtree(runner.workdir / tag, ignore_errors=True)
                run["durability"] = system.durability
                run["load_average_before"] = round(load_before, 2)
                run["disk_free_gb_before"] = round(disk_free, 1)
                run["settled_s"] = settled_s
                run.setdefault("metrics", {})["load_average"] = round(load_before, 2)
                run["wall_s"] = round(time.monotonic() - started, 1)
                results["workloads"][str(w)]["runs"][name] = run
                # Written after every run, so an interrupted benchmark still leaves a table.
                (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
                write_markdown(out / "latest.md", results)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["meta"]["finished"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["workloads"] = dict(sorted(results["workloads"].items(), key=lambda item: int(item[0])))
    (out / "latest.json").write_text(json.dumps(results, indent=1) + "\n")
    write_charts(out, results)
    write_markdown(out / "latest.md", results)
    print(f"results: {out / 'latest.md'}")


if __name__ == "__main__":
    main()
