//! The load generator's bookkeeping: outcomes by status and error kind,
//! latencies kept whole (a run is at most a few million requests) so the
//! percentiles are exact, by nearest rank.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Value, json};

/// A transport failure, by what a reader of the results can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum ErrorKind {
    /// No connection (refused, unreachable, handshake failed).
    Connect,
    /// The connection closed or was reset mid-request.
    Reset,
    /// No complete answer within `--timeout-s`.
    Timeout,
    /// Anything else hyper reports (a malformed response).
    Other,
}

impl ErrorKind {
    fn name(self) -> &'static str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Reset => "reset",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Other => "other",
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(u16),
    Error(ErrorKind),
}

/// Sorts a hyper error into an [`ErrorKind`].
pub(crate) fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_incomplete_message() || e.is_canceled() || e.is_closed() {
        return ErrorKind::Reset;
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as Io;
            return match io.kind() {
                Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe | Io::UnexpectedEof => {
                    ErrorKind::Reset
                }
                Io::TimedOut => ErrorKind::Timeout,
                Io::ConnectionRefused => ErrorKind::Connect,
                _ => ErrorKind::Other,
            };
        }
        source = s.source();
    }
    ErrorKind::Other
}

/// Everything recorded in a run.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Connections opened.
    pub(crate) connections: u64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<ErrorKind, u64>,
    /// Microseconds, every request (answered or not).
    all: Vec<u64>,
    /// Microseconds, 2xx responses.
    ok: Vec<u64>,
    /// Microseconds, 503 responses.
    unavailable: Vec<u64>,
}

impl Stats {
    pub(crate) fn record(&mut self, outcome: Outcome, latency: Duration) {
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.all.push(us);
        match outcome {
            Outcome::Status(s) => {
                *self.statuses.entry(s).or_default() += 1;
                if (200..300).contains(&s) {
                    self.ok.push(us);
                } else if s == 503 {
                    self.unavailable.push(us);
                }
            }
            Outcome::Error(kind) => *self.errors.entry(kind).or_default() += 1,
        }
    }

    /// The JSON summary of a run that recorded for `elapsed`.
    pub(crate) fn summary(&self, elapsed: Duration) -> Value {
        let secs = elapsed.as_secs_f64();
        let per_second = |n: usize| if secs > 0.0 { n as f64 / secs } else { 0.0 };
        let statuses: serde_json::Map<String, Value> =
            self.statuses.iter().map(|(s, n)| (s.to_string(), json!(n))).collect();
        let mut errors: serde_json::Map<String, Value> =
            [ErrorKind::Connect, ErrorKind::Reset, ErrorKind::Timeout]
                .iter()
                .map(|k| (k.name().into(), json!(0)))
                .collect();
        for (k, n) in &self.errors {
            errors.insert(k.name().into(), json!(n));
        }
        json!({
            "requests": self.all.len(),
            "ok": self.ok.len(),
            "status": statuses,
            "errors": errors,
            "connections": self.connections,
            "duration_s": secs,
            "achieved_rps": per_second(self.all.len()),
            "ok_rps": per_second(self.ok.len()),
            "latency_ms": {
                "all": latency(&self.all),
                "ok": latency(&self.ok),
                "503": latency(&self.unavailable),
            },
        })
    }
}

/// The `q` quantile (`0 < q <= 1`) of `sorted` by nearest rank: the
/// smallest value with at least `q` of the values at or below it.
pub(crate) fn nearest_rank(sorted: &[u64], q: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

/// p50, p90, p99, max and mean in milliseconds (nulls with no samples).
fn latency(samples: &[u64]) -> Value {
    let mut sorted = samples.to_vec();
    sorted.sort_unstable();
    let ms = |us: Option<u64>| us.map(|us| us as f64 / 1e3);
    let mean = (!sorted.is_empty()).then(|| sorted.iter().sum::<u64>() as f64 / sorted.len() as f64 / 1e3);
    json!({
        "count": sorted.len(),
        "p50": ms(nearest_rank(&sorted, 0.50)),
        "p90": ms(nearest_rank(&sorted, 0.90)),
        "p99": ms(nearest_rank(&sorted, 0.99)),
        "max": ms(sorted.last().copied()),
        "mean": mean,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(nearest_rank(&v, 0.5), Some(50));
        assert_eq!(nearest_rank(&v, 0.9), Some(90));
        assert_eq!(nearest_rank(&v, 0.99), Some(99));
        assert_eq!(nearest_rank(&v, 1.0), Some(100));
        assert_eq!(nearest_rank(&[7], 0.99), Some(7));
        assert_eq!(nearest_rank(&[1, 2, 3], 0.0), Some(1), "rank clamps to the first");
        assert_eq!(nearest_rank(&[], 0.5), None);
    }

    #[test]
    fn outcomes_are_split_by_status_and_error_kind() {
        let mut s = Stats::default();
        s.record(Outcome::Status(200), Duration::from_millis(10));
        s.record(Outcome::Status(200), Duration::from_millis(30));
        s.record(Outcome::Status(503), Duration::from_micros(500));
        s.record(Outcome::Error(ErrorKind::Reset), Duration::from_millis(1));
        let v = s.summary(Duration::from_secs(2));
        assert_eq!(v["requests"], 4);
        assert_eq!(v["ok"], 2);
        assert_eq!(v["status"]["200"], 2);
        assert_eq!(v["status"]["503"], 1);
        assert_eq!(v["errors"]["reset"], 1);
        assert_eq!(v["errors"]["connect"], 0);
        assert_eq!(v["achieved_rps"], 2.0);
        assert_eq!(v["latency_ms"]["ok"]["p50"], 10.0);
        assert_eq!(v["latency_ms"]["ok"]["max"], 30.0);
        assert_eq!(v["latency_ms"]["503"]["p99"], 0.5);
        assert_eq!(v["latency_ms"]["all"]["count"], 4);
    }
}
