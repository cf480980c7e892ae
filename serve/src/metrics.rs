//! Counters and histograms, updated with relaxed atomics on the hot path
//! (no lock, no allocation) and read as a [`MetricsSnapshot`]. Latencies
//! go into power-of-two microsecond buckets: coarse, but constant-size and
//! mergeable, which is what a Prometheus exporter needs.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Latency buckets: `< 1 µs`, `< 2 µs`, … `< 2^39 µs` (≈ 6 days).
const BUCKETS: usize = 40;

#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    fn new() -> Histogram {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_us: AtomicU64::new(0),
        }
    }

    pub(crate) fn record(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = ((u64::BITS - us.leading_zeros()) as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
    }

    fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: self
                .buckets
                .iter()
                .enumerate()
                .map(|(i, b)| (Duration::from_micros(1 << i), b.load(Relaxed)))
                .collect(),
            count: self.count.load(Relaxed),
            sum: Duration::from_micros(self.sum_us.load(Relaxed)),
        }
    }
}

/// Live counters of a [`Batcher`](crate::Batcher).
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) queue_depth: AtomicI64,
    pub(crate) batches_in_flight: AtomicI64,
    pub(crate) submitted: AtomicU64,
    pub(crate) completed: AtomicU64,
    pub(crate) rejected: AtomicU64,
    pub(crate) failed_client: AtomicU64,
    pub(crate) failed_server: AtomicU64,
    pub(crate) cancelled: AtomicU64,
    /// Index `n`: batches of `n` rows.
    batch_sizes: Box<[AtomicU64]>,
    pub(crate) queue: Histogram,
    pub(crate) decode: Histogram,
    pub(crate) model: Histogram,
}

impl Metrics {
    pub(crate) fn new(max_batch: usize) -> Metrics {
        Metrics {
            queue_depth: AtomicI64::new(0),
            batches_in_flight: AtomicI64::new(0),
            submitted: AtomicU64::new(0),
            completed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            failed_client: AtomicU64::new(0),
            failed_server: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            batch_sizes: (0..=max_batch).map(|_| AtomicU64::new(0)).collect(),
            queue: Histogram::new(),
            decode: Histogram::new(),
            model: Histogram::new(),
        }
    }

    pub(crate) fn batch(&self, rows: usize) {
        if let Some(b) = self.batch_sizes.get(rows) {
            b.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn failed(&self, e: &crate::Error) {
        match e.fault() {
            crate::Fault::Client => self.failed_client.fetch_add(1, Relaxed),
            _ => self.failed_server.fetch_add(1, Relaxed),
        };
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let gauge = |g: &AtomicI64| usize::try_from(g.load(Relaxed)).unwrap_or(0);
        MetricsSnapshot {
            queue_depth: gauge(&self.queue_depth),
            batches_in_flight: gauge(&self.batches_in_flight),
            submitted: self.submitted.load(Relaxed),
            completed: self.completed.load(Relaxed),
            rejected: self.rejected.load(Relaxed),
            failed_client: self.failed_client.load(Relaxed),
            failed_server: self.failed_server.load(Relaxed),
            cancelled: self.cancelled.load(Relaxed),
            batch_sizes: self.batch_sizes.iter().map(|b| b.load(Relaxed)).collect(),
            queue_latency: self.queue.snapshot(),
            decode_latency: self.decode.snapshot(),
            model_latency: self.model.snapshot(),
        }
    }
}

/// A latency histogram at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LatencySnapshot {
    /// `(upper bound, count)`: observations below the bound and at least
    /// the previous bound (power-of-two microseconds).
    pub buckets: Vec<(Duration, u64)>,
    /// Observations.
    pub count: u64,
    /// Their sum.
    pub sum: Duration,
}

impl LatencySnapshot {
    /// The upper bound of the bucket holding the `q` quantile (`0..=1`),
    /// or zero with no observations.
    pub fn quantile(&self, q: f64) -> Duration {
        let target = (q.clamp(0.0, 1.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for &(bound, n) in &self.buckets {
            seen += n;
            if seen >= target && n > 0 {
                return bound;
            }
        }
        Duration::ZERO
    }

    /// Mean, or zero with no observations.
    pub fn mean(&self) -> Duration {
        if self.count == 0 {
            Duration::ZERO
        } else {
            self.sum / u32::try_from(self.count).unwrap_or(u32::MAX)
        }
    }
}

/// A [`Batcher`](crate::Batcher)'s counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Requests admitted and waiting for a batch (not yet assigned a row).
    pub queue_depth: usize,
    /// Batches being decoded or run by the model.
    pub batches_in_flight: usize,
    /// Requests admitted.
    pub submitted: u64,
    /// Requests answered with their row's output.
    pub completed: u64,
    /// Requests refused with [`Error::Overloaded`](crate::Error::Overloaded).
    pub rejected: u64,
    /// Requests failed by their own fault (bad, unsupported, over-limit or
    /// too large image).
    pub failed_client: u64,
    /// Requests failed by the server's fault (model error, internal).
    pub failed_server: u64,
    /// Requests whose future was dropped before their answer.
    pub cancelled: u64,
    /// Index `n`: batches run with `n` rows.
    pub batch_sizes: Vec<u64>,
    /// Submission to row assignment.
    pub queue_latency: LatencySnapshot,
    /// Decode and preprocess of one image on the pool.
    pub decode_latency: LatencySnapshot,
    /// One model function call (per batch).
    pub model_latency: LatencySnapshot,
}
