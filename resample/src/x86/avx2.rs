//! AVX2 kernels (Haswell and later): two output pixels per vector in the
//! horizontal pass, 32 bytes per vector in the vertical one.

use std::arch::x86_64::{
    __m128i, __m256i, _mm_loadu_si128, _mm_srli_si128, _mm_storel_epi64, _mm_unpackhi_epi8,
    _mm_unpacklo_epi8, _mm256_add_epi32, _mm256_add_ps, _mm256_castsi128_si256, _mm256_castsi256_si128,
    _mm256_cvtepi32_ps, _mm256_cvtepu8_epi32, _mm256_extracti128_si256, _mm256_inserti128_si256,
    _mm256_loadu_si256, _mm256_madd_epi16, _mm256_mul_ps, _mm256_packs_epi32, _mm256_packus_epi16,
    _mm256_packus_epi32, _mm256_set1_epi32, _mm256_set1_ps, _mm256_setr_epi8, _mm256_setzero_si256,
    _mm256_shuffle_epi8, _mm256_srai_epi32, _mm256_storeu_ps, _mm256_storeu_si256, _mm256_unpackhi_epi8,
    _mm256_unpacklo_epi8,
};

use crate::scalar;
use crate::target::{Planes, Target};
use crate::weights::{BITS, HALF, Taps};

/// Proof that the running CPU has AVX2: the kernels below take it by
/// value, so they cannot be reached on a CPU without it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx2(());

impl Avx2 {
    pub(crate) fn detect() -> Option<Avx2> {
        std::is_x86_feature_detected!("avx2").then_some(Avx2(()))
    }

    /// See [`scalar::vertical_row`]; rows shorter than 32 bytes are left
    /// to the caller (returns false).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn vertical_row(
        self,
        src: &[u8],
        stride: usize,
        height: usize,
        taps: &Taps,
        y: usize,
        from: usize,
        out: &mut [u8],
    ) -> bool {
        if out.len() < 32 {
            return false;
        }
        // What `vertical_avx2` requires of its caller; then what the
        // result's correctness needs (whole tap pairs, a row `y`).
        assert!(height > 0 && from + out.len() <= stride && height * stride <= src.len());
        assert!(taps.window.is_multiple_of(2) && y < taps.start.len());
        // SAFETY: AVX2 is present (`self` exists only if `detect` saw it);
        // `height > 0`, `height * stride <= src.len()` and `from +
        // out.len() <= stride` were asserted just above.
        unsafe { vertical_avx2(src, stride, height, taps, y, from, out) };
        // The ragged end: one more chunk, overlapping the last one (it
        // recomputes the same bytes).
        let last = out.len() - 32;
        if !last.is_multiple_of(32) {
            // SAFETY: as above, with `from + last + (out.len() - last)` =
            // `from + out.len() <= stride`.
            unsafe { vertical_avx2(src, stride, height, taps, y, from + last, &mut out[last..]) };
        }
        true
    }

    /// Checks once per image what [`HorizontalPlan::row`] relies on for
    /// every row, and binds it to `taps` and `pairs` (borrowed, so they
    /// cannot change while the plan exists): each pixel's 16-byte loads at
    /// `(start - origin) * 3 + 12 * group` stay inside rows of `row_len`
    /// bytes, and `pairs` is long enough for every pixel pair's weights
    /// (it should hold [`pair_weights`] of `taps`).
    pub(crate) fn horizontal_plan<'a>(
        self,
        taps: &'a Taps,
        origin: u32,
        row_len: usize,
        pairs: &'a [i16],
    ) -> HorizontalPlan<'a> {
        let groups = taps.window / 4;
        let reach = taps.start.iter().max().map_or(0, |&s| (s - origin) as usize * 3) + 12 * groups + 4;
        assert!(taps.window.is_multiple_of(4) && taps.start.iter().all(|&s| s >= origin) && reach <= row_len);
        assert!(pairs.len() >= taps.start.len() / 2 * groups * 32);
        // Five taps fit one 16-byte load (15 bytes): common for downscales
        // a little over 2x, which would otherwise take two 4-tap groups.
        let five = groups == 2 && (0..taps.start.len()).all(|x| taps.of(x)[5..].iter().all(|&w| w == 0));
        HorizontalPlan { taps, pairs, origin, row_len, five, _avx2: self }
    }
}

/// A horizontal pass over `taps` and `pairs` whose bounds
/// [`Avx2::horizontal_plan`] checked.
#[derive(Debug)]
pub(crate) struct HorizontalPlan<'a> {
    taps: &'a Taps,
    pairs: &'a [i16],
    origin: u32,
    row_len: usize,
    /// Windows of 8 whose last three weights are all zero.
    five: bool,
    _avx2: Avx2,
}

impl HorizontalPlan<'_> {
    /// See [`scalar::horizontal_pixels`]: writes the whole row `y`.
    pub(crate) fn row(&self, row: &[u8], y: usize, planes: &mut Planes<'_>) {
        let (taps, origin) = (self.taps, self.origin);
        let width = taps.start.len();
        assert!(row.len() == self.row_len && planes.width == width);
        // Not needed for safety (stores are checked), but for writing the
        // right places.
        assert!((y + 1) * width <= planes.plane && 3 * planes.plane <= planes.target.len());
        let blocks = width / 8;
        // SAFETY: AVX2 is present (`_avx2` exists only if `detect` saw
        // it). `horizontal_plan` asserted, for these very `taps` and
        // `pairs` (borrowed by the plan, so unchanged since) and rows of
        // `row_len` bytes, which `row` is (asserted above): every start is
        // at least `origin`, the farthest start's offset plus `12 * groups
        // + 4` is at most `row_len`, the window is a multiple of 4 and
        // `pairs` holds `width / 2 * groups * 32` weights, `8 * blocks <=
        // width`; `five` implies a window of 8 (`groups == 2`).
        unsafe { horizontal_avx2(row, origin, taps, self.pairs, y, blocks, self.five, planes) };
        scalar::horizontal_pixels(row, origin, taps, blocks * 8..width, y, planes);
    }
}

/// The horizontal weights in the order [`horizontal_avx2`] loads
/// them: per pair of pixels `(x, x + 1)` and group of four taps `t`, two
/// vectors of 16 `i16`: taps `t, t + 1` of `x` then of `x + 1`, each as
/// `w0 w1 w0 w1 w0 w1 0 0` (one pair per channel, the fourth lane
/// unused), then the same for taps `t + 2, t + 3`.
pub(crate) fn pair_weights(taps: &Taps, out: &mut Vec<i16>) {
    out.clear();
    for pair in 0..taps.start.len() / 2 {
        for group in 0..taps.window / 4 {
            for half in [0, 2] {
                for x in [2 * pair, 2 * pair + 1] {
                    let w = &taps.of(x)[4 * group + half..];
                    out.extend_from_slice(&[w[0], w[1], w[0], w[1], w[0], w[1], 0, 0]);
                }
            }
        }
    }
}

/// The vertical pass over `out.len() / 32` chunks of 32 bytes: output
/// row `y` blends source rows `taps.start[y]..` (clamped to the last row),
/// bytes `from..` of each, into `out`.
///
/// # Safety
///
/// The CPU has AVX2, `height > 0`, `height * stride <= src.len()` and
/// `from + out.len() <= stride`: then every source row read (clamped below
/// `height`) lies inside `src`, and each 32-byte load at `row * stride +
/// from + 32 * chunk` ends by `row * stride + stride`. (Indexing `taps` and
/// `out` is checked.)
#[target_feature(enable = "avx2")]
unsafe fn vertical_avx2(
    src: &[u8],
    stride: usize,
    height: usize,
    taps: &Taps,
    y: usize,
    from: usize,
    out: &mut [u8],
) {
    let first = taps.start[y] as usize;
    let weights = taps.of(y);
    let zero = _mm256_setzero_si256();
    let half = _mm256_set1_epi32(HALF);
    for chunk in 0..out.len() / 32 {
        let at = from + 32 * chunk;
        let mut acc = [half; 4];
        for (k, pair) in weights.chunks_exact(2).enumerate() {
            if pair == [0, 0] {
                continue;
            }
            let row = |r: usize| (first + 2 * k + r).min(height - 1) * stride + at;
            // SAFETY: rows are clamped below `height`, and `at + 32 <= from
            // + out.len() <= stride` (the caller's obligation), so each
            // load ends by `height * stride <= src.len()` (also the
            // caller's).
            let (a, b) = unsafe {
                (
                    _mm256_loadu_si256(src.as_ptr().add(row(0)).cast::<__m256i>()),
                    _mm256_loadu_si256(src.as_ptr().add(row(1)).cast::<__m256i>()),
                )
            };
            // `pmaddwd` multiplies (row a, row b) byte pairs widened to
            // i16 by (w0, w1) and adds each pair: one i32 per column.
            let w = _mm256_set1_epi32(i32::from(pair[0] as u16) | (i32::from(pair[1]) << 16));
            let (lo, hi) = (_mm256_unpacklo_epi8(a, b), _mm256_unpackhi_epi8(a, b));
            acc[0] = _mm256_add_epi32(acc[0], _mm256_madd_epi16(_mm256_unpacklo_epi8(lo, zero), w));
            acc[1] = _mm256_add_epi32(acc[1], _mm256_madd_epi16(_mm256_unpackhi_epi8(lo, zero), w));
            acc[2] = _mm256_add_epi32(acc[2], _mm256_madd_epi16(_mm256_unpacklo_epi8(hi, zero), w));
            acc[3] = _mm256_add_epi32(acc[3], _mm256_madd_epi16(_mm256_unpackhi_epi8(hi, zero), w));
        }
        let acc = acc.map(|a| _mm256_srai_epi32::<{ BITS as i32 }>(a));
        // The packs undo the unpacks lane by lane: columns come back in
        // order, clamped to 0..=255 like the scalar kernel.
        let bytes =
            _mm256_packus_epi16(_mm256_packus_epi32(acc[0], acc[1]), _mm256_packus_epi32(acc[2], acc[3]));
        let dst = &mut out[32 * chunk..32 * chunk + 32];
        // SAFETY: `dst` is 32 bytes.
        unsafe { _mm256_storeu_si256(dst.as_mut_ptr().cast::<__m256i>(), bytes) };
    }
}

/// The horizontal pass for output pixels `0..8 * blocks` of row `y`:
/// pixel `x` blends the RGB pixels of `row` from `taps.start[x] - origin`
/// on with its weights, read from `pairs` as [`pair_weights`] lays them
/// out; written into `planes` (with checked stores).
///
/// # Safety
///
/// The CPU has AVX2, and for `width = taps.start.len()` and `groups =
/// taps.window / 4`:
/// - `8 * blocks <= width`;
/// - every `taps.start[x] >= origin`, and `(taps.start[x] - origin) * 3 +
///   12 * groups + 4 <= row.len()` (each pixel's last 16-byte load,
///   at `12 * (groups - 1)` past its start, stays inside `row`);
/// - `pairs.len() >= width / 2 * groups * 32` (the weights of every pixel
///   pair);
/// - `five` only when `groups == 2` (it loads one group of 16 bytes and
///   the first 48 weights of the pair).
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_avx2(
    row: &[u8],
    origin: u32,
    taps: &Taps,
    pairs: &[i16],
    y: usize,
    blocks: usize,
    five: bool,
    planes: &mut Planes<'_>,
) {
    let groups = taps.window / 4;
    // Per 128-bit lane, bytes of four RGB pixels (taps t..t + 3) become
    // i16 (r_t, r_t+1, g_t, g_t+1, b_t, b_t+1, 0, 0), and likewise for
    // taps t + 2, t + 3.
    #[rustfmt::skip]
    let taps01 = _mm256_setr_epi8(
        0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
        0, -1, 3, -1, 1, -1, 4, -1, 2, -1, 5, -1, -1, -1, -1, -1,
    );
    #[rustfmt::skip]
    let taps23 = _mm256_setr_epi8(
        6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,
        6, -1, 9, -1, 7, -1, 10, -1, 8, -1, 11, -1, -1, -1, -1, -1,
    );
    // Tap 4 alone, (r_4, 0, g_4, 0, b_4, 0, 0, 0), for five-tap windows.
    #[rustfmt::skip]
    let tap4 = _mm256_setr_epi8(
        12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, -1, -1, -1, -1,
        12, -1, -1, -1, 13, -1, -1, -1, 14, -1, -1, -1, -1, -1, -1, -1,
    );
    // After packing, each lane holds four pixels as RGB0 quads; gather
    // each channel's four bytes together.
    #[rustfmt::skip]
    let planar = _mm256_setr_epi8(
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
        0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
    );
    let half = _mm256_set1_epi32(HALF);
    let base = row.as_ptr();
    for block in 0..blocks {
        let mut quads = [half; 4];
        for (j, quad) in quads.iter_mut().enumerate() {
            let x = 8 * block + 2 * j;
            let at0 = (taps.start[x] - origin) as usize * 3;
            let at1 = (taps.start[x + 1] - origin) as usize * 3;
            let mut acc = half;
            if five {
                // SAFETY: the two 16-byte loads are group 0's of the loop
                // below (inside `row`, by the caller's reach bound); the
                // weights of the pair start at `x / 2 * 64` and the three
                // 16-weight loads end at `+ 48 <= (x / 2 + 1) * 64 <=
                // pairs.len()`, since `groups == 2` and `x + 1 < 8 *
                // blocks <= width` (the caller's obligations); the tap-4
                // weights are the first half of group 1's.
                let (v, w01, w23, w4) = unsafe {
                    let v = _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_loadu_si128(base.add(at0).cast::<__m128i>())),
                        _mm_loadu_si128(base.add(at1).cast::<__m128i>()),
                    );
                    let w = pairs.as_ptr().add(x / 2 * groups * 32);
                    let load = |at: usize| _mm256_loadu_si256(w.add(at).cast::<__m256i>());
                    (v, load(0), load(16), load(32))
                };
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, taps01), w01));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, taps23), w23));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, tap4), w4));
                *quad = _mm256_srai_epi32::<{ BITS as i32 }>(acc);
                continue;
            }
            for g in 0..groups {
                // SAFETY: `at + 12 * g + 16 <= at + 12 * groups + 4 <=
                // row.len()` for `at0` and `at1` (pixels `x` and `x + 1 <
                // 8 * blocks <= width`, starts at least `origin`), and the
                // 32 weights end at `(x / 2 * groups + g + 1) * 32 <= width
                // / 2 * groups * 32 <= pairs.len()`: the caller's
                // obligations.
                let (v, w01, w23) = unsafe {
                    let v = _mm256_inserti128_si256::<1>(
                        _mm256_castsi128_si256(_mm_loadu_si128(base.add(at0 + 12 * g).cast::<__m128i>())),
                        _mm_loadu_si128(base.add(at1 + 12 * g).cast::<__m128i>()),
                    );
                    let w = pairs.as_ptr().add((x / 2 * groups + g) * 32);
                    (
                        v,
                        _mm256_loadu_si256(w.cast::<__m256i>()),
                        _mm256_loadu_si256(w.add(16).cast::<__m256i>()),
                    )
                };
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, taps01), w01));
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_shuffle_epi8(v, taps23), w23));
            }
            // Lanes: (r, g, b, 0) of pixel x, then of x + 1.
            *quad = _mm256_srai_epi32::<{ BITS as i32 }>(acc);
        }
        // Lane 0: pixels 0, 2, 4, 6; lane 1: pixels 1, 3, 5, 7.
        let packed = _mm256_packus_epi16(
            _mm256_packs_epi32(quads[0], quads[1]),
            _mm256_packs_epi32(quads[2], quads[3]),
        );
        let grouped = _mm256_shuffle_epi8(packed, planar);
        let (even, odd) = (_mm256_castsi256_si128(grouped), _mm256_extracti128_si256::<1>(grouped));
        // r0..r7 g0..g7, then b0..b7 and padding.
        let (rg, b) = (_mm_unpacklo_epi8(even, odd), _mm_unpackhi_epi8(even, odd));
        store8(planes, y * planes.width + 8 * block, rg, b);
    }
}

/// Writes eight pixels' R, G, B bytes (`rg` low and high half, `b` low
/// half) at index `at` of each plane.
#[target_feature(enable = "avx2")]
fn store8(planes: &mut Planes<'_>, at: usize, rg: __m128i, b: __m128i) {
    let plane = planes.plane;
    let channels = [rg, _mm_srli_si128::<8>(rg), b];
    match &mut planes.target {
        Target::U8(out) => {
            for (c, v) in channels.into_iter().enumerate() {
                let dst = &mut out[c * plane + at..c * plane + at + 8];
                // SAFETY: `dst` is 8 bytes.
                unsafe { _mm_storel_epi64(dst.as_mut_ptr().cast::<__m128i>(), v) };
            }
        }
        Target::F32 { out, affine } => {
            for (c, v) in channels.into_iter().enumerate() {
                let f = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
                let f =
                    _mm256_add_ps(_mm256_mul_ps(f, _mm256_set1_ps(affine[c].0)), _mm256_set1_ps(affine[c].1));
                let dst = &mut out[c * plane + at..c * plane + at + 8];
                // SAFETY: `dst` is 8 floats.
                unsafe { _mm256_storeu_ps(dst.as_mut_ptr(), f) };
            }
        }
    }
}
