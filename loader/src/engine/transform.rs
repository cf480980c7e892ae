//! User-supplied sample transforms: code of the caller's that runs on the
//! worker cores after decoding, on each sample in its slot of the batch.
//!
//! The caller's code is the one part of a run that ringfeed cannot vouch
//! for, so it is fenced: a transform that returns an error marks its
//! record bad (the [`ErrorPolicy`](crate::ErrorPolicy) decides what
//! happens), and one that panics ends the stream with
//! [`Error::Transform`](crate::Error::Transform) naming the record, instead
//! of killing a worker thread and leaving the consumer with a bare
//! shutdown.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::order::SampleRng;

/// One decoded sample, as a [`SampleTransform`] sees it: its `[C, H, W]`
/// values in the loader's output type, to change in place.
#[derive(Debug)]
#[non_exhaustive]
pub struct Sample<'a> {
    /// Dataset index of the record.
    pub index: u64,
    /// `[channels, height, width]`.
    pub shape: [usize; 3],
    /// The values, channel-major.
    pub pixels: SamplePixels<'a>,
}

/// The values of a [`Sample`], typed like the loader's output.
#[derive(Debug)]
#[non_exhaustive]
pub enum SamplePixels<'a> {
    /// `u8` output ([`ImagePipeline::u8`](crate::ImagePipeline::u8)).
    U8(&'a mut [u8]),
    /// Normalized `f32` output (what the presets give).
    F32(&'a mut [f32]),
}

type TransformFn = dyn Fn(Sample<'_>, &mut SampleRng) -> Result<(), String> + Send + Sync;

/// A caller's per-sample step, run after decoding and augmenting, on the
/// core that decoded the sample (see
/// [`LoaderBuilder::sample_transform`](crate::LoaderBuilder::sample_transform)).
///
/// It receives the sample and the sample's own random generator, seeded
/// from (seed, epoch, index) and already advanced past the built-in
/// augmentations, so whatever it draws is as reproducible as they are,
/// whichever core runs it.
#[derive(Clone)]
pub struct SampleTransform(Arc<TransformFn>);

impl SampleTransform {
    /// Wraps `f`. Return `Err(reason)` for a sample the transform cannot
    /// handle: the record then counts as corrupt and the error policy
    /// applies. A panic ends the stream with
    /// [`Error::Transform`](crate::Error::Transform).
    pub fn new(f: impl Fn(Sample<'_>, &mut SampleRng) -> Result<(), String> + Send + Sync + 'static) -> Self {
        SampleTransform(Arc::new(f))
    }

    /// Runs the transform, turning a panic into [`Outcome::Panicked`].
    pub(crate) fn apply(&self, sample: Sample<'_>, rng: &mut SampleRng) -> Outcome {
        // The sample and the generator are only borrowed for the call; after
        // a panic the sample's values are discarded with the run, and the
        // generator is not used again.
        match catch_unwind(AssertUnwindSafe(|| (self.0)(sample, rng))) {
            Ok(Ok(())) => Outcome::Done,
            Ok(Err(reason)) => Outcome::Rejected(reason),
            Err(payload) => Outcome::Panicked(panic_message(payload.as_ref())),
        }
    }
}

impl std::fmt::Debug for SampleTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SampleTransform(..)")
    }
}

/// What became of one call of a transform.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Done,
    /// The transform returned this reason.
    Rejected(String),
    /// The transform panicked with this message.
    Panicked(String),
}

/// The text of a panic, as `panic!` and `.unwrap()` produce it.
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(values: &mut [u8]) -> Sample<'_> {
        Sample { index: 7, shape: [1, 1, values.len()], pixels: SamplePixels::U8(values) }
    }

    #[test]
    fn outcomes_follow_what_the_transform_did() {
        let mut rng = crate::order::sample_rng(1, 2, 3);
        let invert = SampleTransform::new(|s, _| {
            if let SamplePixels::U8(v) = s.pixels {
                v.iter_mut().for_each(|x| *x = 255 - *x);
            }
            Ok(())
        });
        let mut v = [0u8, 10, 255];
        assert_eq!(invert.apply(sample(&mut v), &mut rng), Outcome::Done);
        assert_eq!(v, [255, 245, 0]);

        let reject = SampleTransform::new(|s, _| Err(format!("no thanks, {}", s.index)));
        assert_eq!(reject.apply(sample(&mut v), &mut rng), Outcome::Rejected("no thanks, 7".into()));

        let boom = SampleTransform::new(|s, _| panic!("bad sample {}", s.index));
        assert_eq!(boom.apply(sample(&mut v), &mut rng), Outcome::Panicked("bad sample 7".into()));
        let unwrap = SampleTransform::new(|s, _| {
            let found = s.shape.iter().position(|&d| d > 1_000).map(|_| ());
            found.expect("a value");
            Ok(())
        });
        assert_eq!(unwrap.apply(sample(&mut v), &mut rng), Outcome::Panicked("a value".into()));
        assert_eq!(panic_message(&42u32), "a panic with a non-string payload");
    }
}
