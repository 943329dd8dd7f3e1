//! The human side of a result: `report.md` (verdict, anomalies, liveness per fault kind)
//! and `timeline.svg`, throughput and send latency over time with the fault windows
//! shaded, so a reader sees at a glance what each fault did to the cluster.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use crate::check::{Anomaly, Report};
use crate::history::{end_time, Op, OpType, Process};

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 60.0;
const PANEL: f64 = 180.0;
const GAP: f64 = 40.0;
const TOP: f64 = 30.0;

/// Per second of the run: acknowledged sends and polls, and the median and worst latency
/// of the sends acknowledged in it (milliseconds).
#[derive(Debug, Clone, Default)]
struct Second {
    sends: usize,
    polls: usize,
    latencies: Vec<f64>,
}

fn per_second(history: &[Op]) -> Vec<Second> {
    let end = end_time(history);
    let mut seconds = vec![Second::default(); (end / 1_000_000_000) as usize + 1];
    let mut invoked: HashMap<Process, u64> = HashMap::new();
    for op in history {
        if op.kind == OpType::Invoke {
            invoked.insert(op.process, op.time);
            continue;
        }
        if op.kind != OpType::Ok || op.is_nemesis() {
            continue;
        }
        let slot = &mut seconds[(op.time / 1_000_000_000) as usize];
        match op.f.as_str() {
            "send" => {
                slot.sends += 1;
                if let Some(start) = invoked.get(&op.process) {
                    slot.latencies
                        .push(op.time.saturating_sub(*start) as f64 / 1e6);
                }
            }
            "poll" => slot.polls += 1,
            _ => {}
        }
    }
    seconds
}

fn fault_colour(kind: &str) -> &'static str {
    match kind.split('-').next() {
        Some("kill") => "#f3b0b0",
        Some("pause") => "#b0cdf3",
        Some("partition") => "#f3dcaa",
        _ => "#dddddd",
    }
}

/// The timeline as an SVG document.
fn timeline(history: &[Op], report: &Report) -> String {
    let seconds = per_second(history);
    let span = seconds.len().max(1) as f64;
    let x = |t: f64| LEFT + t / span * (WIDTH - LEFT - 20.0);
    let height = TOP + 2.0 * PANEL + GAP + 40.0;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    // Fault windows across both panels.
    for w in &report.liveness.windows {
        let _ = writeln!(
            svg,
            r#"<rect x="{:.1}" y="{TOP}" width="{:.1}" height="{:.1}" fill="{}" opacity="0.7"><title>{} {:.1}-{:.1} s</title></rect>"#,
            x(w.start),
            (x(w.stop) - x(w.start)).max(1.0),
            2.0 * PANEL + GAP,
            fault_colour(&w.kind),
            w.kind,
            w.start,
            w.stop
        );
    }
    // Panel 1: acknowledged operations per second.
    let top1 = TOP;
    let max_rate = seconds
        .iter()
        .map(|s| s.sends.max(s.polls))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let y1 = |v: f64| top1 + PANEL - v / max_rate * PANEL;
    for (name, colour, pick) in [
        (
            "sends/s",
            "#1f5fbf",
            (|s: &Second| s.sends) as fn(&Second) -> usize,
        ),
        ("polls/s", "#2a9d4a", |s: &Second| s.polls),
    ] {
        let points: Vec<String> = seconds
            .iter()
            .enumerate()
            .map(|(t, s)| format!("{:.1},{:.1}", x(t as f64 + 0.5), y1(pick(s) as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"><title>{name}</title></polyline>"#,
            points.join(" ")
        );
    }
    axis(
        &mut svg,
        top1,
        &format!("acknowledged ops/s (max {max_rate:.0})"),
        &[
            (y1(0.0), "0".into()),
            (y1(max_rate / 2.0), format!("{:.0}", max_rate / 2.0)),
            (y1(max_rate), format!("{max_rate:.0}")),
        ],
    );
    // Panel 2: send latency, log scale from 1 ms to 100 s.
    let top2 = TOP + PANEL + GAP;
    let y2 = |ms: f64| top2 + PANEL - (ms.clamp(1.0, 1e5).log10() / 5.0) * PANEL;
    for (t, s) in seconds.iter().enumerate() {
        let mut l = s.latencies.clone();
        if l.is_empty() {
            continue;
        }
        l.sort_by(f64::total_cmp);
        let (median, worst) = (l[l.len() / 2], l[l.len() - 1]);
        let cx = x(t as f64 + 0.5);
        let _ = writeln!(
            svg,
            r##"<circle cx="{cx:.1}" cy="{:.1}" r="1.8" fill="#333"/><circle cx="{cx:.1}" cy="{:.1}" r="1.8" fill="#d62728"/>"##,
            y2(median),
            y2(worst)
        );
    }
    axis(
        &mut svg,
        top2,
        "send latency, ms (black median, red max per second)",
        &[1.0, 10.0, 100.0, 1000.0, 10000.0, 100000.0].map(|ms| (y2(ms), format!("{ms}"))),
    );
    // Time axis and legend.
    let bottom = top2 + PANEL;
    let step = if span > 600.0 {
        60
    } else if span > 120.0 {
        20
    } else {
        10
    };
    for t in (0..=span as usize).step_by(step) {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{t} s</text>"#,
            x(t as f64),
            bottom + 14.0
        );
    }
    let mut legend_x = LEFT;
    for (label, colour) in [
        ("kill", "#f3b0b0"),
        ("pause", "#b0cdf3"),
        ("partition", "#f3dcaa"),
    ] {
        let _ = writeln!(
            svg,
            r#"<rect x="{legend_x}" y="{:.1}" width="12" height="10" fill="{colour}"/><text x="{}" y="{:.1}">{label}</text>"#,
            bottom + 22.0,
            legend_x + 16.0,
            bottom + 31.0
        );
        legend_x += 90.0;
    }
    svg.push_str("</svg>\n");
    svg
}

fn axis(svg: &mut String, top: f64, title: &str, ticks: &[(f64, String)]) {
    let _ = writeln!(
        svg,
        r##"<line x1="{LEFT}" y1="{top}" x2="{LEFT}" y2="{:.1}" stroke="#555"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#555"/><text x="{LEFT}" y="{:.1}" font-weight="bold">{title}</text>"##,
        top + PANEL,
        top + PANEL,
        WIDTH - 20.0,
        top + PANEL,
        top - 6.0
    );
    for (y, label) in ticks {
        let _ = writeln!(
            svg,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            LEFT - 4.0,
            y + 4.0
        );
    }
}

/// The short human-readable report.
fn markdown(report: &Report) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Jepsen queue test\n");
    let _ = writeln!(md, "`{}`\n", report.summary());
    let _ = writeln!(
        md,
        "**{}**: {} acknowledged sends, {} faults.\n",
        if report.valid { "Valid" } else { "INVALID" },
        report.acknowledged_sends,
        report.faults
    );
    for error in &report.nemesis_errors {
        let _ = writeln!(md, "The nemesis stopped early: {error}\n");
    }
    if !report.anomalies.is_empty() {
        let _ = writeln!(md, "| anomaly | count | makes it invalid |\n|---|---|---|");
        for (name, a) in &report.anomalies {
            let _ = writeln!(
                md,
                "| {name} | {} | {} |",
                a.count,
                report.bad.contains(name)
            );
        }
        let _ = writeln!(md, "\nExamples are in `results.json`.\n");
    }
    let live = &report.liveness;
    let _ = writeln!(
        md,
        "Outside faults: {:.0} acknowledged operations per second.\n",
        live.ok_per_second_outside_faults
    );
    let _ = writeln!(
        md,
        "| fault | count | median rate kept during it | median recovery (s) | worst recovery (s) |\n|---|---|---|---|---|"
    );
    let secs = |s: Option<f64>| s.map_or("-".to_string(), |s| format!("{s:.2}"));
    for (kind, k) in &live.by_kind {
        let _ = writeln!(
            md,
            "| {kind} | {} | {:.0}% | {} | {} |",
            k.count,
            k.median_rate_kept * 100.0,
            secs(k.median_recovery_seconds),
            secs(k.max_recovery_seconds)
        );
    }
    let _ = writeln!(
        md,
        "\nRecovery: seconds from the fault's end to the next acknowledged send.\n\n![timeline](timeline.svg)"
    );
    md
}

/// How far before an anomalous operation [`explain`] looks for faults and client notices.
const LOOK_BACK_NS: u64 = 10_000_000_000;

/// What an invalid run's log must show for its anomalies to be traced without its
/// files (CI keeps only the output): for the first examples of each anomaly that makes
/// the run invalid, the operation's process and time, the faults around it, and that
/// process's lines of `clients.log` (librdkafka's warnings and seeks) just before it.
pub fn explain(history: &[Op], report: &Report, clients_log: &str) -> String {
    let mut out = String::new();
    for (name, anomaly, examples) in explained(report) {
        let _ = writeln!(out, "{name}: {} in all", anomaly.count);
        for example in examples {
            let _ = writeln!(out, "  example {example}");
            let Some(op) = example["op"]
                .as_u64()
                .and_then(|index| history.iter().find(|op| op.index == index))
            else {
                continue;
            };
            let (from, to) = (op.time.saturating_sub(LOOK_BACK_NS), op.time);
            let _ = writeln!(
                out,
                "    op {} by process {:?} completed at {:.3} s: {}",
                op.index,
                op.process,
                op.time as f64 / 1e9,
                reads_of(&op.value, &example["key"])
            );
            for w in &report.liveness.windows {
                if w.start * 1e9 <= to as f64 && w.stop * 1e9 >= from as f64 {
                    let _ = writeln!(out, "    fault {} {:.3}-{:.3} s", w.kind, w.start, w.stop);
                }
            }
            let process = match op.process {
                Process::Worker(id) => id.to_string(),
                Process::Nemesis(_) => continue,
            };
            let notices: Vec<&str> = clients_log
                .lines()
                .filter(|line| {
                    let mut fields = line.splitn(3, ' ');
                    let time = fields.next().and_then(|t| t.parse::<u64>().ok());
                    time.is_some_and(|t| (from..=to).contains(&t))
                        && fields.next() == Some(process.as_str())
                })
                .collect();
            for line in &notices[notices.len().saturating_sub(12)..] {
                let _ = writeln!(out, "    client {line}");
            }
        }
    }
    out
}

/// The anomalies that make the run invalid, each with the examples an explanation
/// shows: its first three.
fn explained(report: &Report) -> impl Iterator<Item = (&String, &Anomaly, &[Value])> {
    report.bad.iter().filter_map(|name| {
        let anomaly = report.anomalies.get(name)?;
        Some((
            name,
            anomaly,
            &anomaly.examples[..anomaly.examples.len().min(3)],
        ))
    })
}

/// The partitions (keys) of the anomalous operations (polls, sends) among the examples
/// [`explain`] shows: the ones whose consumers' positions [`node_notices`] traces.
pub fn explained_keys(report: &Report) -> Vec<u64> {
    let mut keys: Vec<u64> = explained(report)
        .flat_map(|(_, _, examples)| examples)
        .filter(|example| example["op"].is_u64())
        .filter_map(|example| example["key"].as_u64())
        .collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// The lines of the nodes' logs (`(node, text)`) about partition `key` that can move a
/// consumer's position: fetches answered out of range and leader-epoch ends, the last few
/// per node (see `cluster::NODE_LOG`). Given the run's start (Unix seconds), each line
/// also gets its time in the history's seconds.
pub fn node_notices(logs: &[(String, String)], key: u64, started: Option<f64>) -> String {
    let field = format!("partition={key} ");
    let mut out = String::new();
    for (node, text) in logs {
        let lines: Vec<String> = text
            .lines()
            .map(without_colours)
            .filter(|line| {
                (line.contains("fetch offset out of range")
                    || line.contains("offset for leader epoch"))
                    && line.contains(&field)
            })
            .collect();
        for line in &lines[lines.len().saturating_sub(8)..] {
            let at = line
                .split_whitespace()
                .next()
                .and_then(unix_seconds)
                .zip(started)
                .map(|(t, start)| format!("{:.3} s ", t - start))
                .unwrap_or_default();
            let _ = writeln!(out, "    {node} {at}{line}");
        }
    }
    out
}

/// Seconds since the Unix epoch of a UTC timestamp as the nodes log it,
/// `2026-11-23T16:12:52.703741Z`.
fn unix_seconds(stamp: &str) -> Option<f64> {
    let (date, time) = stamp.strip_suffix('Z')?.split_once('T')?;
    let mut ymd = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let mut hms = time.splitn(3, ':');
    let (h, min) = (
        hms.next()?.parse::<i64>().ok()?,
        hms.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = hms.next()?.parse().ok()?;
    // Days from 1970-01-01 to the date (the proleptic Gregorian calendar, years from March).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Some((days * 86_400 + h * 3_600 + min * 60) as f64 + sec)
}

/// `line` without the ANSI colour sequences the nodes' log lines carry.
fn without_colours(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ parameters final-letter
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// What a completed poll read of `key` (`[[offset, value], ...]`), or the whole value
/// of any other operation, cut short.
fn reads_of(value: &Value, key: &Value) -> String {
    let polled = value.as_array().into_iter().flatten().find_map(|mop| {
        (mop[0] == "poll").then(|| {
            mop[1]
                .as_array()
                .into_iter()
                .flatten()
                .find(|entry| entry[0] == *key)
        })?
    });
    let text = match polled {
        Some(entry) => format!("key {key} read {}", entry[1]),
        None => value.to_string(),
    };
    match text.char_indices().nth(600) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text,
    }
}

/// Writes `report.md` and `timeline.svg` into `dir`.
pub fn write(history: &[Op], report: &Report, dir: &Path) -> anyhow::Result<()> {
    for (name, text) in [
        ("timeline.svg", timeline(history, report)),
        ("report.md", markdown(report)),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
