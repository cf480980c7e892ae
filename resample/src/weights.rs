//! Filter taps: which source pixels each output pixel reads, and with
//! what fixed-point weight, following Pillow's `precompute_coeffs` for the
//! bilinear (triangle) filter with antialiasing.

/// Fixed-point precision of the weights: a weight of 1.0 is `1 << BITS`.
/// 14 bits keep every weight inside `i16` (for `pmaddwd`) and every sum of
/// `u8 * weight` inside `i32`.
pub(crate) const BITS: u32 = 14;
/// Added before the final shift so that it rounds to nearest.
pub(crate) const HALF: i32 = 1 << (BITS - 1);

/// Taps of one axis: output `i` reads source pixels
/// `start[i] .. start[i] + window` with weights
/// `weights[i * window .. (i + 1) * window]`. Windows are padded with zero
/// weights to a common `window`, a multiple of `pad`, so SIMD kernels need
/// no ragged tails; padding taps may point past the source's end (their
/// weight is zero, kernels must keep such reads inside their buffers).
#[derive(Debug, Clone, Default)]
pub(crate) struct Taps {
    pub(crate) start: Vec<u32>,
    pub(crate) weights: Vec<i16>,
    pub(crate) window: usize,
    /// Scratch, kept to make recomputing taps allocation-free.
    exact: Vec<f64>,
    raw: Vec<(u32, usize, usize)>,
    fixed: Vec<i16>,
    /// The arguments of the last [`set`](Self::set): images of one size
    /// often share a crop (the validation transform), and then the taps
    /// are already there.
    key: Option<(u32, u64, u64, u32, bool, usize)>,
}

impl Taps {
    /// Taps for resampling the span `[lo, lo + len)` of a source axis of
    /// `size` pixels onto `out` pixels, mirrored (output `i` computed as
    /// output `out - 1 - i`) when `mirror`.
    #[cfg(test)]
    pub(crate) fn new(size: u32, lo: f64, len: f64, out: u32, mirror: bool, pad: usize) -> Taps {
        let mut t = Taps::default();
        t.set(size, lo, len, out, mirror, pad);
        t
    }

    /// Recomputes the taps in place (see [`new`](Self::new)); allocates
    /// only when a window or output is larger than any before. Returns
    /// false when the arguments are those of the last call (nothing to do).
    pub(crate) fn set(&mut self, size: u32, lo: f64, len: f64, out: u32, mirror: bool, pad: usize) -> bool {
        let key = Some((size, lo.to_bits(), len.to_bits(), out, mirror, pad));
        if self.key == key {
            return false;
        }
        self.key = key;
        let scale = len / f64::from(out);
        let filter_scale = scale.max(1.0);
        let inverse = 1.0 / filter_scale;
        // The bilinear filter's support is 1, widened by the downscale
        // factor: that is the antialiasing.
        let support = filter_scale;
        // Pillow's window: no output reads more pixels than this.
        let ksize = support.ceil() as usize * 2 + 1;
        self.exact.resize(ksize, 0.0);
        self.raw.clear();
        self.fixed.clear();
        let mut widest = 1;
        for i in 0..out {
            let center = lo + (f64::from(i) + 0.5) * scale;
            // Pillow truncates `center ± support + 0.5` toward zero.
            let first = ((center - support + 0.5) as i64).clamp(0, i64::from(size)) as u32;
            let end = ((center + support + 0.5) as i64).clamp(i64::from(first), i64::from(size)) as u32;
            let n = ((end - first) as usize).min(ksize);
            let exact = &mut self.exact[..n];
            let mut total = 0.0;
            let offset = f64::from(first) - center + 0.5;
            for (k, w) in exact.iter_mut().enumerate() {
                *w = (1.0 - ((offset + k as f64) * inverse).abs()).max(0.0);
                total += *w;
            }
            let at = self.fixed.len();
            let first = quantize(first, exact, total, center, size, &mut self.fixed);
            widest = widest.max(self.fixed.len() - at);
            self.raw.push((first, at, self.fixed.len()));
        }
        self.window = widest.div_ceil(pad) * pad;
        self.start.clear();
        self.weights.clear();
        self.weights.resize(out as usize * self.window, 0);
        for (i, dst) in self.weights.chunks_exact_mut(self.window).enumerate() {
            let (first, from, to) = self.raw[if mirror { out as usize - 1 - i } else { i }];
            self.start.push(first);
            dst[..to - from].copy_from_slice(&self.fixed[from..to]);
        }
        true
    }

    /// The weights of output `i`.
    pub(crate) fn of(&self, i: usize) -> &[i16] {
        &self.weights[i * self.window..(i + 1) * self.window]
    }

    /// The source range any output reads with a nonzero weight, as
    /// `(first, end)`.
    pub(crate) fn span(&self) -> (u32, u32) {
        let mut first = u32::MAX;
        let mut end = 0;
        for (i, &s) in self.start.iter().enumerate() {
            let used = self.of(i).iter().rposition(|&w| w != 0).map_or(1, |p| p + 1);
            first = first.min(s);
            end = end.max(s + used as u32);
        }
        (first, end)
    }
}

/// Normalizes `exact` (the weights of pixels `first..`) to sum to one,
/// converts them to fixed point summing to exactly `1 << BITS` (so a
/// weighted sum of bytes never exceeds 255 after rounding), trims zero
/// weights at both ends and appends the rest to `out`. Returns the first
/// pixel kept. An output whose window holds no weight at all (a box
/// outside the image) reads the nearest pixel.
fn quantize(first: u32, exact: &mut [f64], total: f64, center: f64, size: u32, out: &mut Vec<i16>) -> u32 {
    let one = 1i32 << BITS;
    if total <= 0.0 || exact.is_empty() {
        out.push(one as i16);
        return (center.max(0.0) as u32).min(size.saturating_sub(1));
    }
    let norm = f64::from(one) / total;
    let at = out.len();
    let (mut sum, mut largest, mut top) = (0, 0, 0);
    for (i, &w) in exact.iter().enumerate() {
        // Weights are non-negative: truncation is the floor.
        let v = (w * norm + 0.5) as i32;
        sum += v;
        if v > top {
            (largest, top) = (i, v);
        }
        out.push(v as i16);
    }
    out[at + largest] += (one - sum) as i16;
    // Trim zero weights at both ends.
    let kept = &out[at..];
    let lead = kept.iter().take_while(|&&w| w == 0).count();
    let trail = kept.iter().rev().take_while(|&&w| w == 0).count();
    out.truncate(out.len() - trail);
    out.drain(at..at + lead);
    first + lead as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_stay_inside_the_source() {
        for (size, lo, len, out) in
            [(500, 0.0, 500.0, 224), (300, 13.7, 250.2, 224), (150, 0.0, 120.5, 224), (224, 0.0, 224.0, 224)]
        {
            let t = Taps::new(size, lo, len, out, false, 4);
            assert_eq!(t.window % 4, 0);
            for i in 0..out as usize {
                let w = t.of(i);
                assert_eq!(w.iter().map(|&w| i32::from(w)).sum::<i32>(), 1 << BITS);
                assert!(w.iter().all(|&w| w >= 0));
                let used = w.iter().rposition(|&w| w != 0).unwrap() + 1;
                assert!(t.start[i] as usize + used <= size as usize);
            }
            let (first, end) = t.span();
            assert!(first < end && end <= size);
        }
    }

    #[test]
    fn identity_is_one_tap_per_pixel() {
        let t = Taps::new(64, 0.0, 64.0, 64, false, 1);
        assert_eq!(t.window, 1);
        assert!(t.start.iter().enumerate().all(|(i, &s)| s as usize == i));
    }

    #[test]
    fn mirrored_taps_are_reversed() {
        let plain = Taps::new(300, 10.0, 250.0, 224, false, 4);
        let mirrored = Taps::new(300, 10.0, 250.0, 224, true, 4);
        for i in 0..224 {
            assert_eq!(plain.start[i], mirrored.start[223 - i]);
            assert_eq!(plain.of(i), mirrored.of(223 - i));
        }
    }
}
