//! Where resampled pixels go: three planes (`[3, H, W]`), as bytes or as
//! normalized floats.

/// The output of [`Resampler::resample`](crate::Resampler::resample):
/// three planes, R then G then B, each `height * width` values, rows top
/// to bottom.
#[derive(Debug)]
pub enum Target<'a> {
    /// The resampled bytes.
    U8(&'a mut [u8]),
    /// `value * a + b` per channel `(a, b)`, computed as a multiply then an
    /// add (not fused), so every kernel gives the same bits.
    F32 {
        /// The planes.
        out: &'a mut [f32],
        /// Per channel `(a, b)`.
        affine: [(f32, f32); 3],
    },
}

impl Target<'_> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Target::U8(o) => o.len(),
            Target::F32 { out, .. } => out.len(),
        }
    }
}

/// A [`Target`] with its plane geometry, written one pixel or one row
/// segment at a time.
#[derive(Debug)]
pub(crate) struct Planes<'a> {
    pub(crate) target: Target<'a>,
    pub(crate) width: usize,
    pub(crate) plane: usize,
}

impl Planes<'_> {
    /// Writes pixel `(x, y)`.
    pub(crate) fn put(&mut self, y: usize, x: usize, rgb: [u8; 3]) {
        let at = y * self.width + x;
        match &mut self.target {
            Target::U8(o) => {
                for (c, v) in rgb.into_iter().enumerate() {
                    o[c * self.plane + at] = v;
                }
            }
            Target::F32 { out, affine } => {
                for (c, v) in rgb.into_iter().enumerate() {
                    out[c * self.plane + at] = f32::from(v) * affine[c].0 + affine[c].1;
                }
            }
        }
    }
}
