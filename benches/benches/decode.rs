//! Decode and pipeline costs per image on the decode crate's fixtures: full
//! JPEG decode, DCT-scaled decode, region decode, and the train and val
//! pipelines (the shared-photo-set comparison lives in
//! `benches/decode_vs_torchvision.py`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;
use ringfeed_decode::{Decoder, Limits, OutputMut, Pipeline, Pixels, Scale};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    std::fs::read(dir.join(name)).expect("fixture")
}

fn bench(c: &mut Criterion) {
    let big = fixture("big.jpg");
    let mut g = c.benchmark_group("decode_1280x960");
    let mut d = Decoder::new(Limits::default()).unwrap();
    let mut px = Pixels::default();
    for denom in [1, 2, 8] {
        g.bench_function(format!("jpeg_scale_1_{denom}"), |b| {
            b.iter(|| d.decode_into(black_box(&big), Scale { denom }, false, &mut px).unwrap())
        });
    }
    g.bench_function("jpeg_region_quarter", |b| {
        b.iter(|| {
            d.decode_region_into(
                black_box(&big),
                Scale::FULL,
                Some([320.0, 240.0, 640.0, 480.0]),
                false,
                &mut px,
            )
            .unwrap()
        })
    });
    let mut train = Pipeline::train(224).unwrap();
    let mut out = vec![0f32; train.output_len()];
    let mut seed = 0u64;
    g.bench_function("train_pipeline", |b| {
        b.iter(|| {
            seed += 1;
            train
                .run(black_box(&big), &mut Xoshiro256PlusPlus::seed_from_u64(seed), OutputMut::F32(&mut out))
                .unwrap()
        })
    });
    let mut val = Pipeline::val(256, 224).unwrap();
    g.bench_function("val_pipeline", |b| {
        b.iter(|| {
            val.run(black_box(&big), &mut Xoshiro256PlusPlus::seed_from_u64(0), OutputMut::F32(&mut out))
                .unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
