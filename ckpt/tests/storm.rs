//! A startup storm: four processes load the same checkpoint at once; one
//! reads it from storage, the others get the copy it published in shared
//! memory, and all four get the same bytes. A rewritten file is read from
//! storage again, never served from a stale copy.

mod common;

use std::process::{Command, Stdio};

use common::*;
use ringfeed_ckpt::{Checkpoint, LoadedFrom, SaveOptions, save};

/// Not a test of its own: one process of the storm.
#[test]
#[ignore = "run by four_processes_read_storage_once"]
fn storm_child() {
    let (Some(path), Some(shm)) = (std::env::var_os("RF_STORM_CKPT"), std::env::var_os("RF_STORM_SHM"))
    else {
        return;
    };
    let ckpt = Checkpoint::open(&path).unwrap();
    let (tensors, from) = ckpt.load_shared(Some(std::path::Path::new(&shm))).unwrap();
    let crc = tensors.iter().fold(0, |c, t| crc32c::crc32c_append(c, t.bytes()));
    println!("STORM {from:?} {crc:08x} {}", tensors.len());
}

fn storm(path: &std::path::Path, shm: &std::path::Path) -> Vec<(String, String)> {
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "storm_child", "--ignored", "--nocapture", "--test-threads", "1"])
                .env("RF_STORM_CKPT", path)
                .env("RF_STORM_SHM", shm)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            // libtest prints "test storm_child ... " before the line.
            let at = text.find("STORM ").unwrap_or_else(|| panic!("{text}"));
            let parts: Vec<&str> = text[at..].split_whitespace().collect();
            (parts[1].to_owned(), parts[2].to_owned())
        })
        .collect()
}

#[test]
fn four_processes_read_storage_once() {
    let d = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    // Shared memory where the machine has it (as in use), else a disk dir.
    let shm = match tempfile::tempdir_in("/dev/shm") {
        Ok(t) => t,
        Err(_) => tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap(),
    };
    let ts = tensors(40);
    let path = d.path().join("model.safetensors");
    save(&path, &refs(&ts), &SaveOptions::default()).unwrap();
    let want = format!("{:08x}", ts.iter().fold(0, |c, t| crc32c::crc32c_append(c, &t.bytes)));

    let first = storm(&path, shm.path());
    let storage = first.iter().filter(|(from, _)| from == &format!("{:?}", LoadedFrom::Storage)).count();
    assert_eq!(storage, 1, "{first:?}");
    assert!(first.iter().all(|(_, crc)| crc == &want), "{first:?}");
    // Later processes (a restart) all read the copy.
    let again = storm(&path, shm.path());
    assert!(again.iter().all(|(from, crc)| from == "SharedCopy" && crc == &want), "{again:?}");
    // The file rewritten: its identity changed, storage is read once more.
    let mut changed = tensors(40);
    changed[0].bytes[0] ^= 0xff;
    std::thread::sleep(std::time::Duration::from_millis(10)); // a distinct mtime, not synchronization
    save(&path, &refs(&changed), &SaveOptions::default()).unwrap();
    let want2 = format!("{:08x}", changed.iter().fold(0, |c, t| crc32c::crc32c_append(c, &t.bytes)));
    let third = storm(&path, shm.path());
    assert_eq!(third.iter().filter(|(from, _)| from == "Storage").count(), 1, "{third:?}");
    assert!(third.iter().all(|(_, crc)| crc == &want2), "{third:?}");

    // A damaged shared copy is an error, not wrong tensors.
    let copy = std::fs::read_dir(shm.path())
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.extension().is_some_and(|e| e == "data")
                && std::fs::metadata(p).unwrap().len() == std::fs::metadata(&path).unwrap().len()
        })
        .unwrap();
    let mut bytes = std::fs::read(&copy).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 1;
    std::fs::write(&copy, &bytes).unwrap();
    let e = Checkpoint::open(&path).unwrap().load_shared(Some(shm.path())).unwrap_err();
    assert!(matches!(e, ringfeed_ckpt::Error::Checksum { .. }), "{e}");
}
