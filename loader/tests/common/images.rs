//! Packed image datasets built from the decode crate's fixtures.

use ringfeed::{ImagePipeline, PackWriter, Payload, Schema};

use super::scratch;

pub fn fixture(name: &str) -> Vec<u8> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    std::fs::read(dir.join(name)).unwrap()
}

/// 24 images (JPEG and PNG flavours), optionally with one non-image.
pub fn dataset(with_junk: bool) -> (tempfile::TempDir, Vec<Vec<u8>>) {
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

/// `record` decoded alone with the per-sample RNG of (seed 3, `epoch`,
/// `index`), as bytes.
pub fn standalone(pipeline: ImagePipeline, record: &[u8], epoch: u64, index: u64) -> Vec<u8> {
    standalone_with_rng(pipeline, record, epoch, index).0
}

/// A loader over `dir` with batches of 5, seed 3 and one rank.
pub fn loader(
    dir: &std::path::Path,
    pipeline: ImagePipeline,
    cores: usize,
    policy: ringfeed::ErrorPolicy,
) -> ringfeed::LoaderBuilder {
    ringfeed::Loader::builder(dir)
        .batch_size(5)
        .seed(3)
        .cores(cores)
        .on_error(policy)
        .images(pipeline)
        .ddp(ringfeed::DdpConfig::default())
}

/// As [`standalone`], with the sample's generator as the pipeline left it.
pub fn standalone_with_rng(
    pipeline: ImagePipeline,
    record: &[u8],
    epoch: u64,
    index: u64,
) -> (Vec<u8>, ringfeed::SampleRng) {
    let mut p = ringfeed_decode::Pipeline::new(
        pipeline.transform,
        ringfeed_decode::Layout::Chw,
        pipeline.output,
        false,
        ringfeed_decode::Limits::default(),
    )
    .unwrap();
    let mut rng = ringfeed::sample_rng(3, epoch, index);
    let bytes = if pipeline.output == ringfeed::ImageOutput::U8 {
        let mut want = vec![0u8; p.output_len()];
        p.run(record, &mut rng, ringfeed_decode::OutputMut::U8(&mut want)).unwrap();
        want
    } else {
        let mut f = vec![0f32; p.output_len()];
        p.run(record, &mut rng, ringfeed_decode::OutputMut::F32(&mut f)).unwrap();
        f.iter().flat_map(|v| v.to_ne_bytes()).collect()
    };
    (bytes, rng)
}
