//! The loader's resumable state: a few integers and the image pipeline,
//! everything that decides which records (and pixels) a batch holds.

use serde::{Deserialize, Serialize};

use super::images::ImagePipeline;
use super::plan::Shuffle;
use crate::{Error, Result};

/// Everything needed to continue a run exactly where it stopped: feed it
/// to [`LoaderBuilder::resume`](crate::LoaderBuilder::resume) and the
/// loader yields exactly the batches the stopped run had not delivered.
///
/// It records the position (`epoch`, `next_batch`) and everything that
/// decides what the batches hold: seed, order, batch size, ranks,
/// `drop_last`, the dataset's record count and the image pipeline. A
/// resume whose builder sets any of these to another value is refused
/// rather than silently changing the batches, and so is a state of another
/// [`version`](Self::version) (another build's epoch orders). A
/// [`SampleTransform`](crate::SampleTransform) is code and is not
/// recorded: resume with the same one.
///
/// Serialize it with serde (e.g. JSON) next to the model checkpoint.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[non_exhaustive]
pub struct LoaderState {
    /// Version of the epoch orders and of this format
    /// ([`LoaderState::VERSION`] for states this build writes). States
    /// saved before the field existed read as version 1.
    #[serde(default = "version_1")]
    pub version: u32,
    /// Base seed of all orders and per-sample RNGs.
    pub seed: u64,
    /// Epoch of the next batch.
    pub epoch: u64,
    /// Index (within `epoch`, for this rank) of the next batch.
    pub next_batch: u64,
    /// Records per batch.
    pub batch_size: u64,
    /// This process's rank.
    pub rank: u64,
    /// Number of ranks.
    pub world_size: u64,
    /// Whether the tail of each epoch is dropped rather than padded.
    pub drop_last: bool,
    /// The order.
    pub shuffle: Shuffle,
    /// Records in the dataset, to refuse resuming on a different one.
    pub records: u64,
    /// The image pipeline that decoded each batch's records, if any.
    #[serde(default, with = "pipeline_spec", skip_serializing_if = "Option::is_none")]
    pub images: Option<ImagePipeline>,
}

fn version_1() -> u32 {
    1
}

impl PartialEq for LoaderState {
    /// Field by field; image pipelines compare by their exact parameters
    /// (floats bit for bit), so the relation is an equivalence.
    fn eq(&self, other: &Self) -> bool {
        let LoaderState {
            version,
            seed,
            epoch,
            next_batch,
            batch_size,
            rank,
            world_size,
            drop_last,
            shuffle,
            records,
            images,
        } = *self;
        (version, seed, epoch, next_batch, batch_size, rank, world_size, drop_last, shuffle, records)
            == (
                other.version,
                other.seed,
                other.epoch,
                other.next_batch,
                other.batch_size,
                other.rank,
                other.world_size,
                other.drop_last,
                other.shuffle,
                other.records,
            )
            && same_pipeline(images.as_ref(), other.images.as_ref())
    }
}

impl Eq for LoaderState {}

/// Whether two optional pipelines are the same, parameter for parameter
/// (`Debug` prints every field, floats in their shortest exact form).
pub(crate) fn same_pipeline(a: Option<&ImagePipeline>, b: Option<&ImagePipeline>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

impl LoaderState {
    /// Version of the states this build writes and resumes. Version 1
    /// (states without the field) predates the keyed block order of
    /// issue #13: a block-mode run resumed from one would continue in
    /// another order, so such states are refused.
    pub const VERSION: u32 = 2;

    /// Parses a state saved with `serde_json` (as `ringfeed` writes it).
    pub fn from_json(text: &str) -> Result<Self> {
        serde_json::from_str(text).map_err(|e| Error::Config(format!("invalid loader state: {e}")))
    }

    /// The state as one line of JSON.
    pub fn to_json(&self) -> String {
        // Every pipeline a loader runs has a spec (checked at build), and
        // the rest is integers.
        serde_json::to_string(self).expect("state serializes")
    }

    /// Moves past one delivered batch of an epoch with `batches_per_epoch`.
    pub(crate) fn advance(&mut self, batches_per_epoch: u64) {
        self.next_batch += 1;
        if self.next_batch >= batches_per_epoch {
            self.epoch += 1;
            self.next_batch = 0;
        }
    }

    /// Refuses a state this build cannot resume exactly.
    pub(crate) fn check_version(&self) -> Result<()> {
        match self.version {
            v if v == Self::VERSION => Ok(()),
            v if v < Self::VERSION => Err(Error::Config(format!(
                "the saved loader state is of version {v}, written by an older ringfeed whose epoch \
                 orders differ from this build's (version {}): resuming would deliver other batches \
                 than the saved run planned; restart its epoch instead (start_epoch({}) without resume)",
                Self::VERSION,
                self.epoch
            ))),
            v => Err(Error::Config(format!(
                "the saved loader state is of version {v}, written by a newer ringfeed; this build \
                 resumes version {} states",
                Self::VERSION
            ))),
        }
    }
}

/// A compact, serializable description of an [`ImagePipeline`], so that
/// the state can refuse a resume that would decode other pixels.
mod pipeline_spec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ImagePipeline;
    use crate::engine::images::{ImageOutput, ImageTransform};

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case", tag = "transform")]
    enum TransformSpec {
        Train { size: u32, scale: (f64, f64), ratio: (f64, f64), flip: f64 },
        Val { resize: u32, crop: u32 },
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum OutputSpec {
        U8,
        F32 { mean: [f32; 3], std: [f32; 3] },
    }

    #[derive(Serialize, Deserialize)]
    struct Spec {
        #[serde(flatten)]
        transform: TransformSpec,
        output: OutputSpec,
    }

    /// The spec of `pipeline`; `None` for a transform this build cannot
    /// record (a variant added to the decoder after this code).
    pub(crate) fn describe(pipeline: &ImagePipeline) -> Option<impl Serialize + use<>> {
        // Destructured whole: a field added to `ImagePipeline` must be
        // recorded here too, or a resume could silently change the pixels.
        let ImagePipeline { transform, output } = *pipeline;
        let transform = match transform {
            ImageTransform::Train { size, scale, ratio, flip } => {
                TransformSpec::Train { size, scale, ratio, flip }
            }
            ImageTransform::Val { resize, crop } => TransformSpec::Val { resize, crop },
            _ => return None,
        };
        let output = match output {
            ImageOutput::U8 => OutputSpec::U8,
            ImageOutput::F32 { mean, std } => OutputSpec::F32 { mean, std },
        };
        Some(Spec { transform, output })
    }

    pub(super) fn serialize<S: Serializer>(images: &Option<ImagePipeline>, s: S) -> Result<S::Ok, S::Error> {
        match images {
            None => s.serialize_none(),
            Some(p) => match describe(p) {
                Some(spec) => s.serialize_some(&spec),
                None => Err(serde::ser::Error::custom(format!("image pipeline {p:?} has no spec"))),
            },
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<ImagePipeline>, D::Error> {
        let Some(spec) = Option::<Spec>::deserialize(d)? else { return Ok(None) };
        let transform = match spec.transform {
            TransformSpec::Train { size, scale, ratio, flip } => {
                ImageTransform::Train { size, scale, ratio, flip }
            }
            TransformSpec::Val { resize, crop } => ImageTransform::Val { resize, crop },
        };
        let output = match spec.output {
            OutputSpec::U8 => ImageOutput::U8,
            OutputSpec::F32 { mean, std } => ImageOutput::F32 { mean, std },
        };
        Ok(Some(ImagePipeline { transform, output }))
    }
}

pub(crate) use pipeline_spec::describe as describe_pipeline;

#[cfg(test)]
mod tests {
    use super::*;

    fn state(images: Option<ImagePipeline>) -> LoaderState {
        LoaderState {
            version: LoaderState::VERSION,
            seed: 7,
            epoch: 1,
            next_batch: 3,
            batch_size: 24,
            rank: 1,
            world_size: 2,
            drop_last: true,
            shuffle: Shuffle::Block { block_len: 8, window: 100 },
            records: 600,
            images,
        }
    }

    #[test]
    fn json_round_trips_with_and_without_images() {
        for images in [
            None,
            Some(ImagePipeline::train(224)),
            Some(ImagePipeline { output: crate::ImageOutput::U8, ..ImagePipeline::train(224) }),
            Some(ImagePipeline::val(256, 224).normalized()),
        ] {
            let st = state(images);
            let back = LoaderState::from_json(&st.to_json()).unwrap();
            assert_eq!(back, st, "{}", st.to_json());
            assert_eq!(back.to_json(), st.to_json());
        }
        assert!(
            !state(None).to_json().contains("images"),
            "no pipeline, no field: {}",
            state(None).to_json()
        );
    }

    #[test]
    fn pipelines_compare_by_every_parameter() {
        let a = state(Some(ImagePipeline::train(224)));
        let raw = ImagePipeline { output: crate::ImageOutput::U8, ..ImagePipeline::train(224) };
        assert_ne!(a, state(Some(raw)));
        assert_ne!(a, state(Some(ImagePipeline::train(192))));
        assert_ne!(a, state(None));
        assert_eq!(a, state(Some(ImagePipeline::train(224))));
    }

    #[test]
    fn states_without_a_version_are_version_1_and_refused() {
        let old = r#"{"seed":7,"epoch":1,"next_batch":3,"batch_size":24,"rank":0,"world_size":1,
            "drop_last":false,"shuffle":{"kind":"block","block_len":8,"window":100},"records":600}"#;
        let st = LoaderState::from_json(old).unwrap();
        assert_eq!(st.version, 1);
        let err = st.check_version().unwrap_err().to_string();
        assert!(err.contains("version 1") && err.contains("start_epoch(1)"), "{err}");
        let newer = LoaderState { version: LoaderState::VERSION + 1, ..state(None) };
        assert!(newer.check_version().unwrap_err().to_string().contains("newer"));
        assert!(state(None).check_version().is_ok());
    }
}
