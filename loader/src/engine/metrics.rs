//! Loader counters, updated by the workers and the consumer without locks,
//! read as a [`MetricsSnapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

/// Corrupt records whose location the metrics keep (and the log shows).
const CORRUPT_LOCATIONS: usize = 8;

/// Latency buckets: bucket `i` counts reads that took `[2^i, 2^(i+1))` µs.
const BUCKETS: usize = 32;

#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) records: AtomicU64,
    pub(crate) payload_bytes: AtomicU64,
    pub(crate) io_bytes: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) skipped: AtomicU64,
    pub(crate) replaced: AtomicU64,
    corrupt: AtomicU64,
    corrupt_locations: Mutex<Vec<String>>,
    pub(crate) batches: AtomicU64,
    pub(crate) wait_ns: AtomicU64,
    pub(crate) queue_depth_max: AtomicU64,
    pub(crate) read_ns: AtomicU64,
    pub(crate) decode_ns: AtomicU64,
    pub(crate) augment_ns: AtomicU64,
    latency: [AtomicU64; BUCKETS],
    /// Bytes of batch buffers mapped now, and the most at any time.
    buffer_bytes: AtomicU64,
    buffer_bytes_max: AtomicU64,
}

impl Metrics {
    pub(crate) fn read_done(&self, took: Duration, bytes: u64) {
        let us = took.as_micros().max(1) as u64;
        let bucket = (63 - us.leading_zeros() as usize).min(BUCKETS - 1);
        self.latency[bucket].fetch_add(1, Relaxed);
        self.reads.fetch_add(1, Relaxed);
        self.io_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn buffer_mapped(&self, bytes: u64) {
        let now = self.buffer_bytes.fetch_add(bytes, Relaxed) + bytes;
        self.buffer_bytes_max.fetch_max(now, Relaxed);
    }

    pub(crate) fn buffer_unmapped(&self, bytes: u64) {
        self.buffer_bytes.fetch_sub(bytes, Relaxed);
    }

    #[cfg(test)]
    pub(crate) fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes.load(Relaxed)
    }

    /// Counts a corrupt record that the policy tolerates, keeping (and
    /// logging) the location of the first few.
    pub(crate) fn corrupt(&self, location: impl FnOnce() -> String) {
        if self.corrupt.fetch_add(1, Relaxed) < CORRUPT_LOCATIONS as u64 {
            let location = location();
            log::warn!("corrupt record: {location}");
            if let Ok(mut kept) = self.corrupt_locations.lock() {
                kept.push(location);
            }
        }
    }

    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let hist: Vec<u64> = self.latency.iter().map(|c| c.load(Relaxed)).collect();
        let records = self.records.load(Relaxed);
        let reads = self.reads.load(Relaxed);
        MetricsSnapshot {
            records,
            batches: self.batches.load(Relaxed),
            payload_bytes: self.payload_bytes.load(Relaxed),
            io_bytes: self.io_bytes.load(Relaxed),
            reads,
            records_per_read: if reads == 0 { 0.0 } else { records as f64 / reads as f64 },
            skipped: self.skipped.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            corrupt_locations: self.corrupt_locations.lock().map(|v| v.clone()).unwrap_or_default(),
            consumer_wait_ms: self.wait_ns.load(Relaxed) as f64 / 1e6,
            queue_depth_max: self.queue_depth_max.load(Relaxed),
            read_ms: self.read_ns.load(Relaxed) as f64 / 1e6,
            decode_ms: self.decode_ns.load(Relaxed) as f64 / 1e6,
            augment_ms: self.augment_ns.load(Relaxed) as f64 / 1e6,
            read_latency_us_p50: percentile(&hist, 0.50),
            read_latency_us_p99: percentile(&hist, 0.99),
            read_latency_us_max: hist.iter().rposition(|&c| c > 0).map_or(0, |i| 1u64 << (i + 1)),
            read_latency_histogram: hist,
            batch_buffer_bytes_max: self.buffer_bytes_max.load(Relaxed),
        }
    }
}

/// Upper bound (µs) of the bucket holding the `q` quantile.
fn percentile(hist: &[u64], q: f64) -> u64 {
    let total: u64 = hist.iter().sum();
    if total == 0 {
        return 0;
    }
    let target = (total as f64 * q).ceil() as u64;
    let mut seen = 0;
    for (i, &c) in hist.iter().enumerate() {
        seen += c;
        if seen >= target {
            return 1u64 << (i + 1);
        }
    }
    0
}

/// A point-in-time copy of the loader's counters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsSnapshot {
    /// Records delivered in batches.
    pub records: u64,
    /// Batches delivered.
    pub batches: u64,
    /// Payload bytes delivered.
    pub payload_bytes: u64,
    /// Bytes read from storage (alignment and merged gaps included).
    pub io_bytes: u64,
    /// Read requests issued.
    pub reads: u64,
    /// Records per read request: above 1 when neighbouring reads merged.
    pub records_per_read: f64,
    /// Corrupt records skipped under the skip policy.
    pub skipped: u64,
    /// Corrupt records replaced under the replace policy.
    pub replaced: u64,
    /// Corrupt records met under the skip and replace policies (failed
    /// checksum or undecodable), including candidates the replace policy
    /// tried and rejected.
    pub corrupt: u64,
    /// Where the first few corrupt records were and what was wrong.
    pub corrupt_locations: Vec<String>,
    /// Time the consumer spent waiting for batches.
    pub consumer_wait_ms: f64,
    /// Largest number of batches seen queued for the consumer.
    pub queue_depth_max: u64,
    /// Time workers spent reading units (from issuing the first request
    /// to copying the last record), summed over workers.
    pub read_ms: f64,
    /// Time workers spent decoding images, summed over workers.
    pub decode_ms: f64,
    /// Time workers spent cropping, resizing, flipping and normalizing.
    pub augment_ms: f64,
    /// Median read latency (upper bound of its power-of-two bucket), µs.
    pub read_latency_us_p50: u64,
    /// 99th percentile read latency (bucket upper bound), µs.
    pub read_latency_us_p99: u64,
    /// Slowest read (bucket upper bound), µs.
    pub read_latency_us_max: u64,
    /// Reads per latency bucket: bucket `i` is `[2^i, 2^(i+1))` µs.
    pub read_latency_histogram: Vec<u64>,
    /// Most bytes of batch buffers (records and pooled images) mapped at
    /// once, in use or kept for reuse: what
    /// [`LoaderBuilder::prefetch`](crate::LoaderBuilder::prefetch) bounds.
    pub batch_buffer_bytes_max: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_buckets() {
        let m = Metrics::default();
        for _ in 0..98 {
            m.read_done(Duration::from_micros(100), 10);
        }
        m.read_done(Duration::from_micros(5000), 10);
        m.read_done(Duration::from_micros(5000), 10);
        let s = m.snapshot();
        assert_eq!(s.reads, 100);
        assert_eq!(s.read_latency_us_p50, 128);
        assert_eq!(s.read_latency_us_p99, 8192);
        assert_eq!(s.read_latency_us_max, 8192);
        assert_eq!(s.io_bytes, 1000);
    }
}
