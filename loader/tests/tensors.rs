//! The `tch` hand-off: batches become `(images, labels)` tensors without
//! copying the images, with the shapes, kinds and values the loader
//! decoded, and the tensors outlive the loader.
#![cfg(feature = "tch")]

mod common;

use common::images::{dataset, standalone};
use ringfeed::tch::{Kind, Tensor};
use ringfeed::{Batch, BatchMemory, ErrorPolicy, ImagePipeline, Loader};

fn loader(dir: &std::path::Path, pipeline: Option<ImagePipeline>, policy: ErrorPolicy) -> Loader {
    let mut b = Loader::builder(dir)
        .batch_size(5)
        .seed(3)
        .cores(2)
        .on_error(policy)
        .batch_memory(BatchMemory::Tensor);
    if let Some(p) = pipeline {
        b = b.images(p);
    }
    b.build().unwrap()
}

fn bytes_of(t: &Tensor) -> Vec<u8> {
    let flat = t.flatten(0, -1);
    match t.kind() {
        Kind::Uint8 => Vec::<u8>::try_from(&flat).unwrap(),
        Kind::Float => Vec::<f32>::try_from(&flat).unwrap().iter().flat_map(|v| v.to_ne_bytes()).collect(),
        k => panic!("unexpected kind {k:?}"),
    }
}

#[test]
fn batches_become_tensors_without_copying() {
    let (dir, recs) = dataset(false);
    for (pipeline, kind) in
        [(ImagePipeline::train(32).u8(), Kind::Uint8), (ImagePipeline::val(40, 32), Kind::Float)]
    {
        let mut seen = 0;
        for batch in loader(dir.path(), Some(pipeline), ErrorPolicy::Fail) {
            let batch = batch.unwrap();
            let (n, epoch, indices, want_labels) =
                (batch.len(), batch.epoch, batch.indices.clone(), batch.labels.clone());
            let decoded_at = batch.images.as_ref().unwrap().data().as_ptr();
            let (images, labels) = batch.into_tensors().unwrap();
            assert_eq!(images.data_ptr().cast::<u8>().cast_const(), decoded_at, "the images were copied");
            assert_eq!(images.size(), [n as i64, 3, 32, 32]);
            assert_eq!(images.kind(), kind);
            assert!(images.is_contiguous());
            assert_eq!(labels.kind(), Kind::Int64);
            assert_eq!(Vec::<i64>::try_from(&labels).unwrap(), want_labels);
            let got = bytes_of(&images);
            let slot = got.len() / n;
            for (row, &index) in indices.iter().enumerate() {
                let want = standalone(pipeline, &recs[index as usize], epoch, index);
                assert_eq!(&got[row * slot..(row + 1) * slot], &want[..], "record {index}");
            }
            seen += n;
        }
        assert_eq!(seen, recs.len());
    }
}

/// The `tch` feature is additive: a loader that does not ask for tensor
/// memory allocates as it would without the feature (pooled buffers, the
/// first batch split between the workers), in the same process as one
/// that does, and both hand out the same tensors.
#[test]
fn batch_memory_is_chosen_per_loader() {
    let (dir, _) = dataset(false);
    let pipeline = ImagePipeline::val(40, 32);
    let pooled = Loader::builder(dir.path()).batch_size(5).seed(3).cores(2).images(pipeline);
    let mut tensors = loader(dir.path(), Some(pipeline), ErrorPolicy::Fail);
    for batch in pooled.build().unwrap() {
        let pooled = batch.unwrap();
        let tensor = tensors.next().unwrap().unwrap();
        assert_eq!(pooled.images.as_ref().unwrap().memory(), BatchMemory::Pooled);
        assert_eq!(tensor.images.as_ref().unwrap().memory(), BatchMemory::Tensor);
        assert_eq!(pooled.images, tensor.images);
        let at = pooled.images.as_ref().unwrap().data().as_ptr();
        let (from_pool, _) = pooled.into_tensors().unwrap();
        assert_ne!(from_pool.data_ptr().cast::<u8>().cast_const(), at, "pooled memory is copied out");
        assert_eq!(bytes_of(&from_pool), bytes_of(&tensor.into_tensors().unwrap().0));
    }
    assert!(tensors.next().is_none());
}

#[test]
fn tensors_outlive_the_loader() {
    let (dir, _) = dataset(false);
    let mut l = loader(dir.path(), Some(ImagePipeline::train(32).u8()), ErrorPolicy::Fail);
    let batch = l.next().unwrap().unwrap();
    let want = batch.images.as_ref().unwrap().data().to_vec();
    let (images, _) = batch.into_tensors().unwrap();
    drop(l);
    assert_eq!(bytes_of(&images), want);
}

#[test]
fn skipped_records_shrink_the_tensors() {
    let (dir, recs) = dataset(true);
    let mut rows = 0;
    for batch in loader(dir.path(), Some(ImagePipeline::train(32).u8()), ErrorPolicy::Skip) {
        let batch: Batch = batch.unwrap();
        let (n, epoch, indices) = (batch.len(), batch.epoch, batch.indices.clone());
        let (images, labels) = batch.into_tensors().unwrap();
        assert_eq!(images.size()[0], n as i64);
        assert_eq!(labels.size(), [n as i64]);
        let got = bytes_of(&images);
        for (row, &index) in indices.iter().enumerate() {
            let want = standalone(ImagePipeline::train(32).u8(), &recs[index as usize], epoch, index);
            assert_eq!(&got[row * want.len()..(row + 1) * want.len()], &want[..], "record {index}");
        }
        rows += n;
    }
    assert_eq!(rows, recs.len() - 1);
}

#[test]
fn cloned_images_convert_by_copying_the_same_values() {
    let (dir, _) = dataset(false);
    let batch =
        loader(dir.path(), Some(ImagePipeline::train(32)), ErrorPolicy::Fail).next().unwrap().unwrap();
    let copy = batch.images.clone().unwrap().into_tensor().unwrap();
    let (images, _) = batch.into_tensors().unwrap();
    assert_ne!(copy.data_ptr(), images.data_ptr());
    assert_eq!(bytes_of(&copy), bytes_of(&images));
}

/// Tensor-backed f32 images, and their clones (copied into plain memory),
/// read as aligned `f32` values: the tensor's own.
#[test]
fn tensor_images_read_as_f32() {
    let (dir, _) = dataset(false);
    for batch in loader(dir.path(), Some(ImagePipeline::val(40, 32)), ErrorPolicy::Fail) {
        let batch = batch.unwrap();
        let images = batch.images.as_ref().unwrap();
        let copy = images.clone();
        let values = images.as_f32().expect("f32 images").to_vec();
        assert_eq!(copy.as_f32(), Some(&values[..]));
        assert_eq!(copy.as_f32().unwrap().as_ptr().align_offset(align_of::<f32>()), 0);
        let (tensor, _) = batch.into_tensors().unwrap();
        assert_eq!(Vec::<f32>::try_from(&tensor.flatten(0, -1)).unwrap(), values);
    }
}

#[test]
fn batches_without_images_are_a_config_error() {
    let (dir, _) = dataset(false);
    let batch = loader(dir.path(), None, ErrorPolicy::Fail).next().unwrap().unwrap();
    let err = batch.into_tensors().unwrap_err();
    assert!(matches!(err, ringfeed::Error::Config(_)), "{err}");
}
