//! `/metrics` in Prometheus' text exposition format: the batchers'
//! [`MetricsSnapshot`]s and the HTTP responses by route and status.
//! Latencies are histograms with the batcher's own power-of-two
//! microsecond buckets, so a scrape copies counters and computes nothing;
//! quantiles are Prometheus' `histogram_quantile` away.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use ringfeed_serve::{LatencySnapshot, MetricsSnapshot};

/// Responses by `(route, status)`.
#[derive(Debug, Default)]
pub(crate) struct HttpCounts(Mutex<BTreeMap<(String, u16), u64>>);

impl HttpCounts {
    /// Counts one response.
    pub(crate) fn record(&self, route: String, status: u16) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry((route, status)).or_default() += 1;
    }

    fn snapshot(&self) -> BTreeMap<(String, u16), u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Latency buckets exported: 16 µs to 33.6 s (the batcher's buckets
/// `2^4..=2^25` µs); the rest fold into their neighbours and `+Inf`.
const LATENCY_BUCKETS: std::ops::RangeInclusive<usize> = 4..=25;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn latency(out: &mut String, batcher: &str, stage: &str, h: &LatencySnapshot) {
    let name = "ringfeed_stage_duration_seconds";
    let mut cumulative = 0;
    let mut buckets = h.buckets.iter().enumerate().peekable();
    for i in LATENCY_BUCKETS {
        while let Some((_, &(_, n))) = buckets.next_if(|&(j, _)| j <= i) {
            cumulative += n;
        }
        let le = (1u64 << i) as f64 / 1e6;
        let _ = writeln!(
            out,
            "{name}_bucket{{batcher=\"{batcher}\",stage=\"{stage}\",le=\"{le}\"}} {cumulative}"
        );
    }
    let labels = format!("batcher=\"{batcher}\",stage=\"{stage}\"");
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", h.sum.as_secs_f64());
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", h.count);
}

/// The exposition of `batchers` (name, snapshot) and `http`.
pub(crate) fn render(batchers: &[(&str, MetricsSnapshot)], http: &HttpCounts) -> String {
    let mut out = String::new();
    header(&mut out, "ringfeed_queue_depth", "gauge", "Requests admitted and waiting for a batch.");
    for (b, m) in batchers {
        let _ = writeln!(out, "ringfeed_queue_depth{{batcher=\"{b}\"}} {}", m.queue_depth);
    }
    header(&mut out, "ringfeed_batches_in_flight", "gauge", "Batches decoding or in the model.");
    for (b, m) in batchers {
        let _ = writeln!(out, "ringfeed_batches_in_flight{{batcher=\"{b}\"}} {}", m.batches_in_flight);
    }
    header(&mut out, "ringfeed_requests_total", "counter", "Requests by outcome.");
    for (b, m) in batchers {
        let outcomes = [
            ("submitted", m.submitted),
            ("completed", m.completed),
            ("rejected", m.rejected),
            ("failed_client", m.failed_client),
            ("failed_server", m.failed_server),
            ("cancelled", m.cancelled),
        ];
        for (outcome, n) in outcomes {
            let _ = writeln!(out, "ringfeed_requests_total{{batcher=\"{b}\",outcome=\"{outcome}\"}} {n}");
        }
    }
    header(&mut out, "ringfeed_batch_size", "histogram", "Rows per batch run.");
    for (b, m) in batchers {
        let (mut cumulative, mut sum) = (0, 0);
        for (rows, &n) in m.batch_sizes.iter().enumerate().skip(1) {
            cumulative += n;
            sum += rows as u64 * n;
            let _ = writeln!(out, "ringfeed_batch_size_bucket{{batcher=\"{b}\",le=\"{rows}\"}} {cumulative}");
        }
        let _ = writeln!(out, "ringfeed_batch_size_bucket{{batcher=\"{b}\",le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(out, "ringfeed_batch_size_sum{{batcher=\"{b}\"}} {sum}");
        let _ = writeln!(out, "ringfeed_batch_size_count{{batcher=\"{b}\"}} {cumulative}");
    }
    header(
        &mut out,
        "ringfeed_stage_duration_seconds",
        "histogram",
        "Time per stage: queue (per request), decode (per request), model (per batch).",
    );
    for (b, m) in batchers {
        latency(&mut out, b, "queue", &m.queue_latency);
        latency(&mut out, b, "decode", &m.decode_latency);
        latency(&mut out, b, "model", &m.model_latency);
    }
    header(&mut out, "ringfeed_http_responses_total", "counter", "HTTP responses by route and status.");
    for ((route, status), n) in http.snapshot() {
        let _ = writeln!(out, "ringfeed_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {n}");
    }
    out
}
