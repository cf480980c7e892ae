//! Crop + resize with geometry taken from the input (image size, crop box
//! as raw f64 bits, so NaN, infinities, negative and huge boxes included,
//! output size, mirroring); the rest of the input is the pixels. Every
//! kernel set must give the portable result, bit for bit, or the same
//! error; nothing may panic or read out of bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringfeed_resample::{Image, Kernels, Resampler, Target};

fuzz_target!(|data: &[u8]| {
    let Some((head, rest)) = data.split_first_chunk::<40>() else { return };
    let w = 1 + u32::from(u16::from_le_bytes([head[0], head[1]]) % 700);
    let h = 1 + u32::from(u16::from_le_bytes([head[2], head[3]]) % 300);
    let ow = 1 + u32::from(head[4]) % 240;
    let oh = 1 + u32::from(head[5]) % 240;
    let mirror = head[6] & 1 == 1;
    let crop: [f64; 4] = std::array::from_fn(|i| {
        let bits = u64::from_le_bytes(head[8 + 8 * i..16 + 8 * i].try_into().unwrap());
        // Half of the boxes from raw bits, half scaled into the image.
        if head[7] & (1 << i) != 0 {
            f64::from_bits(bits)
        } else {
            let unit = (bits >> 11) as f64 / (1u64 << 53) as f64;
            let size = f64::from(if i % 2 == 0 { w } else { h });
            if i < 2 { unit * size * 1.2 - 0.1 * size } else { unit * size * 1.2 }
        }
    });
    let len = (w * h * 3) as usize;
    let pixels: Vec<u8> = (0..len).map(|i| rest.get(i % rest.len().max(1)).copied().unwrap_or(0) ^ (i as u8)).collect();
    let image = Image { data: &pixels, width: w, height: h };
    let mut results = Vec::new();
    for kernels in [Kernels::Portable, Kernels::Avx2, Kernels::Fastest] {
        let mut out = vec![0u8; (3 * ow * oh) as usize];
        let r = Resampler::with_kernels(kernels).resample(image, crop, (ow, oh), mirror, Target::U8(&mut out));
        results.push(r.map(|()| out));
    }
    assert!(results.windows(2).all(|p| p[0] == p[1]), "kernels disagree on {w}x{h} {crop:?} -> {ow}x{oh}");
});
