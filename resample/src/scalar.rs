//! The portable kernels: plain integer arithmetic that every SIMD kernel
//! must reproduce bit for bit (the tests compare them), and the fallback
//! on CPUs without one.

use crate::target::Planes;
use crate::weights::{BITS, HALF, Taps};

/// One intermediate row: source rows `taps.start[y]..` blended with
/// output row `y`'s weights, bytes `from..from + out.len()` of each row.
pub(crate) fn vertical_row(
    src: &[u8],
    stride: usize,
    taps: &Taps,
    y: usize,
    from: usize,
    acc: &mut Vec<i32>,
    out: &mut [u8],
) {
    acc.clear();
    acc.resize(out.len(), HALF);
    let first = taps.start[y] as usize;
    for (k, &w) in taps.of(y).iter().enumerate() {
        if w == 0 {
            continue;
        }
        let row = &src[(first + k) * stride + from..][..out.len()];
        for (a, &v) in acc.iter_mut().zip(row) {
            *a += i32::from(w) * i32::from(v);
        }
    }
    for (o, &a) in out.iter_mut().zip(acc.iter()) {
        *o = (a >> BITS).clamp(0, 255) as u8;
    }
}

/// Output pixels `xs` of row `y`: intermediate `row` (RGB, starting at
/// source column `origin`) blended horizontally, written into `planes`.
pub(crate) fn horizontal_pixels(
    row: &[u8],
    origin: u32,
    taps: &Taps,
    xs: std::ops::Range<usize>,
    y: usize,
    planes: &mut Planes<'_>,
) {
    for x in xs {
        let at = (taps.start[x] - origin) as usize * 3;
        let mut acc = [HALF; 3];
        for (k, &w) in taps.of(x).iter().enumerate() {
            if w == 0 {
                continue;
            }
            let px = &row[at + 3 * k..at + 3 * k + 3];
            for c in 0..3 {
                acc[c] += i32::from(w) * i32::from(px[c]);
            }
        }
        planes.put(y, x, acc.map(|a| (a >> BITS).clamp(0, 255) as u8));
    }
}
