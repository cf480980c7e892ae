//! Tensor-backed batches (the `tch` feature): the pool decodes straight
//! into a libtorch tensor, `Batch::tensor` is a view of its filled rows
//! equal to what the `Preprocessor` makes of each image, and a tensor the
//! model keeps is never reused for a later batch.
#![cfg(feature = "tch")]

mod common;

use std::time::Duration;

use common::{checksum, fixture, png};
use ringfeed_serve::tch::{Kind, Tensor};
use ringfeed_serve::{Batch, BatchData, Batcher, OutputMut, Preprocessor, Spec};

/// What the test model sees of a batch: its tensor's shape, kind and base
/// address, and one checksum per row read from the tensor itself.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    shape: Vec<i64>,
    kind: Kind,
    address: usize,
    row: u64,
    /// `data()` agrees with the tensor.
    data_matches: bool,
}

fn row_checksum(t: &Tensor) -> u64 {
    let flat = t.flatten(0, -1);
    match t.kind() {
        Kind::Float => checksum(BatchData::F32(&Vec::<f32>::try_from(&flat).unwrap())),
        _ => checksum(BatchData::U8(&Vec::<u8>::try_from(&flat).unwrap())),
    }
}

async fn look(batch: Batch) -> Result<Vec<Seen>, std::io::Error> {
    let t = batch.tensor();
    let all = checksum(batch.data());
    let whole = row_checksum(t);
    Ok((0..batch.len() as i64)
        .map(|i| Seen {
            shape: t.size(),
            kind: t.kind(),
            address: t.data_ptr() as usize,
            row: row_checksum(&t.get(i)),
            data_matches: all == whole,
        })
        .collect())
}

/// The preprocessor's row for `bytes`, as a checksum.
fn expected(spec: &Spec, bytes: &[u8]) -> u64 {
    let mut pre = Preprocessor::new(spec).unwrap();
    if spec.normalize() == ringfeed_serve::Normalize::None {
        let mut row = vec![0u8; spec.row_len()];
        pre.run(bytes, OutputMut::U8(&mut row)).unwrap();
        checksum(BatchData::U8(&row))
    } else {
        let mut row = vec![0f32; spec.row_len()];
        pre.run(bytes, OutputMut::F32(&mut row)).unwrap();
        checksum(BatchData::F32(&row))
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap()
}

#[test]
fn rows_in_the_tensor_are_the_preprocessors_and_a_kept_tensor_is_never_reused() {
    runtime().block_on(async {
        let spec = Spec::builder().center_crop(256, 224).build().unwrap();
        // The model keeps a handle on every batch tensor it sees (as a
        // model that caches its inputs might).
        let kept = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(Tensor, u64)>::new()));
        let keep = kept.clone();
        let batcher = Batcher::builder(spec)
            .max_batch(4)
            .in_flight(1)
            .threads(2)
            .tensor_storage(true)
            .build(move |batch: Batch| {
                let keep = keep.clone();
                async move {
                    let t = batch.tensor().shallow_clone();
                    let sum = row_checksum(&t);
                    keep.lock().unwrap().push((t, sum));
                    look(batch).await
                }
            })
            .unwrap();
        let mut addresses = Vec::new();
        for name in ["rgb.jpg", "big.jpg", "rgb.png", "gray.jpg", "progressive.jpg"] {
            let bytes = fixture(name);
            let want = expected(&spec, &bytes);
            let seen = batcher.submit(bytes).await.unwrap().output;
            assert_eq!(seen.shape, [1, 3, 224, 224], "{name}: only the filled row");
            assert_eq!(seen.kind, Kind::Float);
            assert_eq!(seen.row, want, "{name}: the tensor's row is the preprocessor's");
            assert!(seen.data_matches, "{name}: data() agrees with the tensor");
            addresses.push(seen.address);
        }
        // Every kept tensor still holds its own batch: none was reused.
        for (t, sum) in kept.lock().unwrap().iter() {
            assert_eq!(row_checksum(t), *sum);
        }
        addresses.sort_unstable();
        addresses.dedup();
        assert_eq!(addresses.len(), 5, "a fresh tensor for each batch: {addresses:x?}");
    });
}

#[test]
fn a_failed_row_is_packed_out_of_the_tensor() {
    runtime().block_on(async {
        let spec = Spec::builder().square(32).raw_u8().build().unwrap();
        // The batch closes when its three requests are in; the delay is a
        // bound that is never reached.
        let batcher = Batcher::builder(spec)
            .max_batch(3)
            .max_delay(Duration::from_secs(30))
            .threads(2)
            .tensor_storage(true)
            .build(look)
            .unwrap();
        let (a, b) = (png(40, 30, 1), png(50, 20, 2));
        let (ra, bad, rb) = tokio::join!(
            batcher.submit(a.clone()),
            batcher.submit(&b"not an image"[..]),
            batcher.submit(b.clone())
        );
        assert_eq!(bad.unwrap_err().http_status(), 400);
        let (ra, rb) = (ra.unwrap().output, rb.unwrap().output);
        assert_eq!(ra.shape, [2, 3, 32, 32]);
        assert_eq!(ra.kind, Kind::Uint8);
        assert_eq!(ra.row, expected(&spec, &a));
        assert_eq!(rb.row, expected(&spec, &b), "the second good row moved up");
        assert!(ra.data_matches);
    });
}

#[test]
fn without_tensor_storage_the_tensor_is_a_copy_of_the_data() {
    runtime().block_on(async {
        let spec = Spec::builder().square(32).build().unwrap();
        let batcher = Batcher::builder(spec).max_batch(2).threads(1).build(look).unwrap();
        let bytes = png(64, 48, 3);
        let seen = batcher.submit(bytes.clone()).await.unwrap().output;
        assert_eq!(seen.shape, [1, 3, 32, 32]);
        assert_eq!(seen.row, expected(&spec, &bytes));
        assert!(seen.data_matches);
        assert_eq!(batcher.metrics().completed, 1);
    });
}
