//! Images decoded and augmented inside the engine: shapes, agreement with
//! decoding the same record alone with the same per-sample RNG, the same
//! batches with 1 or 2 cores, and undecodable records under both policies.

mod common;

use common::*;
use ringfeed::{
    Batch, DdpConfig, Digest, ErrorPolicy, ImageDtype, ImagePipeline, Loader, PackWriter, Payload, Schema,
};

fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    std::fs::read(dir.join(name)).unwrap()
}

/// 24 images (JPEG and PNG flavours), optionally with one non-image.
fn dataset(with_junk: bool) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let dir = scratch();
    let names = [
        "rgb.jpg",
        "progressive.jpg",
        "gray.jpg",
        "cmyk.jpg",
        "rgb.png",
        "palette.png",
        "big.jpg",
        "rgba.png",
    ];
    let mut recs: Vec<Vec<u8>> = (0..24).map(|i| fixture(names[i % names.len()])).collect();
    if with_junk {
        recs[5] = b"definitely not an image".to_vec();
    }
    let schema = Schema { payload: Payload::Image, labels: true, keys: false };
    let mut w = PackWriter::builder(dir.path()).schema(schema).shard_size(1 << 20).build().unwrap();
    for (i, r) in recs.iter().enumerate() {
        w.push(r, (i % 3) as i64, None).unwrap();
    }
    w.finish().unwrap();
    (dir, recs)
}

fn run(
    dir: &std::path::Path,
    pipeline: ImagePipeline,
    cores: usize,
    policy: ErrorPolicy,
) -> Vec<ringfeed::Result<Batch>> {
    Loader::builder(dir)
        .batch_size(5)
        .seed(3)
        .cores(cores)
        .on_error(policy)
        .images(pipeline)
        .ddp(DdpConfig::default())
        .build()
        .unwrap()
        .collect()
}

#[test]
fn images_match_a_standalone_decode_and_do_not_depend_on_cores() {
    let (dir, recs) = dataset(false);
    for pipeline in
        [ImagePipeline::train(64), ImagePipeline::val(73, 64), ImagePipeline::train(32).normalized()]
    {
        let mut digests = Vec::new();
        for cores in [1, 2] {
            let batches: Vec<Batch> =
                run(dir.path(), pipeline, cores, ErrorPolicy::Fail).into_iter().map(Result::unwrap).collect();
            assert_eq!(batches.iter().map(Batch::len).sum::<usize>(), 24);
            let mut d = Digest::default();
            for b in &batches {
                d.update(b);
                let images = b.images.as_ref().expect("images requested");
                let side = if pipeline == ImagePipeline::train(32).normalized() { 32 } else { 64 };
                assert_eq!(images.shape, [b.len(), 3, side, side]);
                let elem = if images.dtype == ImageDtype::U8 { 1 } else { 4 };
                assert_eq!(images.data.len(), b.len() * 3 * side * side * elem);
                // The same record decoded alone with its per-sample RNG gives
                // the same pixels.
                let mut p = ringfeed_decode::Pipeline::new(
                    pipeline.transform,
                    ringfeed_decode::Layout::Chw,
                    pipeline.output,
                    false,
                    ringfeed_decode::Limits::default(),
                )
                .unwrap();
                let slot = 3 * side * side * elem;
                let i = b.len() - 1;
                let mut rng = ringfeed::sample_rng(3, b.epoch, b.indices[i]);
                let mut want = vec![0u8; slot];
                if elem == 1 {
                    p.run(&recs[b.indices[i] as usize], &mut rng, ringfeed_decode::OutputMut::U8(&mut want))
                        .unwrap();
                } else {
                    let mut f = vec![0f32; 3 * side * side];
                    p.run(&recs[b.indices[i] as usize], &mut rng, ringfeed_decode::OutputMut::F32(&mut f))
                        .unwrap();
                    want = f.iter().flat_map(|v| v.to_ne_bytes()).collect();
                }
                assert_eq!(&images.data[i * slot..(i + 1) * slot], &want[..]);
            }
            digests.push(d.hex());
        }
        assert_eq!(digests[0], digests[1], "{pipeline:?}: cores change the images");
    }
}

#[test]
fn undecodable_records_fail_or_are_skipped() {
    let (dir, _) = dataset(true);
    let results = run(dir.path(), ImagePipeline::train(32), 2, ErrorPolicy::Fail);
    let err = results.into_iter().find_map(Result::err).expect("the junk record must surface");
    assert!(err.is_corruption(), "{err}");
    assert!(err.to_string().contains("record 5"), "{err}");

    let batches: Vec<Batch> = run(dir.path(), ImagePipeline::train(32), 2, ErrorPolicy::Skip)
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let skipped: Vec<u64> = batches.iter().flat_map(|b| b.skipped.clone()).collect();
    assert_eq!(skipped, [5]);
    for b in &batches {
        let images = b.images.as_ref().unwrap();
        assert_eq!(images.shape[0], b.len(), "image rows follow the kept records");
        assert!(!b.indices.contains(&5));
    }
}
