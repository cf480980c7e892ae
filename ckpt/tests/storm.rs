//! A startup storm: four processes load the same checkpoint at once; one
//! reads it from storage into sealed shared memory, the others map that
//! copy, and all four see the same bytes. A copy lives as long as its
//! publisher; a rewritten file is read from storage again, never served
//! from a stale copy; a locator naming something else is ignored.

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
    // Stay up (holding the tensors, as a server would) until the parent
    // has heard from every process.
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut Vec::new());
}

fn storm(path: &std::path::Path, shm: &std::path::Path) -> Vec<(String, String)> {
    use std::io::BufRead;
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "storm_child", "--ignored", "--nocapture", "--test-threads", "1"])
                .env("RF_STORM_CKPT", path)
                .env("RF_STORM_SHM", shm)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut seen = Vec::new();
    for c in &mut children {
        let mut lines = std::io::BufReader::new(c.stdout.as_mut().unwrap()).lines();
        // libtest prints "test storm_child ... " before the line.
        let line = lines.find_map(|l| l.ok().filter(|l| l.contains("STORM "))).expect("a STORM line");
        let parts: Vec<String> =
            line[line.find("STORM ").unwrap()..].split_whitespace().map(str::to_owned).collect();
        seen.push((parts[1].clone(), parts[2].clone()));
    }
    for mut c in children {
        drop(c.stdin.take());
        assert!(c.wait().unwrap().success());
    }
    seen
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
    // The copy lived as long as its publisher: a later storm reads once more.
    let again = storm(&path, shm.path());
    assert_eq!(again.iter().filter(|(from, _)| from == "Storage").count(), 1, "{again:?}");
    assert!(again.iter().all(|(_, crc)| crc == &want), "{again:?}");
    // This process publishes; a child maps its copy.
    let ckpt = Checkpoint::open(&path).unwrap();
    let (mine, from) = ckpt.load_shared(Some(shm.path())).unwrap();
    assert_eq!(from, LoadedFrom::Storage);
    let children = storm(&path, shm.path());
    assert!(children.iter().all(|(from, crc)| from == "SharedCopy" && crc == &want), "{children:?}");
    drop(mine);
    // A locator naming another process's descriptor (or garbage) is not trusted.
    for bogus in [
        "1 0 5\n",
        "not a locator",
        &format!("{} 0 {}\n", std::process::id(), std::fs::metadata(&path).unwrap().len()),
    ] {
        for e in std::fs::read_dir(shm.path()).unwrap().flatten() {
            if e.path().extension().is_some_and(|x| x == "where") {
                std::fs::write(e.path(), bogus).unwrap();
            }
        }
        let (t, from) = Checkpoint::open(&path).unwrap().load_shared(Some(shm.path())).unwrap();
        assert_eq!(from, LoadedFrom::Storage, "{bogus:?}");
        assert_eq!(format!("{:08x}", t.iter().fold(0, |c, t| crc32c::crc32c_append(c, t.bytes()))), want);
    }
    // The file rewritten: its identity changed, storage is read once more.
    let mut changed = tensors(40);
    changed[0].bytes[0] ^= 0xff;
    std::thread::sleep(std::time::Duration::from_millis(10)); // a distinct mtime, not synchronization
    save(&path, &refs(&changed), &SaveOptions::default()).unwrap();
    let want2 = format!("{:08x}", changed.iter().fold(0, |c, t| crc32c::crc32c_append(c, &t.bytes)));
    let third = storm(&path, shm.path());
    assert_eq!(third.iter().filter(|(from, _)| from == "Storage").count(), 1, "{third:?}");
    assert!(third.iter().all(|(_, crc)| crc == &want2), "{third:?}");
}
