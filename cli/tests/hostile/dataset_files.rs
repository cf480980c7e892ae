//! Cases about the files of a dataset and the directory a pack writes:
//! special files, foreign files, locks, sources and outputs that overlap.

use std::path::Path;
use std::process::Command;

use super::{Case, save};

pub(crate) fn nothing(_: &Path) -> Option<std::fs::File> {
    None
}

/// Holds `ds`'s pack lock as another writer (pid 4242) would.
fn lock_ds(root: &Path) -> Option<std::fs::File> {
    let path = root.join("ds/.ringfeed-pack.lock");
    std::fs::write(&path, "4242").unwrap();
    let file = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    file.try_lock().unwrap();
    Some(file)
}

/// A foreign `manifest.json` in an otherwise empty output directory.
fn foreign_manifest(root: &Path) -> Option<std::fs::File> {
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("out/manifest.json"), b"{\"my\": \"notes\"}").unwrap();
    None
}

/// A foreign file named like a shard, next to a real dataset.
fn foreign_shard(root: &Path) -> Option<std::fs::File> {
    std::fs::write(root.join("ds/shard-99999.rfp"), b"my own binary notes").unwrap();
    None
}

/// A file that merely starts and ends like a shard name.
fn shard_notes(root: &Path) -> Option<std::fs::File> {
    std::fs::write(root.join("ds/shard-notes.rfp"), b"notes").unwrap();
    None
}

/// A FIFO where the dataset's first shard should be: opening it for
/// reading would wait for a writer forever.
fn fifo_shard(root: &Path) -> Option<std::fs::File> {
    let shard = root.join("ds/shard-00000.rfp");
    save(root, "ds/shard-00000.rfp");
    assert!(Command::new("mkfifo").arg(&shard).status().unwrap().success());
    None
}

/// A FIFO in place of the manifest.
fn fifo_manifest(root: &Path) -> Option<std::fs::File> {
    let manifest = root.join("ds/manifest.json");
    save(root, "ds/manifest.json");
    assert!(Command::new("mkfifo").arg(&manifest).status().unwrap().success());
    None
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "verify with a FIFO for a shard",
        args: &["verify", "{ds}"],
        before: fifo_shard,
        code: 2,
        shell: "",
        message: "not a regular file",
    },
    Case {
        name: "inspect with a FIFO for a shard",
        args: &["inspect", "{ds}"],
        before: fifo_shard,
        code: 2,
        shell: "",
        message: "not a regular file",
    },
    Case {
        name: "bench with a FIFO for a shard",
        args: &["bench", "{ds}"],
        before: fifo_shard,
        code: 2,
        shell: "",
        message: "not a regular file",
    },
    Case {
        name: "verify with a FIFO for the manifest",
        args: &["verify", "{ds}"],
        before: fifo_manifest,
        code: 2,
        shell: "",
        message: "not a regular file",
    },
    Case {
        name: "pack over a foreign manifest.json",
        args: &["pack", "-q", "{src}", "{root}/out"],
        before: foreign_manifest,
        code: 2,
        shell: "",
        message: "not its contents",
    },
    Case {
        name: "pack over a dataset next to a foreign shard-named file",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: foreign_shard,
        code: 2,
        shell: "",
        message: "not its contents",
    },
    Case {
        name: "pack over a dataset next to shard-notes.rfp",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: shard_notes,
        code: 2,
        shell: "",
        message: "not part of a ringfeed dataset",
    },
    Case {
        name: "pack a dataset into itself",
        args: &["pack", "-q", "{ds}", "{ds}"],
        before: nothing,
        code: 2,
        shell: "",
        message: "is the source",
    },
    Case {
        name: "pack into a directory inside the source",
        args: &["pack", "-q", "{src}", "{src}/c0/out"],
        before: nothing,
        code: 2,
        shell: "",
        message: "lies inside the source",
    },
    Case {
        name: "pack into a directory holding the source",
        args: &["pack", "-q", "{src}/c1", "{root}"],
        before: nothing,
        code: 2,
        shell: "",
        message: "holds the source",
    },
    Case {
        name: "pack into the same directory through `..`",
        args: &["pack", "-q", "{ds}", "{src}/../ds"],
        before: nothing,
        code: 2,
        shell: "",
        message: "is the source",
    },
    Case {
        name: "pack into a directory another pack is writing",
        args: &["pack", "-q", "{src}", "{ds}"],
        before: lock_ds,
        code: 2,
        shell: "",
        message: "in use by pid 4242",
    },
];
