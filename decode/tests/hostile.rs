//! Arbitrary and mutated inputs never panic: every outcome is an image or
//! an error.

use proptest::prelude::*;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::SeedableRng;
use ringfeed_decode::{Decoder, Limits, OutputMut, Pipeline, Pixels, Scale};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    #[test]
    fn random_bytes_behind_a_magic_never_panic(body in prop::collection::vec(any::<u8>(), 0..2048), png in any::<bool>()) {
        let mut bytes = if png { vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A] } else { vec![0xFF, 0xD8, 0xFF] };
        bytes.extend(body);
        let mut d = Decoder::new(Limits::default()).unwrap();
        let mut px = Pixels::default();
        let _ = d.decode_into(&bytes, Scale::FULL, false, &mut px);
    }

    #[test]
    fn mutated_real_images_never_panic(
        which in 0usize..4,
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        seed in any::<u64>(),
    ) {
        let names = ["rgb.jpg", "progressive.jpg", "rgb.png", "cmyk.jpg"];
        let mut bytes = fixture(names[which]);
        for (at, v) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= v;
        }
        bytes.truncate(cut.index(bytes.len()) + 1);
        let mut p = Pipeline::train(48).unwrap();
        let mut out = vec![0f32; p.output_len()];
        let _ = p.run(&bytes, &mut Xoshiro256PlusPlus::seed_from_u64(seed), OutputMut::F32(&mut out));
    }
}
