//! Damage and crashes: a flipped byte is a checksum error naming the
//! tensor; a truncated file is refused at open; `kill -9` at any point of
//! a save leaves the previous checkpoint intact and verifying; a full disk
//! is an error that leaves the previous checkpoint intact.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use ringfeed_ckpt::{Checkpoint, Dtype, Error, SaveOptions, TensorRef, save};

#[test]
fn a_flipped_byte_names_its_tensor_and_a_cut_file_does_not_open() {
    let ts = tensors(1);
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let clean = std::fs::read(&path).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    let victim = ckpt.tensor("layers.0.mlp.weight").unwrap().clone();
    let data_start = clean.len() as u64 - ckpt.data_bytes();
    let mut bad = clean.clone();
    bad[(data_start + victim.data_offsets.0 + 77) as usize] ^= 0x10;
    std::fs::write(&path, &bad).unwrap();
    let ckpt = Checkpoint::open(&path).unwrap();
    for result in [ckpt.load().map(|_| 0), ckpt.verify()] {
        match result {
            Err(e @ Error::Checksum { .. }) => {
                assert!(e.to_string().contains("layers.0.mlp.weight"), "{e}");
                assert_eq!(e.exit_code(), 1);
            }
            other => panic!("{other:?}"),
        }
    }
    // Unchecked reads still work (the caller chose), and other tensors are fine.
    assert!(Checkpoint::builder(&path).verify_checksums(false).build().unwrap().load().is_ok());
    assert!(ckpt.load_names(&["embed.weight"]).is_ok());

    for cut in [clean.len() - 1, clean.len() / 2, 4096, 100, 7, 0] {
        std::fs::write(&path, &clean[..cut]).unwrap();
        match Checkpoint::open(&path) {
            Err(e @ Error::Format { .. }) => assert_eq!(e.exit_code(), 1, "{e}"),
            other => panic!("cut at {cut}: {other:?}"),
        }
    }
    // A header claiming more than the limit, and one claiming more than the file.
    let mut huge = 200_000_000u64.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    std::fs::write(&path, &huge).unwrap();
    assert!(Checkpoint::open(&path).unwrap_err().to_string().contains("limit"));
    assert!(matches!(Checkpoint::open(d.path().join("missing")), Err(Error::Io { .. })));
    assert!(matches!(Checkpoint::open(d.path()), Err(Error::Io { .. })), "a directory is not a checkpoint");
}

/// The big tensor of the kill test's checkpoints (~24 MB), the same in
/// every generation: made once per process, so that the child spends its
/// time saving, not computing bytes.
fn base() -> &'static [u8] {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BASE.get_or_init(|| bytes(100, 24 << 20))
}

/// Generation `g`: the base tensor, its number, and a small tensor whose
/// bytes are a function of `g`.
fn save_generation(path: &Path, g: u64) {
    let (n, tag) = (g.to_le_bytes(), bytes(g, 4096));
    let shape = [base().len() as u64];
    let t = [
        TensorRef::new("w", Dtype::U8, &shape, base()).unwrap(),
        TensorRef::new("gen", Dtype::U64, &[], &n).unwrap(),
        TensorRef::new("tag", Dtype::U8, &[4096], &tag).unwrap(),
    ];
    save(path, &t, &SaveOptions::default()).unwrap();
}

/// Not a test of its own: the child process of the kill test, saving new
/// generations to the same file until it is killed.
#[test]
#[ignore = "run by kill_9_during_saves_never_costs_the_previous_checkpoint"]
fn child_saves_forever() {
    let Some(path) = std::env::var_os("RINGFEED_CKPT_CHILD") else { return };
    let path = PathBuf::from(path);
    for g in 1u64.. {
        save_generation(&path, g);
        println!("saved {g}");
    }
}

#[test]
fn kill_9_during_saves_never_costs_the_previous_checkpoint() {
    let d = scratch();
    let path = d.path().join("train.safetensors");
    save_generation(&path, 0);
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let (mut mid_save, mut last_seen) = (0, 0u64);
    for round in 0..8 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_saves_forever", "--ignored", "--nocapture", "--test-threads", "1"])
            .env("RINGFEED_CKPT_CHILD", &path)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for `round % 3` completed saves, then kill at a pseudo-random
        // point of the next one (fault injection, not synchronization).
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut saved = 0;
        while saved < round % 3 {
            // libtest's own lines come first.
            let line = lines.next().expect("the child saves").unwrap();
            saved += line.starts_with("saved ") as usize;
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        std::thread::sleep(Duration::from_micros(x % 150_000));
        child.kill().unwrap();
        child.wait().unwrap();
        mid_save += std::fs::read_dir(d.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().contains(".tmp.")) as usize;
        // Whatever was interrupted, the file at the path is a whole
        // generation that verifies, bit for bit.
        let ckpt = Checkpoint::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(ckpt.verify().unwrap(), 3);
        let loaded = ckpt.load().unwrap();
        let g = loaded.get("gen").unwrap().to_vec::<u64>().unwrap()[0];
        assert_eq!(loaded.get("tag").unwrap().bytes(), &bytes(g, 4096)[..], "round {round}: generation {g}");
        assert!(loaded.get("w").unwrap().bytes() == base(), "round {round}: generation {g}");
        last_seen = last_seen.max(g);
    }
    assert!(mid_save > 0, "no kill landed inside a save: the test proved nothing");
    // The next save cleans up what the killed saves left.
    save_generation(&path, 99);
    let left: Vec<_> = std::fs::read_dir(d.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(left, [std::ffi::OsString::from("train.safetensors")], "after {last_seen} generations");
}

#[test]
fn a_full_disk_is_an_error_and_the_previous_checkpoint_survives() {
    // Needs root, mkfs.ext4, losetup and mount; says so and passes without
    // them (as loader/tests/disk_errors.rs).
    let fs = match LoopFs::new(48 << 20) {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!("skipped: cannot set up a loop-device file system here: {e}");
            return;
        }
    };
    let path = fs.mount.join("model.safetensors");
    let small = bytes(1, 8 << 20);
    let small_shape = [small.len() as u64];
    let t = [TensorRef::new("w", Dtype::U8, &small_shape, &small).unwrap()];
    assert!(save(&path, &t, &SaveOptions::default()).unwrap().direct_io);
    let big = bytes(2, 40 << 20);
    let big_shape = [big.len() as u64];
    let t = [TensorRef::new("w", Dtype::U8, &big_shape, &big).unwrap()];
    for direct in [true, false] {
        match save(&path, &t, &SaveOptions::default().direct_io(direct)) {
            Err(Error::Io { source, .. }) => {
                assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}")
            }
            other => panic!("direct {direct}: {other:?}"),
        }
        let ckpt = Checkpoint::open(&path).unwrap();
        assert_eq!(ckpt.verify().unwrap(), 1);
        assert_eq!(ckpt.load().unwrap().get("w").unwrap().bytes(), &small[..]);
        let names: Vec<_> = std::fs::read_dir(&fs.mount).unwrap().flatten().map(|e| e.file_name()).collect();
        assert!(names.iter().all(|n| !n.to_string_lossy().contains(".tmp.")), "{names:?}");
    }
    // In the background: space is allocated before the copy, so the error
    // comes from `save` itself (one met while writing would come through
    // the handle).
    let saver = ringfeed_ckpt::AsyncSaver::new(16 << 20, SaveOptions::default()).unwrap();
    match saver.save(&path, &t).and_then(ringfeed_ckpt::SaveHandle::wait) {
        Err(Error::Io { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::StorageFull, "{source}")
        }
        other => panic!("async: {other:?}"),
    }
    assert_eq!(Checkpoint::open(&path).unwrap().load().unwrap().get("w").unwrap().bytes(), &small[..]);
}

/// Fuzzing's little sibling, in every test run: 3,000 mutations of a valid
/// file's header and first data bytes (flipped bits, overwritten bytes,
/// cut lengths) must each open, load and verify or fail with an error,
/// never panic, and a load that succeeds must hold what the header says.
#[test]
fn mutated_headers_are_errors_never_panics() {
    let ts = tensors(1);
    let d = scratch();
    let path = d.path().join("m.safetensors");
    save(&path, &refs(&ts[..6]), &SaveOptions::default().metadata("format", "pt")).unwrap();
    let clean = std::fs::read(&path).unwrap();
    let head = 8 + u64::from_le_bytes(clean[..8].try_into().unwrap()) as usize;
    let json_end = clean[..head].iter().rposition(|&b| b == b'}').unwrap() + 1;
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut opened, mut loaded) = (0, 0);
    for round in 0..3_000 {
        let mut bytes = clean.clone();
        for _ in 0..1 + next() % 4 {
            // Mostly inside the JSON, sometimes the length prefix or data.
            let at = match next() % 10 {
                0 => (next() % 8) as usize,
                1 => head + (next() % 4096) as usize,
                _ => 8 + (next() as usize % (json_end - 8)),
            };
            match next() % 3 {
                0 => bytes[at] ^= 1 << (next() % 8),
                1 => bytes[at] = b"{}[]:,\"0123456789-e. "[(next() % 21) as usize],
                _ => bytes[at] = next() as u8,
            }
        }
        if next() % 8 == 0 {
            bytes.truncate((next() as usize) % bytes.len());
        }
        std::fs::write(&path, &bytes).unwrap();
        let Ok(ckpt) = Checkpoint::builder(&path).direct_io(round % 2 == 0).build() else { continue };
        opened += 1;
        let _ = ckpt.verify();
        if let Ok(all) = ckpt.load() {
            loaded += 1;
            for t in ckpt.tensors() {
                let v = all.get(&t.name).expect("every tensor of the header is loaded");
                assert_eq!(v.bytes().len() as u64, t.len());
            }
        }
    }
    // Some mutations must get through validation (whitespace, digits that
    // keep the layout): otherwise the loop only tested the parser's front.
    assert!(opened > 10 && loaded > 0, "opened {opened}, loaded {loaded}");
}
