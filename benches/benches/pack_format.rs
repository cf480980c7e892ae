//! Pack format costs: writing records, opening a dataset (index
//! validation), random record reads with CRC checks, and full verification.
//! Data lives in a directory under `target/` (the real file system).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ringfeed::{Dataset, PackWriter, Payload, Schema};

const RECORDS: usize = 2000;

fn payload(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|b| (b as u32).wrapping_mul(2_654_435_761).wrapping_add(i as u32) as u8).collect()
}

fn write_dataset(dir: &std::path::Path, len: usize) {
    let schema = Schema { payload: Payload::Bytes, labels: true, keys: false };
    let mut w = PackWriter::builder(dir).schema(schema).shard_size(64 << 20).build().unwrap();
    let body = payload(0, len);
    for i in 0..RECORDS {
        w.push(&body, (i % 10) as i64, None).unwrap();
    }
    w.finish().unwrap();
}

fn bench(c: &mut Criterion) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&root).unwrap();
    for len in [5_000usize, 110_000] {
        let mut g = c.benchmark_group(format!("pack_format/{}KB", len / 1000));
        g.sample_size(10);
        g.throughput(Throughput::Bytes((len * RECORDS) as u64));
        let dir = tempfile::tempdir_in(&root).unwrap();
        g.bench_function(BenchmarkId::new("write", RECORDS), |b| b.iter(|| write_dataset(dir.path(), len)));
        g.throughput(Throughput::Elements(RECORDS as u64));
        g.bench_function(BenchmarkId::new("open", RECORDS), |b| {
            b.iter(|| Dataset::open(dir.path()).unwrap())
        });
        g.throughput(Throughput::Bytes((len * RECORDS) as u64));
        let ds = Dataset::open(dir.path()).unwrap();
        g.bench_function(BenchmarkId::new("read_all_strided", RECORDS), |b| {
            b.iter(|| {
                // A fixed stride visits every record in a scattered order.
                for k in 0..RECORDS as u64 {
                    black_box(ds.record((k * 7919) % RECORDS as u64).unwrap());
                }
            })
        });
        g.bench_function(BenchmarkId::new("verify", RECORDS), |b| {
            b.iter(|| assert!(ringfeed::verify(dir.path(), |_| {}).unwrap().is_clean()))
        });
        g.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
