//! Cost of computing epoch orders: position → index for the global
//! permutation, sequential walks of the block shuffle, and whole batches
//! through `EpochPlan` (what each worker does per batch).

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ringfeed::{BlockShuffle, DdpConfig, EpochPlan, Permutation, Shuffle};

const N: u64 = 10_000_000;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("order");
    g.throughput(Throughput::Elements(4096));
    let p = Permutation::new(N, 1, 2);
    g.bench_function("permutation_get_4096", |b| {
        b.iter(|| (0..4096u64).map(|i| p.get(black_box(i * 2441))).fold(0, u64::wrapping_add))
    });
    let bs = BlockShuffle::new(N, 64, 1024, 1, 2).unwrap();
    g.bench_function("block_iter_4096", |b| {
        b.iter(|| bs.iter_range(black_box(123_456)..123_456 + 4096).fold(0, u64::wrapping_add))
    });
    let ddp = DdpConfig::new(3, 8, false).unwrap();
    let plan = EpochPlan::new(N, Shuffle::Global, 1, 2, ddp, 4096).unwrap();
    g.bench_function("epoch_plan_global_batch_4096", |b| b.iter(|| plan.batch_indices(black_box(77))));
    let plan = EpochPlan::new(N, Shuffle::block(), 1, 2, ddp, 4096).unwrap();
    g.bench_function("epoch_plan_block_batch_4096", |b| b.iter(|| plan.batch_indices(black_box(77))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
