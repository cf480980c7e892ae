//! With `tch` (this crate's feature, turning on ringfeed's): batches
//! decoded into libtorch tensors, in a binary linked by `build.rs`'s one
//! call to `ringfeed_build::link_libtorch()`, which runs without
//! `LD_LIBRARY_PATH`. The tensors outlive the loader.
#![cfg(feature = "tch")]

use ringfeed::tch::Kind;
use ringfeed::{BatchMemory, ImagePipeline, Loader};
use ringfeed_user::{image_folder, pack};

#[test]
fn batches_become_tensors() {
    let folder = image_folder(&["cat", "dog"], 6);
    let (dataset, _) = pack(&folder);
    let loader = Loader::builder(dataset.path())
        .batch_size(4)
        .seed(3)
        .cores(2)
        .images(ImagePipeline::val(40, 32))
        .batch_memory(BatchMemory::Tensor)
        .build()
        .expect("build");
    let mut batches = Vec::new();
    for batch in loader {
        let batch = batch.expect("a batch");
        let labels = batch.labels.clone();
        let (images, tensor_labels) = batch.into_tensors().expect("tensors");
        assert_eq!(images.size(), [labels.len() as i64, 3, 32, 32]);
        assert_eq!(tensor_labels.kind(), Kind::Int64);
        assert_eq!(Vec::<i64>::try_from(&tensor_labels).expect("labels"), labels);
        batches.push(images);
    }
    assert_eq!(batches.len(), 3);
    // The loader is gone; its tensors are the caller's.
    let total: f64 =
        batches.iter().map(|t| t.to_kind(Kind::Double).sum(Kind::Double).double_value(&[])).sum();
    assert!(total > 0.0, "decoded pixels are not all zero");
}
