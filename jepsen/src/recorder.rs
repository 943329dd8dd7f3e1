//! Writing a run's record: the history (`history.jsonl`, one operation a line, numbered and
//! timed) and the clients' own account beside it (`clients.log`).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use serde_json::{json, Value};

/// Appends operations to the history, numbering and timing them.
pub struct Recorder {
    out: Mutex<(BufWriter<File>, u64)>,
    start: Instant,
    /// The consumers' own account, beside the history and on its clock.
    pub(crate) clients: ClientLog,
}

impl Recorder {
    pub(crate) fn create(path: &std::path::Path) -> anyhow::Result<Recorder> {
        let out = create_file(path)?;
        let start = Instant::now();
        Ok(Recorder {
            out: Mutex::new((out, 0)),
            start,
            clients: ClientLog::create(&path.with_file_name("clients.log"), start)?,
        })
    }

    pub(crate) fn log(
        &self,
        process: Value,
        kind: &str,
        f: &str,
        value: Value,
        error: Option<String>,
    ) {
        let mut out = self.out.lock().expect("history lock");
        let mut op = json!({
            "index": out.1, "time": self.start.elapsed().as_nanos() as u64,
            "process": process, "type": kind, "f": f, "value": value,
        });
        if let Some(error) = error {
            op["error"] = json!(error);
        }
        out.1 += 1;
        let line = op.to_string();
        let _ = writeln!(out.0, "{line}");
    }

    pub(crate) fn finish(&self) -> anyhow::Result<()> {
        self.clients.flush()?;
        Ok(self.out.lock().expect("history lock").0.flush()?)
    }
}

/// How `clients.log` opens: this, then the Unix time of the history's time 0.
pub const RUN_STARTED: &str = "started at unix time";

/// What the consumers saw besides records (`clients.log`): the errors their polls return
/// and librdkafka's warnings, such as an offset reset, each line with the history's time
/// (ns) and the process, so that an anomaly in the history can be traced to its cause.
#[derive(Clone)]
pub struct ClientLog {
    out: Arc<Mutex<BufWriter<File>>>,
    start: Instant,
}

impl ClientLog {
    pub(crate) fn create(path: &std::path::Path, start: Instant) -> anyhow::Result<ClientLog> {
        let log = ClientLog {
            out: Arc::new(Mutex::new(create_file(path)?)),
            start,
        };
        // The wall clock at the history's time 0, to line the nodes' logs up with it.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(start.elapsed());
        log.note(
            &json!("run"),
            &format!("{RUN_STARTED} {:.6}", unix.as_secs_f64()),
        );
        Ok(log)
    }

    pub(crate) fn note(&self, process: &Value, what: &str) {
        let time = self.start.elapsed().as_nanos();
        let mut out = self.out.lock().expect("client log lock");
        let _ = writeln!(out, "{time} {process} {what}");
    }

    pub(crate) fn flush(&self) -> anyhow::Result<()> {
        Ok(self.out.lock().expect("client log lock").flush()?)
    }
}

fn create_file(path: &std::path::Path) -> anyhow::Result<BufWriter<File>> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    Ok(BufWriter::new(file))
}
