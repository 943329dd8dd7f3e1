//! What a run measures: latency histograms (hdrhistogram, microseconds) and per-second
//! throughput series, and how they are turned into the JSON the driver reads.
//!
//! Latencies are recorded in microseconds from 1 µs to one hour with three significant
//! digits, so p99.9 and max stay exact enough at any rate without keeping every sample.

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use serde_json::{json, Value};

/// One time origin for every thread of a run, so a timestamp written by the producer can be
/// compared with the consumer's clock (both live in this process).
#[derive(Clone, Copy)]
pub struct Clock {
    origin: Instant,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            origin: Instant::now(),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Sleeps until `at_ns` on this clock (returns at once if that has passed).
    pub fn sleep_until(&self, at_ns: u64) {
        let now = self.now_ns();
        if at_ns > now {
            std::thread::sleep(Duration::from_nanos(at_ns - now));
        }
    }
}

pub fn secs_to_ns(seconds: f64) -> u64 {
    (seconds.max(0.0) * 1e9) as u64
}

/// A latency distribution in microseconds.
pub struct Latency {
    histogram: Histogram<u64>,
}

/// The percentiles the JSON lists for charts (a percentile curve, not just four points).
const CURVE: [f64; 12] = [
    0.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

impl Latency {
    pub fn new() -> Latency {
        Latency {
            histogram: Histogram::new_with_bounds(1, 3_600_000_000, 3)
                .expect("static histogram bounds are valid"),
        }
    }

    pub fn record_ns(&mut self, nanos: u64) {
        self.histogram.saturating_record((nanos / 1_000).max(1));
    }

    pub fn merge(&mut self, other: &Latency) {
        self.histogram
            .add(&other.histogram)
            .expect("histograms with equal bounds always merge");
    }

    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    fn ms_at(&self, percentile: f64) -> f64 {
        if percentile >= 100.0 {
            return self.histogram.max() as f64 / 1000.0;
        }
        self.histogram.value_at_quantile(percentile / 100.0) as f64 / 1000.0
    }

    /// The headline figures in milliseconds; every field is null when nothing was recorded.
    pub fn summary(&self) -> Value {
        if self.count() == 0 {
            return json!({"count": 0, "p50": null, "p99": null, "p999": null, "max": null, "mean": null});
        }
        json!({
            "count": self.count(),
            "p50": round3(self.ms_at(50.0)),
            "p99": round3(self.ms_at(99.0)),
            "p999": round3(self.ms_at(99.9)),
            "max": round3(self.ms_at(100.0)),
            "mean": round3(self.histogram.mean() / 1000.0),
        })
    }

    /// `[[percentile, ms], ...]` for a latency-percentile chart.
    pub fn curve(&self) -> Value {
        if self.count() == 0 {
            return json!([]);
        }
        Value::Array(
            CURVE
                .iter()
                .map(|&p| json!([p, round3(self.ms_at(p))]))
                .collect(),
        )
    }

    /// "p50 1.2 ms, p99 4.5 ms, p99.9 7 ms, max 9 ms" for the human line.
    pub fn human(&self) -> String {
        if self.count() == 0 {
            return "no samples".to_string();
        }
        format!(
            "p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms",
            short(self.ms_at(50.0)),
            short(self.ms_at(99.0)),
            short(self.ms_at(99.9)),
            short(self.ms_at(100.0))
        )
    }
}

impl Default for Latency {
    fn default() -> Latency {
        Latency::new()
    }
}

/// Records and payload bytes per interval (a second unless asked otherwise) since the run
/// started, for throughput charts.
pub struct Series {
    interval_ns: u64,
    records: Vec<u64>,
    bytes: Vec<u64>,
}

impl Default for Series {
    fn default() -> Series {
        Series::new(Duration::from_secs(1))
    }
}

impl Series {
    pub fn new(interval: Duration) -> Series {
        Series {
            interval_ns: (interval.as_nanos() as u64).max(1),
            records: Vec::new(),
            bytes: Vec::new(),
        }
    }

    pub fn add(&mut self, at_ns: u64, records: u64, bytes: u64) {
        let slot = (at_ns / self.interval_ns) as usize;
        if self.records.len() <= slot {
            self.records.resize(slot + 1, 0);
            self.bytes.resize(slot + 1, 0);
        }
        self.records[slot] += records;
        self.bytes[slot] += bytes;
    }

    /// Adds another series taken with the same interval.
    pub fn merge(&mut self, other: &Series) {
        for (slot, (&records, &bytes)) in other.records.iter().zip(&other.bytes).enumerate() {
            self.add(slot as u64 * other.interval_ns, records, bytes);
        }
    }

    /// Rates per second for each interval.
    pub fn to_json(&self) -> Value {
        let interval_s = self.interval_ns as f64 / 1e9;
        json!({
            "interval_s": interval_s,
            "records_per_s": self.records.iter().map(|&r| round3(r as f64 / interval_s)).collect::<Vec<_>>(),
            "mb_per_s": self.bytes.iter().map(|&b| round3(b as f64 / 1e6 / interval_s)).collect::<Vec<_>>(),
        })
    }
}

pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn short(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.2}")
    }
}

/// CPU seconds (user + system) this process has used, from /proc/self/stat; the client's
/// share of the machine matters when it runs beside the brokers.
pub fn own_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux architecture this runs on.
    Some(round3(ticks / 100.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_milliseconds() {
        let mut latency = Latency::new();
        for ms in 1..=1000u64 {
            latency.record_ns(ms * 1_000_000);
        }
        let summary = latency.summary();
        assert_eq!(summary["count"], 1000);
        let p50 = summary["p50"].as_f64().unwrap();
        let p99 = summary["p99"].as_f64().unwrap();
        assert!((499.0..=501.0).contains(&p50), "p50 was {p50}");
        assert!((989.0..=991.0).contains(&p99), "p99 was {p99}");
        assert!((999.0..=1001.0).contains(&summary["max"].as_f64().unwrap()));
    }

    #[test]
    fn empty_latency_has_null_figures_not_zeros() {
        let summary = Latency::new().summary();
        assert!(summary["p99"].is_null());
        assert_eq!(Latency::new().curve(), json!([]));
    }

    #[test]
    fn series_buckets_by_second_and_merges() {
        let mut a = Series::default();
        a.add(500_000_000, 10, 10_000);
        a.add(2_100_000_000, 5, 5_000);
        let mut b = Series::default();
        b.add(1_000_000_000, 7, 7_000);
        a.merge(&b);
        assert_eq!(a.to_json()["records_per_s"], json!([10.0, 7.0, 5.0]));
    }

    #[test]
    fn series_rates_are_per_second_whatever_the_interval() {
        let mut s = Series::new(Duration::from_millis(100));
        s.add(50_000_000, 3, 3_000_000);
        assert_eq!(s.to_json()["records_per_s"], json!([30.0]));
        assert_eq!(s.to_json()["mb_per_s"], json!([30.0]));
    }
}
