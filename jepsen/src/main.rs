//! `jepsen check HISTORY.jsonl [--subscribe]`: checks a recorded history, writes
//! `results.json` beside it, prints a one-line summary, and exits 0 only if it is valid.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use strand_jepsen::{check, history};

const USAGE: &str = "usage: jepsen check HISTORY.jsonl [--subscribe]
  --subscribe   consumers used subscribe (consumer groups): poll-skip and
                nonmonotonic-poll are then reported but allowed, as in Jepsen";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("jepsen: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<bool> {
    let (Some("check"), Some(path)) = (args.first().map(String::as_str), args.get(1)) else {
        anyhow::bail!("{USAGE}");
    };
    let mut options = check::Options::default();
    for flag in &args[2..] {
        match flag.as_str() {
            "--subscribe" => options.subscribe = true,
            other => anyhow::bail!("unknown option {other}\n{USAGE}"),
        }
    }
    let path = PathBuf::from(path);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("cannot open the history {}", path.display()))?;
    let ops = history::read(std::io::BufReader::new(file))?;
    let report = check::check(&ops, options)?;
    let results = path.with_file_name("results.json");
    std::fs::write(&results, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", results.display()))?;
    println!("{}", report.summary());
    Ok(report.valid)
}
