"""Turns benches/compare.py's results into benches/results/latest.md (Strand, Kafka and
their ratio per metric, the issue's targets, the kafka-producer-perf-test second opinion)
and the charts beside it."""

import importlib.util
from pathlib import Path

import charts

# (key, label, which way is better); the order is the order of the table rows.
METRICS = [
    ("records_per_s", "records/s", "higher"),
    ("mb_per_s", "MB/s", "higher"),
    ("publish_p50", "publish latency p50 (ms)", "lower"),
    ("publish_p99", "publish latency p99 (ms)", "lower"),
    ("publish_p999", "publish latency p99.9 (ms)", "lower"),
    ("publish_max", "publish latency max (ms)", "lower"),
    ("e2e_p50", "end-to-end latency p50 (ms)", "lower"),
    ("e2e_p99", "end-to-end latency p99 (ms)", "lower"),
    ("e2e_p999", "end-to-end latency p99.9 (ms)", "lower"),
    ("e2e_max", "end-to-end latency max (ms)", "lower"),
    ("e2e_missing", "acknowledged records the consumer did not see", "lower"),
    ("topic_create_s", "seconds to create the topic (every partition led)", "lower"),
    ("idle_cpu_pct", "idle CPU afterwards (% of a core per node, mean)", "lower"),
    ("consume_mb_per_s", "catch-up read MB/s (median of 3 reads)", "higher"),
    ("consume_records_per_s", "catch-up read records/s", "higher"),
    ("consume_first_s", "seconds to the first record", "lower"),
    ("consume_cpu_s_per_gb", "broker CPU-seconds per GB read", "lower"),
    ("fill_mb_per_s", "MB/s while filling the topic (acks=1, flat out)", "higher"),
    ("cpu_s_per_gb", "broker CPU-seconds per GB produced (all nodes)", "lower"),
    ("disk_per_byte", "bytes written to disk per byte produced (all nodes)", "lower"),
    ("peak_mb", "peak memory per node (MB, largest node)", "lower"),
    ("errors", "errors", None),
    ("load_average", "load average before the run (context, not a result)", None),
]

# The targets, as ratios Strand ÷ Kafka measured in the same run.
TARGETS = [
    ("throughput ≥ 1.5× Kafka's", ">=", 1.5,
     [(1, "records_per_s"), (2, "records_per_s"), (5, "consume_mb_per_s")]),
    ("p99 publish latency ≤ ½ Kafka's", "<=", 0.5, [(3, "publish_p99"), (4, "publish_p99")]),
    ("CPU per GB below Kafka's", "<", 1.0,
     [(1, "cpu_s_per_gb"), (2, "cpu_s_per_gb"), (3, "cpu_s_per_gb"), (5, "consume_cpu_s_per_gb")]),
    ("memory below Kafka's", "<", 1.0, [(w, "peak_mb") for w in (1, 2, 3, 4, 5)]),
]

KAFKAS = ["kafka", "kafka-durable"]


def fmt(value):
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def metric(results, workload, system, key):
    run = results["workloads"].get(str(workload), {}).get("runs", {}).get(system, {})
    return run.get("metrics", {}).get(key)


def ratio(strand, kafka):
    if strand is None or not kafka:
        return None
    return strand / kafka


def ratio_text(r):
    if r >= 10:
        return f"{r:.0f}×"
    return f"{r:.2f}×" if r >= 0.1 else f"{r:.2g}×"


def ratio_cell(r):
    return "–" if r is None else ratio_text(r)


def met(r, op, threshold):
    if r is None:
        return "–"
    ok = {">=": r >= threshold, "<=": r <= threshold, "<": r < threshold}[op]
    return f"{ratio_text(r)} {'✓' if ok else '✗'}"


def header(results):
    meta = results["meta"]
    settings = meta["settings"]
    lines = [
        "# Strand vs Apache Kafka: latest run",
        "",
        f"Written by `benches/compare.py --{meta['mode']}` (last run started {meta['started']}, "
        f"finished {meta.get('finished', 'not yet')}; each workload says when it ran), Strand at "
        f"{meta['revision']}, "
        f"Apache Kafka {meta['kafka_version']}. The machine has {meta['cpus']} CPUs, shared by every "
        "node and the load generator, so each system runs alone and starts fresh for every workload, "
        "after the machine has settled (page cache written back, CPUs 85% idle; up to 90 s); "
        "the load average before each run is in `latest.json`.",
        "",
        "Durability, and how to read the ratios (Strand ÷ Kafka):",
        "",
        "- **Strand** acknowledges a write only after it is fsynced (on a majority of replicas with "
        "RF 3); it has no other mode.",
        "- **Kafka default** acknowledges once the in-sync replicas have the write in memory and "
        "fsyncs lazily: less durable than Strand.",
        "- **Kafka durable** fsyncs every partition after every append (`log.flush.interval.messages=1`, "
        "the OpenMessaging Benchmark's `kafka-sync`): equal durability.",
        "",
        f"Client: `loadgen` (librdkafka, benches/loadgen) with `{' '.join(meta['client'])}`. "
        f"Each run measures {settings['seconds']:g} s after a {settings['warmup']:g} s warm-up, "
        f"preceded by {settings['prewarm']:g} s of flat-out load into the same topic (Kafka's JVMs "
        "start cold); "
        f"workload 5 reads {settings['consume_mb']:,} MB. Publish latency runs from when a record was "
        "due to its acknowledgement (flat out, that includes the wait in the client's 32 MiB buffer, "
        "as in kafka-producer-perf-test); end-to-end latency from when it was due to when the "
        "consumer had it. CPU, memory and disk figures come from `/proc/<pid>/{stat,status,io}` of "
        "every node, before and after the load generator ran.",
        "",
    ]
    return lines


def targets_table(results):
    lines = ["## Targets", "", "| Target | Workload | vs Kafka default | vs Kafka durable |", "|---|---|---|---|"]
    for name, op, threshold, cells in TARGETS:
        for workload, key in cells:
            strand = metric(results, workload, "strand", key)
            row = [met(ratio(strand, metric(results, workload, k, key)), op, threshold) for k in KAFKAS]
            if all(c == "–" for c in row):
                continue
            lines.append(f"| {name} | {workload} | {row[0]} | {row[1]} |")
    return lines + [""]


def workload_table(results, workload, data, out_dir):
    runs = data["runs"]
    lines = [f"## {workload}. {data['title']}", ""]
    if data.get("started"):
        lines += [f"Run {data['started']}.", ""]
    lines += ["| Metric | Strand | Kafka default | Strand ÷ Kafka default | Kafka durable | Strand ÷ Kafka durable |",
              "|---|---|---|---|---|---|"]
    for key, label, better in METRICS:
        values = {s: metric(results, workload, s, key) for s in ("strand", *KAFKAS)}
        if all(v is None for v in values.values()):
            continue
        cells = [fmt(values["strand"])]
        for k in KAFKAS:
            cells.append(fmt(values[k]) if k in runs else "not run")
            cells.append(ratio_cell(ratio(values["strand"], values[k])) if better else "")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    failed = [f"{s}: {r['error'].splitlines()[0]}" for s, r in runs.items() if "error" in r]
    if failed:
        lines += ["", "Failed: " + "; ".join(failed)]
    idle = [f"{s} {r['idle']['cpu_pct_per_node']}" for s, r in runs.items() if "idle" in r]
    if idle:
        lines += ["", "Idle CPU per node (% of a core): " + "; ".join(idle)]
    reads = [f"{s} {r['each_read_mb_per_s']}" for s, r in runs.items() if "each_read_mb_per_s" in r]
    if reads:
        lines += ["", "Each catch-up read in the order read (MB/s; the first one after the fill): " + "; ".join(reads)]
    images = [f"![{kind}]({name})" for kind, name in
              (("latency percentiles", f"w{workload}-latency.png"), ("throughput over time", f"w{workload}-throughput.png"))
              if (Path(out_dir) / name).exists()]
    if images:
        lines += ["", " ".join(images)]
    return lines + [""]


def perf_test_table(results):
    rows = []
    for workload, data in results["workloads"].items():
        for system, run in data["runs"].items():
            p = run.get("perf_test")
            if not p:
                continue
            label = results["meta"]["labels"][system]
            if "error" in p:
                rows.append(f"| {workload} | {label} | failed: {p['error']} | | | | | |")
                continue
            rows.append(f"| {workload} | {label} | {p['records_per_s']:,.0f} | {p['mib_per_s']:.1f} | {p['p50_ms']} "
                        f"| {p['p99_ms']} | {p['p999_ms']} | {p['max_ms']:.0f} |")
    if not rows:
        return []
    return ["## Second opinion: kafka-producer-perf-test", "",
            "Kafka's own Java producer benchmark against each system, right after loadgen, for about the same "
            "time (Java client defaults, idempotent, plus the same acks, `linger.ms=5`, `batch.size=131072`; "
            "no keys). MiB/s as the tool prints it.", "",
            "| Workload | System | records/s | MiB/s | p50 ms | p99 ms | p99.9 ms | max ms |",
            "|---|---|---|---|---|---|---|---|", *rows, ""]


def write_markdown(path, results):
    lines = header(results) + targets_table(results)
    for workload, data in results["workloads"].items():
        lines += workload_table(results, int(workload), data, Path(path).parent)
    lines += perf_test_table(results)
    Path(path).write_text("\n".join(lines) + "\n")


def write_charts(out_dir, results):
    """One latency-percentile chart and one throughput-over-time chart per workload."""
    if importlib.util.find_spec("matplotlib") is None:
        print("matplotlib is not installed: no charts (pip install -r benches/requirements.txt)")
        return
    labels = results["meta"]["labels"]
    warmup = results["meta"]["settings"]["warmup"]
    colours = {system: f"C{i}" for i, system in enumerate(labels)}
    for workload, data in results["workloads"].items():
        curves, styles, series = {}, {}, {}
        for system, run in data["runs"].items():
            lg = run.get("loadgen")
            if not lg:
                continue
            if lg.get("publish_percentiles_ms"):
                name = f"{labels[system]} publish"
                curves[name] = lg["publish_percentiles_ms"]
                styles[name] = {"color": colours[system]}
            if lg.get("e2e_percentiles_ms"):
                name = f"{labels[system]} end-to-end"
                curves[name] = lg["e2e_percentiles_ms"]
                styles[name] = {"color": colours[system], "linestyle": "--", "marker": "x"}
            if lg.get("series") and workload != "4":
                series[labels[system]] = (lg["series"]["interval_s"], lg["series"]["mb_per_s"])
        title = f"{workload}. {data['title']}"
        if curves:
            charts.latency_chart(Path(out_dir) / f"w{workload}-latency.png", title, curves, styles)
        if series:
            charts.throughput_chart(Path(out_dir) / f"w{workload}-throughput.png", title, series,
                                    warmup_s=None if workload == "5" else warmup)
