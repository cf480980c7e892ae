//! AVX-512 kernels (F, BW, VBMI, VNNI: Ice Lake, Sapphire Rapids, Zen 4
//! and later). The vertical pass is the AVX2 one at twice the width; the
//! horizontal pass computes four output pixels per vector: one 64-byte
//! load covers all their taps, and a byte permutation (`vpermb`) lays
//! each pixel's tap pairs out for `vpdpwssd`.

use std::arch::x86_64::{
    __m512i, _mm_storeu_si128, _mm512_add_ps, _mm512_cvtepi32_ps, _mm512_cvtepu8_epi32, _mm512_dpwssd_epi32,
    _mm512_extracti32x4_epi32, _mm512_loadu_si512, _mm512_maskz_permutexvar_epi8, _mm512_mul_ps,
    _mm512_packs_epi32, _mm512_packus_epi16, _mm512_packus_epi32, _mm512_permutexvar_epi8, _mm512_set1_epi32,
    _mm512_set1_ps, _mm512_setzero_si512, _mm512_srai_epi32, _mm512_storeu_ps, _mm512_storeu_si512,
    _mm512_unpackhi_epi8, _mm512_unpacklo_epi8,
};

use crate::scalar;
use crate::target::{Planes, Target};
use crate::weights::{BITS, HALF, Taps};

/// Proof that the running CPU has the AVX-512 subsets used here.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Avx512(());

impl Avx512 {
    pub(crate) fn detect() -> Option<Avx512> {
        let all = std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vbmi")
            && std::is_x86_feature_detected!("avx512vnni");
        all.then_some(Avx512(()))
    }

    /// See [`scalar::vertical_row`]; rows shorter than 64 bytes are left
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
        if out.len() < 64 {
            return false;
        }
        // What `vertical` requires of its caller; then what the result's
        // correctness needs (whole tap pairs, a row `y`).
        assert!(height > 0 && from + out.len() <= stride && height * stride <= src.len());
        assert!(taps.window.is_multiple_of(2) && y < taps.start.len());
        // SAFETY: the CPU has AVX-512 F, BW and VNNI (`self` exists only if
        // `detect` saw them); `height > 0`, `height * stride <= src.len()`
        // and `from + out.len() <= stride` were asserted just above.
        unsafe { vertical(src, stride, height, taps, y, from, out) };
        let last = out.len() - 64;
        if !last.is_multiple_of(64) {
            // The ragged end: one more chunk overlapping the last one.
            // SAFETY: as above, with `from + last + (out.len() - last)` =
            // `from + out.len() <= stride`.
            unsafe { vertical(src, stride, height, taps, y, from + last, &mut out[last..]) };
        }
        true
    }

    /// Lays out the horizontal pass for rows of `row_len` bytes whose
    /// first byte is source column `origin`, or `None` when some four
    /// neighbouring output pixels read more than 64 bytes (a downscale
    /// this kernel does not cover; the AVX2 one does).
    pub(crate) fn horizontal_plan(
        self,
        taps: &Taps,
        origin: u32,
        row_len: usize,
        plan: &mut HorizontalPlan,
    ) -> bool {
        let width = taps.start.len();
        let pairs = taps.window / 2;
        plan.ready = None;
        plan.bases.clear();
        plan.indices.clear();
        plan.weights.clear();
        plan.row_len = row_len;
        plan.pairs = pairs;
        plan.blocks = width / 16;
        for group in 0..plan.blocks * 4 {
            let xs = 4 * group..4 * group + 4;
            let offset = |x: usize| (taps.start[x] - origin) as usize * 3;
            let base = xs.clone().map(offset).min().unwrap_or(0);
            for x in xs.clone() {
                let used = taps.of(x).iter().rposition(|&w| w != 0).map_or(1, |p| p + 1);
                if offset(x) - base + 3 * used > 64 {
                    return false;
                }
            }
            if base + 64 > row_len {
                return false;
            }
            plan.bases.push(base);
            for pair in 0..pairs {
                for x in xs.clone() {
                    let (rel, w) = (offset(x) - base, &taps.of(x)[2 * pair..2 * pair + 2]);
                    // Byte `c * 4 + 2 * t` of the lane: channel c of tap
                    // `2 * pair + t`, widened to i16 (odd bytes are
                    // zeroed by the permutation's mask). Zero-weight taps
                    // may point anywhere inside the 64 bytes.
                    let mut lane = [0u8; 16];
                    for c in 0..3 {
                        for t in 0..2 {
                            lane[c * 4 + 2 * t] = (rel + 3 * (2 * pair + t) + c).min(63) as u8;
                        }
                    }
                    plan.indices.extend_from_slice(&lane);
                    plan.weights.extend_from_slice(&[w[0], w[1], w[0], w[1], w[0], w[1], 0, 0]);
                }
            }
        }
        plan.ready = Some(self);
        true
    }
}

/// The horizontal pass's per-image layout, kept to reuse its buffers.
#[derive(Debug, Default)]
pub(crate) struct HorizontalPlan {
    /// Per group of four pixels: the byte its 64-byte load starts at.
    bases: Vec<usize>,
    /// Per group and tap pair: the 64-byte permutation.
    indices: Vec<u8>,
    /// Per group and tap pair: 32 weights.
    weights: Vec<i16>,
    pairs: usize,
    blocks: usize,
    row_len: usize,
    ready: Option<Avx512>,
}

impl HorizontalPlan {
    /// See [`scalar::horizontal_pixels`]: writes the whole row `y`.
    pub(crate) fn row(&self, row: &[u8], origin: u32, taps: &Taps, y: usize, planes: &mut Planes<'_>) {
        let width = taps.start.len();
        let Some(_cpu) = self.ready else { unreachable!("horizontal_plan did not succeed") };
        assert!(row.len() == self.row_len && planes.width == width);
        assert!(
            self.bases.len() == self.blocks * 4 && self.indices.len() == self.bases.len() * self.pairs * 64
        );
        assert!(self.weights.len() == self.indices.len() / 2);
        // Not needed for safety (stores are checked), but for writing the
        // right places.
        assert!((y + 1) * width <= planes.plane && 3 * planes.plane <= planes.target.len());
        // SAFETY: the CPU has AVX-512 F, BW, VBMI and VNNI (`ready` holds
        // the proof, set only by a `horizontal_plan` that completed, which
        // also pushed every base after checking `base + 64 <= row_len`;
        // nothing else changes the plan, and `&self` keeps it so). `row`
        // is `row_len` bytes, and the tables are as long as the kernel
        // reads (both asserted above).
        unsafe { horizontal(self, row, y, planes) };
        scalar::horizontal_pixels(row, origin, taps, self.blocks * 16..width, y, planes);
    }
}

/// The vertical pass over `out.len() / 64` chunks of 64 bytes: output
/// row `y` blends source rows `taps.start[y]..` (clamped to the last row),
/// bytes `from..` of each, into `out`.
///
/// # Safety
///
/// The CPU has AVX-512 F, BW and VNNI, `height > 0`, `height * stride <=
/// src.len()` and `from + out.len() <= stride`: then every source row read
/// (clamped below `height`) lies inside `src`, and each 64-byte load at
/// `row * stride + from + 64 * chunk` ends by `row * stride + stride`.
/// (Indexing `taps` and `out` is checked.)
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vertical(
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
    let zero = _mm512_setzero_si512();
    let half = _mm512_set1_epi32(HALF);
    for chunk in 0..out.len() / 64 {
        let at = from + 64 * chunk;
        let mut acc = [half; 4];
        for (k, pair) in weights.chunks_exact(2).enumerate() {
            if pair == [0, 0] {
                continue;
            }
            let row = |r: usize| (first + 2 * k + r).min(height - 1) * stride + at;
            // SAFETY: rows are clamped below `height`, and `at + 64 <= from
            // + out.len() <= stride` (the caller's obligation), so each
            // load ends by `height * stride <= src.len()` (also the
            // caller's).
            let (a, b) = unsafe {
                (
                    _mm512_loadu_si512(src.as_ptr().add(row(0)).cast::<__m512i>()),
                    _mm512_loadu_si512(src.as_ptr().add(row(1)).cast::<__m512i>()),
                )
            };
            let w = _mm512_set1_epi32(i32::from(pair[0] as u16) | (i32::from(pair[1]) << 16));
            let (lo, hi) = (_mm512_unpacklo_epi8(a, b), _mm512_unpackhi_epi8(a, b));
            acc[0] = _mm512_dpwssd_epi32(acc[0], _mm512_unpacklo_epi8(lo, zero), w);
            acc[1] = _mm512_dpwssd_epi32(acc[1], _mm512_unpackhi_epi8(lo, zero), w);
            acc[2] = _mm512_dpwssd_epi32(acc[2], _mm512_unpacklo_epi8(hi, zero), w);
            acc[3] = _mm512_dpwssd_epi32(acc[3], _mm512_unpackhi_epi8(hi, zero), w);
        }
        let acc = acc.map(|a| _mm512_srai_epi32::<BITS>(a));
        let bytes =
            _mm512_packus_epi16(_mm512_packus_epi32(acc[0], acc[1]), _mm512_packus_epi32(acc[2], acc[3]));
        let dst = &mut out[64 * chunk..64 * chunk + 64];
        // SAFETY: `dst` is 64 bytes.
        unsafe { _mm512_storeu_si512(dst.as_mut_ptr().cast::<__m512i>(), bytes) };
    }
}

/// The horizontal pass for output pixels `0..16 * plan.blocks` of row
/// `y`, from the layout [`Avx512::horizontal_plan`] made; written into
/// `planes` with checked stores.
///
/// # Safety
///
/// The CPU has AVX-512 F, BW, VBMI and VNNI, and with `groups = 4 *
/// plan.blocks`: `plan.bases` holds at least `groups` entries, each with
/// `base + 64 <= row.len()`; `plan.indices` holds at least `groups *
/// plan.pairs * 64` bytes and `plan.weights` at least `groups * plan.pairs
/// * 32` weights.
#[target_feature(enable = "avx512f,avx512bw,avx512vbmi,avx512vnni")]
unsafe fn horizontal(plan: &HorizontalPlan, row: &[u8], y: usize, planes: &mut Planes<'_>) {
    let pairs = plan.pairs;
    let half = _mm512_set1_epi32(HALF);
    // After packing, lane i holds pixels i, 4 + i, 8 + i, 12 + i as RGB0
    // quads; gather R of pixels 0..16, then G, then B.
    let planar: [u8; 64] = std::array::from_fn(|at| {
        let (c, j) = (at / 16, at % 16);
        if c < 3 { (16 * (j % 4) + 4 * (j / 4) + c) as u8 } else { 0 }
    });
    // SAFETY: reading 64 bytes from a 64-byte array.
    let planar = unsafe { _mm512_loadu_si512(planar.as_ptr().cast::<__m512i>()) };
    let out_row = y * planes.width;
    for block in 0..plan.blocks {
        let mut quads = [half; 4];
        for (j, quad) in quads.iter_mut().enumerate() {
            let group = 4 * block + j;
            // SAFETY: `group < 4 * blocks`, so (the caller's obligations)
            // `bases[group] + 64 <= row.len()`, and the 64-byte index and
            // 32-weight loads at `at = group * pairs + pair` end by `(at +
            // 1) * 64 <= groups * pairs * 64 <= indices.len()` and `(at +
            // 1) * 32 <= weights.len()`.
            *quad = unsafe {
                let data = _mm512_loadu_si512(row.as_ptr().add(plan.bases[group]).cast::<__m512i>());
                let mut acc = half;
                for pair in 0..pairs {
                    let at = group * pairs + pair;
                    let index = _mm512_loadu_si512(plan.indices.as_ptr().add(64 * at).cast::<__m512i>());
                    let w = _mm512_loadu_si512(plan.weights.as_ptr().add(32 * at).cast::<__m512i>());
                    let taps = _mm512_maskz_permutexvar_epi8(0x5555_5555_5555_5555, index, data);
                    acc = _mm512_dpwssd_epi32(acc, taps, w);
                }
                _mm512_srai_epi32::<BITS>(acc)
            };
        }
        let packed = _mm512_packus_epi16(
            _mm512_packs_epi32(quads[0], quads[1]),
            _mm512_packs_epi32(quads[2], quads[3]),
        );
        let rgb = _mm512_permutexvar_epi8(planar, packed);
        let channels = [
            _mm512_extracti32x4_epi32::<0>(rgb),
            _mm512_extracti32x4_epi32::<1>(rgb),
            _mm512_extracti32x4_epi32::<2>(rgb),
        ];
        let at = out_row + 16 * block;
        let plane = planes.plane;
        match &mut planes.target {
            Target::U8(out) => {
                for (c, v) in channels.into_iter().enumerate() {
                    let dst = &mut out[c * plane + at..c * plane + at + 16];
                    // SAFETY: `dst` is 16 bytes.
                    unsafe { _mm_storeu_si128(dst.as_mut_ptr().cast(), v) };
                }
            }
            Target::F32 { out, affine } => {
                for (c, v) in channels.into_iter().enumerate() {
                    let f = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
                    let f = _mm512_add_ps(
                        _mm512_mul_ps(f, _mm512_set1_ps(affine[c].0)),
                        _mm512_set1_ps(affine[c].1),
                    );
                    let dst = &mut out[c * plane + at..c * plane + at + 16];
                    // SAFETY: `dst` is 16 floats.
                    unsafe { _mm512_storeu_ps(dst.as_mut_ptr(), f) };
                }
            }
        }
    }
}
