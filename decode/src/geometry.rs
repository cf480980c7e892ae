//! Crop boxes, with torchvision's exact rules, drawn from a per-sample RNG.
//!
//! Rounding follows Python's `round` (ties to even), as torchvision does,
//! so for the same random draws the boxes are identical to torchvision's.

use rand_xoshiro::rand_core::Rng;

/// A region of the full-resolution source image, in pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropBox {
    /// Left edge.
    pub left: f64,
    /// Top edge.
    pub top: f64,
    /// Width.
    pub width: f64,
    /// Height.
    pub height: f64,
}

/// A uniform draw in `[lo, hi)`, like `torch.empty(1).uniform_(lo, hi)`.
pub(crate) fn uniform(rng: &mut impl Rng, lo: f64, hi: f64) -> f64 {
    let unit = (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    lo + (hi - lo) * unit
}

/// An integer draw in `[lo, hi)`, like `torch.randint(lo, hi)`.
fn randint(rng: &mut impl Rng, lo: u64, hi: u64) -> u64 {
    // Multiply-shift maps 64 random bits onto the range without modulo bias
    // worth measuring for image-sized ranges.
    lo + ((u128::from(rng.next_u64()) * u128::from(hi - lo)) >> 64) as u64
}

fn round_even(x: f64) -> f64 {
    x.round_ties_even()
}

/// torchvision's `RandomResizedCrop.get_params`: up to 10 attempts at a
/// box of `scale` × the area and aspect ratio in `ratio` (log-uniform),
/// then a central crop clamped to the ratio range.
pub fn random_resized_crop(
    width: u32,
    height: u32,
    scale: (f64, f64),
    ratio: (f64, f64),
    rng: &mut impl Rng,
) -> CropBox {
    let (w_img, h_img) = (f64::from(width), f64::from(height));
    let area = w_img * h_img;
    let (log_lo, log_hi) = (ratio.0.ln(), ratio.1.ln());
    for _ in 0..10 {
        let target_area = area * uniform(rng, scale.0, scale.1);
        let aspect = uniform(rng, log_lo, log_hi).exp();
        let w = round_even((target_area * aspect).sqrt());
        let h = round_even((target_area / aspect).sqrt());
        if 0.0 < w && w <= w_img && 0.0 < h && h <= h_img {
            let top = randint(rng, 0, (h_img - h) as u64 + 1) as f64;
            let left = randint(rng, 0, (w_img - w) as u64 + 1) as f64;
            return CropBox { left, top, width: w, height: h };
        }
    }
    let in_ratio = w_img / h_img;
    let (w, h) = if in_ratio < ratio.0.min(ratio.1) {
        (w_img, round_even(w_img / ratio.0.min(ratio.1)))
    } else if in_ratio > ratio.0.max(ratio.1) {
        (round_even(h_img * ratio.0.max(ratio.1)), h_img)
    } else {
        (w_img, h_img)
    };
    CropBox { left: ((w_img - w) / 2.0).floor(), top: ((h_img - h) / 2.0).floor(), width: w, height: h }
}

/// torchvision's `Resize(shorter)` followed by `CenterCrop(crop)`, as one
/// box in source pixels: the part of the source that lands in the crop.
pub fn resize_center_crop(width: u32, height: u32, shorter: u32, crop: u32) -> CropBox {
    let (w, h, s) = (f64::from(width), f64::from(height), f64::from(shorter));
    // torchvision: the long side is int(shorter * long / short), truncated.
    let (new_w, new_h) = if width <= height { (s, (s * h / w).floor()) } else { ((s * w / h).floor(), s) };
    let c = f64::from(crop);
    let top = round_even((new_h - c) / 2.0);
    let left = round_even((new_w - c) / 2.0);
    let (sx, sy) = (w / new_w, h / new_h);
    CropBox { left: left * sx, top: top * sy, width: c * sx, height: c * sy }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_xoshiro::Xoshiro256PlusPlus;
    use rand_xoshiro::rand_core::SeedableRng;

    #[test]
    fn boxes_stay_inside_and_follow_the_rules() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        for (w, h) in [(500, 375), (375, 500), (4500, 3000), (10, 1000), (1, 1), (224, 224)] {
            for _ in 0..2000 {
                let b = random_resized_crop(w, h, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
                assert!(b.width >= 1.0 && b.height >= 1.0, "{b:?}");
                assert!(
                    b.left + b.width <= f64::from(w) && b.top + b.height <= f64::from(h),
                    "{w}x{h}: {b:?}"
                );
                assert_eq!(
                    (b.left.fract(), b.top.fract(), b.width.fract(), b.height.fract()),
                    (0.0, 0.0, 0.0, 0.0)
                );
            }
        }
    }

    #[test]
    fn extreme_aspect_falls_back_to_a_clamped_center_crop() {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(2);
        // 10x1000 can never fit a box of ratio >= 3/4 covering 8% of it.
        let b = random_resized_crop(10, 1000, (0.08, 1.0), (3.0 / 4.0, 4.0 / 3.0), &mut rng);
        assert_eq!((b.width, b.height), (10.0, 13.0));
        assert_eq!((b.left, b.top), (0.0, 493.0));
    }

    #[test]
    fn val_box_matches_torchvision_arithmetic() {
        // 500x375 → Resize(256) → 341x256 → CenterCrop(224): left = round(58.5) = 58, top = 16.
        let b = resize_center_crop(500, 375, 256, 224);
        let s = 375.0 / 256.0;
        assert!((b.left - 58.0 * 500.0 / 341.0).abs() < 1e-9);
        assert!((b.top - 16.0 * s).abs() < 1e-9);
        assert!((b.height - 224.0 * s).abs() < 1e-9);
    }
}
