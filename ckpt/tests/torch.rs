//! Feature `tch`: checkpoints loaded into libtorch tensors (bit-exact with
//! the byte load, every dtype, a misaligned tensor, filters, shards, pinned
//! memory and devices where CUDA exists) and libtorch tensors saved.

#![cfg(feature = "tch")]

mod common;

use common::*;
use ringfeed_ckpt::{AsyncSaver, Checkpoint, Dtype, Error, SaveOptions, ShardedCheckpoint, TensorRef, save};
use tch::{Device, Kind, Tensor};

/// A tensor's bytes, as libtorch holds them (any device).
fn bytes_of(t: &Tensor) -> Vec<u8> {
    let flat = t.to_device(Device::Cpu).contiguous().reshape([-1]).view_dtype(Kind::Uint8);
    let n = flat.numel();
    let mut out = vec![0u8; n];
    flat.copy_data_u8(&mut out, n);
    out
}

/// The common set plus a tensor that starts 3 bytes into a word.
fn with_misaligned() -> Vec<Owned> {
    let mut ts = tensors(2);
    for (name, dtype, shape) in [("odd", Dtype::U8, vec![3]), ("after_odd", Dtype::F32, vec![5, 2])] {
        let n: u64 = shape.iter().product();
        let b = bytes(n + 77, dtype.bytes_for(n).unwrap() as usize);
        ts.push(Owned { name: name.into(), dtype, shape, bytes: b });
    }
    ts
}

fn check_same(loaded: &[(String, Tensor)], ts: &[&Owned], device: Device) {
    assert_eq!(loaded.len(), ts.len());
    for ((name, t), o) in loaded.iter().zip(ts) {
        assert_eq!(name, &o.name);
        assert_eq!(t.kind(), o.dtype.kind().unwrap(), "{name}");
        assert_eq!(t.size(), o.shape.iter().map(|&d| d as i64).collect::<Vec<_>>(), "{name}");
        assert_eq!(t.device(), device, "{name}");
        assert_eq!(bytes_of(t), o.bytes, "{name}");
    }
}

#[test]
fn every_tensor_loads_into_libtorch_bit_exact() {
    let ts = with_misaligned();
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    let loaded = ckpt.load_tch(Device::Cpu).unwrap();
    check_same(&loaded, &ts.iter().collect::<Vec<_>>(), Device::Cpu);
    // Host memory is pinned exactly when CUDA is there to copy it.
    let pinned = tch::Cuda::is_available();
    assert_eq!(loaded[0].1.is_pinned(Device::Cuda(0)), pinned);
    // "after_odd" starts off its element alignment in the file, so it was
    // copied to an aligned place rather than viewed in place.
    assert_ne!(ckpt.tensor("after_odd").unwrap().data_offsets.0 % 4, 0);
    let w = &loaded.iter().find(|(n, _)| n == "after_odd").unwrap().1;
    assert_eq!(w.data_ptr() as usize % 4, 0);
    // The tensors are usable as any others: arithmetic on a view.
    let want: f64 = ckpt
        .load()
        .unwrap()
        .get("after_odd")
        .unwrap()
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| f64::from(x))
        .sum();
    let got = w.sum(Kind::Double).double_value(&[]);
    assert!(got == want || (got.is_nan() && want.is_nan()), "{got} vs {want}");

    // Filtered: only the chosen tensors, in file order.
    let some = ckpt.load_tch_filtered(Device::Cpu, |n| n.starts_with("layers.0.") || n == "odd").unwrap();
    let chosen: Vec<&Owned> =
        ts.iter().filter(|o| o.name.starts_with("layers.0.") || o.name == "odd").collect();
    check_same(&some, &chosen, Device::Cpu);

    // Async, on no runtime at all.
    let ckpt = std::sync::Arc::new(ckpt);
    let again = futures_lite::future::block_on(ckpt.load_tch_async(Device::Cpu, |n| n == "step")).unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(bytes_of(&again[0].1), ts.iter().find(|o| o.name == "step").unwrap().bytes);
}

#[test]
fn cuda_devices_get_the_same_bytes_or_a_clear_error() {
    let ts = with_misaligned();
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    if tch::Cuda::is_available() {
        let loaded = ckpt.load_tch(Device::Cuda(0)).unwrap();
        check_same(&loaded, &ts.iter().collect::<Vec<_>>(), Device::Cuda(0));
    } else {
        let e = ckpt.load_tch(Device::Cuda(0)).unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(e.to_string().contains("not available"), "{e}");
    }
    assert!(matches!(ckpt.load_tch(Device::Cuda(99)), Err(Error::Config(_))));
}

#[test]
fn a_dtype_tch_lacks_is_refused_before_reading() {
    let d = scratch();
    let path = d.path().join("m.safetensors");
    let (a, b) = (bytes(1, 8), bytes(2, 8));
    let ts = [
        TensorRef::new("fine", Dtype::F32, &[2], &a).unwrap(),
        TensorRef::new("wide", Dtype::U16, &[4], &b).unwrap(),
    ];
    save(&path, &ts, &SaveOptions::default()).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    let e = ckpt.load_tch(Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("\"wide\"") && e.contains("U16"), "{e}");
    // Without it the rest loads.
    let fine = ckpt.load_tch_filtered(Device::Cpu, |n| n == "fine").unwrap();
    assert_eq!(bytes_of(&fine[0].1), a);
}

#[test]
fn sharded_sets_load_into_libtorch() {
    let ts = tensors(1);
    let d = scratch();
    let map = save_two_shards(d.path(), &ts, 4);
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(d.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    let set = ShardedCheckpoint::open(d.path()).unwrap();
    check_same(&set.load_tch(Device::Cpu).unwrap(), &ts.iter().collect::<Vec<_>>(), Device::Cpu);
    let only = set.load_tch_filtered(Device::Cpu, |n| n == "mask").unwrap();
    check_same(&only, &[&ts[6]], Device::Cpu);
}

/// libtorch tensors of every kind safetensors names, a scalar, an empty
/// tensor, and a contiguous view that starts inside its storage.
fn torch_tensors() -> Vec<(String, Tensor)> {
    let base = Tensor::arange(4 * 1000, (Kind::Float, Device::Cpu)).reshape([4, 1000]) * 0.37;
    let mut out: Vec<(String, Tensor)> = [
        Kind::Float,
        Kind::Half,
        Kind::BFloat16,
        Kind::Double,
        Kind::Int64,
        Kind::Int,
        Kind::Int16,
        Kind::Int8,
        Kind::Uint8,
        Kind::Bool,
    ]
    .into_iter()
    .map(|k| (format!("t.{k:?}"), base.to_kind(k)))
    .collect();
    out.push(("scalar".into(), Tensor::from(42i64)));
    out.push(("empty".into(), Tensor::zeros([0, 7], (Kind::Float, Device::Cpu))));
    out.push(("rows_1_to_3".into(), base.narrow(0, 1, 2)));
    out
}

#[test]
fn libtorch_tensors_save_and_come_back_equal() {
    let ts = torch_tensors();
    let d = scratch();
    let refs: Vec<TensorRef<'_>> = ts.iter().map(|(n, t)| TensorRef::from_tch(n, t).unwrap()).collect();
    assert_eq!(refs[0].dtype(), Dtype::F32);
    assert_eq!(refs[0].shape(), [4, 1000]);
    for chunk in [4096, 8 << 20] {
        let path = d.path().join(format!("sync-{chunk}.safetensors"));
        save(&path, &refs, &SaveOptions::default().chunk_bytes(chunk)).unwrap();
        let back = Checkpoint::open(&path).unwrap().load_tch(Device::Cpu).unwrap();
        assert_eq!(back.len(), ts.len());
        for ((n, t), (bn, b)) in ts.iter().zip(&back) {
            assert_eq!(n, bn);
            assert_eq!((b.kind(), b.size()), (t.kind(), t.size()), "{n}");
            assert_eq!(bytes_of(b), bytes_of(t), "{n}");
        }
    }
    // The background saver copies them into its staging memory.
    let saver = AsyncSaver::new(1 << 20, SaveOptions::default().chunk_bytes(64 << 10)).unwrap();
    let saved = saver.save(d.path().join("async.safetensors"), &refs).unwrap().wait().unwrap();
    let back = Checkpoint::open(&saved.path).unwrap().load().unwrap();
    for (n, t) in &ts {
        assert_eq!(back.get(n).unwrap().bytes(), bytes_of(t), "{n}");
    }
}

#[test]
fn tensors_that_cannot_be_saved_as_they_are_are_refused() {
    let t = Tensor::arange(12, (Kind::Float, Device::Cpu)).reshape([3, 4]);
    let transposed = t.tr();
    let e = TensorRef::from_tch("t", &transposed).unwrap_err().to_string();
    assert!(e.contains("not contiguous"), "{e}");
    let q = Tensor::zeros([2], (Kind::ComplexDouble, Device::Cpu));
    let e = TensorRef::from_tch("q", &q).unwrap_err().to_string();
    assert!(e.contains("no safetensors dtype"), "{e}");
    assert!(TensorRef::from_tch("c", &transposed.contiguous()).is_ok());
}
