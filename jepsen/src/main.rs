//! `jepsen test [options]` runs a test against a fresh cluster and checks its history;
//! `jepsen check HISTORY.jsonl` checks a recorded one. Both write `results.json`,
//! `report.md` and `timeline.svg` beside the history, print a one-line summary and exit 0
//! only when the history is valid.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use strand_jepsen::cluster::Net;
use strand_jepsen::nemesis::{Fault, Target};
use strand_jepsen::recorder::RUN_STARTED;
use strand_jepsen::run::RunOptions;
use strand_jepsen::{check, history, report, run};

const USAGE: &str = "usage:
  jepsen test --strand PATH [--dir DIR] [--duration SECONDS] [--nodes 3|5] [--workers N]
              [--subscribers N] [--rate OPS_PER_S] [--keys N] [--seed N] [--net ns|loopback]
              [--nemesis kill,pause,partition,lose-unsynced,membership|none]
              [--targets one,leader,majority,ring,clients,all]
              [--fault-seconds S] [--gap-seconds S] [--min-sends N] [--min-faults N]
              [--delete-records S] [--cleanup-policy delete|compact,delete]
    --subscribers how many workers consume as members of one consumer group (subscribe,
                  committed offsets; default 4); the others assign every partition
    --net         ns (default): each node in its own network namespace (needs root);
                  loopback: all on 127.0.0.1, no partitions
    --nemesis     lose-unsynced: kill -9, then the node's data directory (a FUSE layer
                  over the real one) loses every write not fsynced, as in a power cut;
                  membership: a new node joins, a replica of a random partition (the
                  target's) moves to it, then the move is cancelled or moved back and the
                  node unregistered and stopped
    --targets     one node, the leader of a random partition, a majority (for partitions:
                  a majority split from the rest), ring (partitions: each node hears a
                  different majority), clients (partitions: a leader cut off from clients),
                  all (kill, pause, lose-unsynced: every node at once; majority and all
                  are not for membership); each fault picks
                  uniformly among the pairs that apply
    --min-sends, --min-faults   fail unless at least this many sends were acknowledged and
                                faults injected (guards against a run that tested nothing)
    --delete-records S          every S seconds (default 2; 0: never) DeleteRecords moves a
                                random partition's start up to where every assigning
                                worker has read it, so nodes purge their Raft logs and
                                lagging ones catch up by snapshot
    --cleanup-policy P          compact,delete: the topic is compacted too (odd values
                                share 64 keys, so later ones supersede them; even values
                                have keys of their own); default delete
    --unsafe-mode MODE          pass --unsafe-mode MODE to every node (a strand built with
                                the unsafe-modes feature; see selfcheck)
  jepsen selfcheck --strand PATH [test options]
    runs the test against a strand built with the unsafe-modes feature, once per unsafe
    mode, each under the faults that expose it, and once with none under the same faults
    as the control; exits 0 only if every unsafe run is found invalid and every control
    run valid. ack-before-commit, read-uncommitted, purge-unread and compact-by-hash run
    under the test options (default --nemesis partition --targets leader --duration 40
    --dir store/selfcheck); skip-fsync always under --nemesis lose-unsynced --targets all
  jepsen check HISTORY.jsonl [--subscribe]
    --subscribe   consumers used subscribe (consumer groups): poll-skip and
                  nonmonotonic-poll are then reported but allowed, as in Jepsen";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(args: &[String]) -> anyhow::Result<bool> {
    match args.first().map(String::as_str) {
        Some("check") => {
            let Some(path) = args.get(1) else {
                bail!("{USAGE}")
            };
            let mut options = check::Options::default();
            for flag in &args[2..] {
                match flag.as_str() {
                    "--subscribe" => options.subscribe = true,
                    other => bail!("unknown option {other}\n{USAGE}"),
                }
            }
            check_history(Path::new(path), options, None)
        }
        Some("test") => {
            let (options, minimum) = test_options(&args[1..])?;
            println!("jepsen test: {options:?}");
            let (path, faults) = run::run(&options)?;
            check_history(&path, check::Options::default(), Some((faults, minimum)))
        }
        Some("selfcheck") => selfcheck(&args[1..]),
        _ => bail!("{USAGE}"),
    }
}

/// The least a run must have done to count: acknowledged sends and faults.
#[derive(Debug, Clone, Copy, Default)]
struct Minimum {
    sends: usize,
    faults: usize,
}

fn test_options(args: &[String]) -> anyhow::Result<(RunOptions, Minimum)> {
    let mut minimum = Minimum::default();
    let mut options = RunOptions {
        strand: PathBuf::new(),
        strand_args: Vec::new(),
        dir: PathBuf::from("store/latest"),
        nodes: 3,
        net: Net::Namespaces,
        duration: Duration::from_secs(60),
        workers: 10,
        subscribers: 4,
        rate: 400.0,
        keys: 8,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs(),
        faults: vec![
            Fault::Kill,
            Fault::Pause,
            Fault::Partition,
            Fault::LoseUnsynced,
            Fault::Membership,
        ],
        targets: vec![Target::One, Target::Leader, Target::Ring, Target::Clients],
        fault_length: Duration::from_secs(4),
        fault_gap: Duration::from_secs(2),
        delete_every: Some(Duration::from_secs(2)),
        compact: false,
    };
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let value = rest
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || -> anyhow::Result<f64> {
            value
                .parse::<f64>()
                .with_context(|| format!("{flag} takes a number, not '{value}'"))
        };
        match flag.as_str() {
            "--strand" => options.strand = PathBuf::from(value),
            "--dir" => options.dir = PathBuf::from(value),
            "--duration" => options.duration = Duration::from_secs_f64(number()?),
            "--nodes" => match value.as_str() {
                "3" => options.nodes = 3,
                "5" => options.nodes = 5,
                _ => bail!("--nodes is 3 or 5, not '{value}'"),
            },
            "--net" => match value.as_str() {
                "ns" => options.net = Net::Namespaces,
                "loopback" => options.net = Net::Loopback,
                _ => bail!("--net is ns or loopback, not '{value}'"),
            },
            "--workers" => options.workers = number()?.max(1.0) as usize,
            "--subscribers" => options.subscribers = number()?.max(0.0) as usize,
            "--rate" => options.rate = number()?.max(1.0),
            "--keys" => options.keys = number()?.max(1.0) as i32,
            "--seed" => options.seed = number()? as u64,
            "--fault-seconds" => options.fault_length = Duration::from_secs_f64(number()?),
            "--gap-seconds" => options.fault_gap = Duration::from_secs_f64(number()?),
            "--delete-records" => {
                let every = number()?;
                options.delete_every = (every > 0.0).then(|| Duration::from_secs_f64(every));
            }
            "--unsafe-mode" => options.strand_args = vec![flag.clone(), value.clone()],
            "--cleanup-policy" => match value.as_str() {
                "delete" => options.compact = false,
                "compact,delete" => options.compact = true,
                _ => bail!("--cleanup-policy is delete or compact,delete, not '{value}'"),
            },
            "--min-sends" => minimum.sends = number()? as usize,
            "--min-faults" => minimum.faults = number()? as usize,
            "--nemesis" => {
                options.faults = value
                    .split(',')
                    .filter(|f| !f.is_empty() && *f != "none")
                    .map(|f| match f {
                        "kill" => Ok(Fault::Kill),
                        "pause" => Ok(Fault::Pause),
                        "partition" => Ok(Fault::Partition),
                        "lose-unsynced" => Ok(Fault::LoseUnsynced),
                        "membership" => Ok(Fault::Membership),
                        other => bail!(
                            "unknown nemesis '{other}' (kill, pause, partition, lose-unsynced, membership or none)"
                        ),
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            "--targets" => {
                options.targets = value
                    .split(',')
                    .map(|t| match t {
                        "one" => Ok(Target::One),
                        "leader" => Ok(Target::Leader),
                        "majority" => Ok(Target::Majority),
                        "ring" => Ok(Target::Ring),
                        "clients" => Ok(Target::Clients),
                        "all" => Ok(Target::All),
                        other => bail!(
                            "unknown target '{other}' (one, leader, majority, ring, clients or all)"
                        ),
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            other => bail!("unknown option {other}\n{USAGE}"),
        }
    }
    if options.net == Net::Loopback && options.faults.contains(&Fault::Partition) {
        bail!("partitions need --net ns; with --net loopback pass --nemesis kill,pause");
    }
    if !options.faults.is_empty() && !options.can_fault() {
        bail!("no target in --targets applies to the faults in --nemesis (ring and clients are for partitions only, all for everything but partitions and membership)");
    }
    if options.strand.as_os_str().is_empty() {
        bail!("--strand PATH (the strand binary) is required\n{USAGE}");
    }
    Ok((options, minimum))
}

/// The self-check's runs: `(unsafe mode, faults it runs under)`. A mode runs under the
/// test options when it has no faults of its own; every fault mix has its control run
/// ("off") before its unsafe ones.
const SELFCHECK_RUNS: [(&str, Option<(Fault, Target)>); 7] = [
    ("off", None),
    ("ack-before-commit", None),
    ("read-uncommitted", None),
    ("purge-unread", None),
    ("compact-by-hash", None),
    // Only a crash of every node that loses the page cache shows a missing fsync: any
    // node left with the data would hand it back to the others.
    ("off", Some((Fault::LoseUnsynced, Target::All))),
    ("skip-fsync", Some((Fault::LoseUnsynced, Target::All))),
];

/// Runs the test once per unsafe mode, and once with none (the control) per fault mix.
fn selfcheck(args: &[String]) -> anyhow::Result<bool> {
    let mut all: Vec<String> = [
        "--nemesis",
        "partition",
        "--targets",
        "leader",
        "--duration",
        "40",
        "--dir",
        "store/selfcheck",
    ]
    .map(String::from)
    .to_vec();
    all.extend_from_slice(args);
    let (options, _) = test_options(&all)?;
    let mut verdicts = Vec::new();
    for (mode, faults) in SELFCHECK_RUNS {
        let mut run_options = options.clone();
        run_options.strand_args = vec!["--unsafe-mode".into(), mode.into()];
        // The cleaner copies records out of the Raft log within a second: only a
        // compacted topic exposes it, and only an uncompacted one exposes a purge.
        run_options.compact = mode == "compact-by-hash";
        run_options.dir = options.dir.join(mode);
        let mut label = mode.to_string();
        if let Some((fault, target)) = faults {
            run_options.faults = vec![fault];
            run_options.targets = vec![target];
            run_options.dir = options.dir.join(format!("{mode}-{}", fault.name()));
            label = format!("{mode} under {} {target:?}", fault.name()).to_lowercase();
        }
        println!(
            "jepsen selfcheck: --unsafe-mode {label}, in {}",
            run_options.dir.display()
        );
        let (path, _) = run::run(&run_options)?;
        let report = check_and_record(&path, check::Options::default())?;
        let expected = if mode == "off" {
            report.valid
        } else {
            !report.valid
        };
        let verdict = format!(
            "{label}: {} ({})",
            match (mode == "off", expected) {
                (true, true) => "valid, as it must be",
                (true, false) => "INVALID: the harness flags a correct broker",
                (false, true) => "caught",
                (false, false) => "NOT CAUGHT",
            },
            if report.bad.is_empty() {
                "no anomaly".to_string()
            } else {
                report
                    .bad
                    .iter()
                    .map(|name| format!("{name} {}", report.anomalies[name].count))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        );
        verdicts.push((verdict, expected));
    }
    println!("jepsen selfcheck:");
    for (verdict, _) in &verdicts {
        println!("  {verdict}");
    }
    Ok(verdicts.iter().all(|(_, expected)| *expected))
}

/// Checks the history at `path`, writes `results.json` beside it and prints the summary.
fn check_and_record(path: &Path, options: check::Options) -> anyhow::Result<check::Report> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open the history {}", path.display()))?;
    let ops = history::read(std::io::BufReader::new(file))?;
    let report = check::check(&ops, options)?;
    let results = path.with_file_name("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", results.display()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    report::write(&ops, &report, dir)?;
    println!("{}", report.summary());
    if !report.valid {
        // A missing clients.log (a history checked on its own) only shortens the story.
        let clients_log = std::fs::read_to_string(dir.join("clients.log")).unwrap_or_default();
        print!("{}", report::explain(&ops, &report, &clients_log));
        print!("{}", node_notices(dir, &report, &clients_log));
    }
    Ok(report)
}

/// What the nodes' logs (`n*/strand.log` beside the history) say about the partitions of
/// the anomalous operations among the first examples, timed as the history is when
/// `clients_log` tells the run's start.
fn node_notices(dir: &Path, report: &check::Report, clients_log: &str) -> String {
    let started = clients_log.lines().next().and_then(|line| {
        let (_, unix) = line.split_once(RUN_STARTED)?;
        unix.trim().parse::<f64>().ok()
    });
    let logs: Vec<(String, String)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let text = std::fs::read_to_string(entry.path().join("strand.log")).ok()?;
            Some((entry.file_name().to_string_lossy().into_owned(), text))
        })
        .collect();
    report::explained_keys(report)
        .into_iter()
        .map(|key| {
            format!(
                "nodes on partition {key}:\n{}",
                report::node_notices(&logs, key, started)
            )
        })
        .collect()
}

/// Checks the history at `path`; after a test run, `made` carries the faults the nemesis
/// injected and the minimum the run must reach.
fn check_history(
    path: &Path,
    options: check::Options,
    made: Option<(usize, Minimum)>,
) -> anyhow::Result<bool> {
    let report = check_and_record(path, options)?;
    if let Some(error) = report.nemesis_errors.first() {
        println!("the nemesis stopped early: {error}; see the nodes' strand.log files");
        return Ok(false);
    }
    if let Some((faults, minimum)) = made {
        anyhow::ensure!(faults == report.faults, "the history lost fault records");
        if report.acknowledged_sends < minimum.sends || report.faults < minimum.faults {
            println!(
                "too little happened: {} acknowledged sends (need {}), {} faults (need {})",
                report.acknowledged_sends, minimum.sends, report.faults, minimum.faults
            );
            return Ok(false);
        }
    }
    Ok(report.valid)
}
