//! Save and load: every dtype, bit-exact, with and without direct I/O and
//! checksums; filters, the caller's buffers, typed views, sharded sets,
//! the last K checkpoints kept.

mod common;

use common::*;
use ringfeed_ckpt::{
    Checkpoint, CheckpointDir, DATA_ALIGN, Dtype, Error, SaveOptions, ShardedCheckpoint, TensorRef, save,
};

#[test]
fn every_tensor_comes_back_bit_exact_whatever_the_io() {
    let ts = tensors(3);
    let d = scratch();
    for (direct_save, direct_load, crc, chunk) in [
        (true, true, true, 8 << 20),
        (false, false, true, 4096),
        (true, false, false, 12288),
        (false, true, true, 65536),
    ] {
        let path = d.path().join("m.safetensors");
        let opts = SaveOptions::default()
            .direct_io(direct_save)
            .checksums(crc)
            .chunk_bytes(chunk)
            .metadata("format", "pt");
        let saved = save(&path, &refs(&ts), &opts).unwrap();
        assert_eq!(saved.direct_io, direct_save, "statx reports O_DIRECT support under target/");
        assert_eq!(saved.bytes, std::fs::metadata(&path).unwrap().len());
        let ckpt =
            Checkpoint::builder(&path).direct_io(direct_load).chunk_bytes(chunk).threads(3).build().unwrap();
        assert_eq!(ckpt.direct_io().is_some(), direct_load);
        assert_eq!(ckpt.has_checksums(), crc);
        assert_eq!(ckpt.metadata().get("format").map(String::as_str), Some("pt"));
        assert_eq!(ckpt.metadata().len(), 1, "checksums are not shown as metadata");
        let prefix: [u8; 8] = std::fs::read(&path).unwrap()[..8].try_into().unwrap();
        assert_eq!((8 + u64::from_le_bytes(prefix)) % DATA_ALIGN, 0, "the data starts 4 KiB-aligned");
        let loaded = ckpt.load().unwrap();
        assert_eq!(loaded.len(), ts.len());
        for t in &ts {
            let v = loaded.get(&t.name).unwrap();
            assert_eq!(
                (v.dtype(), v.shape(), v.bytes()),
                (t.dtype, &t.shape[..], &t.bytes[..]),
                "{}",
                t.name
            );
            // The caller's own (unaligned) buffer.
            let mut mine = vec![0u8; t.bytes.len() + 1];
            ckpt.read_into(&t.name, &mut mine[1..]).unwrap();
            assert_eq!(mine[1..], t.bytes[..]);
        }
        assert_eq!(ckpt.verify().unwrap(), if crc { ts.len() } else { 0 });
    }
}

#[test]
fn typed_views_filters_and_wrong_requests() {
    let ts = tensors(1);
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    let all = ckpt.load().unwrap();
    let embed = all.get("embed.weight").unwrap();
    // Random bytes hold NaNs: compare the floats' bits.
    let view: &[f32] = embed.as_slice().unwrap();
    assert_eq!(view.len(), 1000 * 33);
    assert!(bytemuck::cast_slice::<f32, u8>(view) == &ts[0].bytes[..], "the view is the tensor's bytes");
    assert!(bytemuck::cast_slice::<f32, u8>(&embed.to_vec::<f32>().unwrap()) == &ts[0].bytes[..]);
    assert!(embed.as_slice::<i64>().is_err(), "wrong element type");
    assert_eq!(
        all.get("layers.0.attn.weight").unwrap().to_vec::<u16>().unwrap().len(),
        257 * 129,
        "bf16 as bits"
    );
    assert_eq!(all.get("step").unwrap().to_vec::<i64>().unwrap().len(), 1, "a scalar");
    assert!(all.get("empty").unwrap().bytes().is_empty());

    let some = ckpt.load_filtered(|n| n.starts_with("layers.")).unwrap();
    assert_eq!(some.len(), 3);
    assert!(some.get("embed.weight").is_none());
    assert!(some.bytes() < ckpt.data_bytes() / 2, "only the chosen tensors' bytes are held");
    let named = ckpt.load_names(&["mask", "head.bias"]).unwrap();
    assert_eq!(named.get("mask").unwrap().bytes(), &ts[6].bytes[..]);
    match ckpt.load_names(&["mask", "nope"]) {
        Err(Error::NotFound { name, .. }) => assert_eq!(name, "nope"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(ckpt.read_into("mask", &mut [0u8; 3]), Err(Error::Config(_))));
    assert!(matches!(Checkpoint::builder(&path).threads(0).build(), Err(Error::Config(_))));
    let dup = [ts[0].as_ref(), ts[0].as_ref()];
    assert!(matches!(
        save(d.path().join("dup.safetensors"), &dup, &SaveOptions::default()),
        Err(Error::Config(_))
    ));
    assert!(!d.path().join("dup.safetensors").exists());
    let leftovers: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
        .collect();
    assert!(leftovers.is_empty(), "a failed save leaves no temporary file");
}

#[test]
fn sharded_sets_load_as_one_and_hostile_indexes_are_refused() {
    let ts = tensors(1);
    let d = scratch();
    let map = save_two_shards(d.path(), &ts, 4);
    let index = d.path().join("model.safetensors.index.json");
    let write_index = |map: &serde_json::Map<String, serde_json::Value>| {
        std::fs::write(
            &index,
            serde_json::json!({"metadata": {"total_size": 1}, "weight_map": map}).to_string(),
        )
        .unwrap();
    };
    write_index(&map);
    let set = ShardedCheckpoint::open(d.path()).unwrap();
    assert_eq!(set.shards().len(), 2);
    let all = set.load().unwrap();
    for t in &ts {
        assert_eq!(all.get(&t.name).unwrap().bytes(), &t.bytes[..]);
    }
    assert_eq!(set.load_filtered(|n| n == "step").unwrap().len(), 1);
    assert_eq!(set.verify().unwrap(), ts.len());

    let mut lying = map.clone();
    lying.insert("step".into(), "model-00001-of-00002.safetensors".into());
    write_index(&lying);
    let e = ShardedCheckpoint::open(d.path()).unwrap_err().to_string();
    assert!(e.contains("step"), "{e}");
    let mut escaping = map.clone();
    escaping.insert("embed.weight".into(), "../../etc/passwd".into());
    write_index(&escaping);
    assert!(matches!(ShardedCheckpoint::open(d.path()), Err(Error::Format { .. })));
    std::fs::write(&index, b"{\"weight_map\": 3}").unwrap();
    assert!(matches!(ShardedCheckpoint::open(&index), Err(Error::Format { .. })));
}

#[test]
fn a_checkpoint_dir_keeps_the_last_k_and_finds_the_latest_valid() {
    let d = scratch();
    let ckpts = CheckpointDir::new(d.path().join("run"), 3).unwrap();
    let w = bytes(9, 4096 * 3 + 5);
    for step in [10u64, 20, 30, 40, 50] {
        let (s, shape) = (step.to_le_bytes(), [w.len() as u64]);
        let t = [
            TensorRef::new("w", Dtype::U8, &shape, &w).unwrap(),
            TensorRef::new("step", Dtype::U64, &[], &s).unwrap(),
        ];
        ckpts.save(step, &t, &SaveOptions::default()).unwrap();
    }
    assert_eq!(ckpts.steps().unwrap(), [30, 40, 50]);
    // The newest damaged beyond opening (cut short): the one before is used.
    let newest = ckpts.path_of(50);
    let len = std::fs::metadata(&newest).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&newest).unwrap().set_len(len - 100).unwrap();
    let (step, ckpt) = ckpts.latest().unwrap().unwrap();
    assert_eq!(step, 40);
    assert_eq!(ckpt.load().unwrap().get("step").unwrap().to_vec::<u64>().unwrap(), [40]);
    assert!(CheckpointDir::new(d.path(), 0).is_err());
}

#[test]
fn async_saves_copy_then_write_and_queue_behind_each_other() {
    use ringfeed_ckpt::AsyncSaver;
    let d = scratch();
    // Staging (3 chunks of 64 KiB) far smaller than the checkpoint (~1.5 MB):
    // the copy waits for the writer, the result is the same.
    let saver = AsyncSaver::new(3 * 65_536, SaveOptions::default().chunk_bytes(65_536)).unwrap();
    assert_eq!(saver.staging_bytes(), 3 * 65_536);
    let mut ts = tensors(4);
    let first = d.path().join("a.safetensors");
    let handle = saver.save(&first, &refs(&ts)).unwrap();
    let before: Vec<Vec<u8>> = ts.iter().map(|t| t.bytes.clone()).collect();
    // The copy is done: the caller may change its tensors at once.
    for t in &mut ts {
        t.bytes.iter_mut().for_each(|b| *b = b.wrapping_add(1));
    }
    let second = d.path().join("b.safetensors");
    let handle2 = saver.save(&second, &refs(&ts)).unwrap();
    // The second waited for the first: the first is complete already.
    assert!(handle.is_done());
    let saved = handle.wait().unwrap();
    assert!(saved.direct_io);
    let a = Checkpoint::open(&first).unwrap();
    assert_eq!(a.verify().unwrap(), ts.len());
    let loaded = a.load().unwrap();
    for (t, b) in ts.iter().zip(&before) {
        assert_eq!(loaded.get(&t.name).unwrap().bytes(), &b[..], "{}", t.name);
    }
    let b = futures_lite::future::block_on(handle2.wait_async()).unwrap();
    let loaded = Checkpoint::open(&b.path).unwrap().load().unwrap();
    for t in &ts {
        assert_eq!(loaded.get(&t.name).unwrap().bytes(), &t.bytes[..], "{}", t.name);
    }
    assert!(AsyncSaver::new(1 << 20, SaveOptions::default().threads(0)).is_err());
}

#[test]
fn an_async_load_never_blocks_the_executor() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let ts = tensors(20);
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&path).unwrap());
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        // One thread runs both tasks: the other one can only finish while
        // the load is pending if the load does not hold the thread.
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let other = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::task::yield_now().await;
            }
            flag.store(true, Ordering::SeqCst);
        });
        let loaded = ckpt.load_async(|n| n != "mask").await.unwrap();
        assert!(done.load(Ordering::SeqCst), "the executor ran other work during the load");
        other.await.unwrap();
        assert_eq!(loaded.len(), ts.len() - 1);
        for t in ts.iter().filter(|t| t.name != "mask") {
            assert_eq!(loaded.get(&t.name).unwrap().bytes(), &t.bytes[..]);
        }
    });
    // Cut short after it was opened: the future resolves with the error.
    let cut = Arc::new(Checkpoint::builder(&path).build().unwrap());
    std::fs::write(&path, b"gone").unwrap();
    match futures_lite::future::block_on(cut.load_async(|_| true)) {
        Err(ringfeed_ckpt::Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::UnexpectedEof)
        }
        other => panic!("{other:?}"),
    }
}
