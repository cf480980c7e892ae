//! Cases about sizes and counts: every one is checked before anything is
//! allocated from it and refused with its range, sizes that overflow are
//! refused at parsing, and a window of any size costs no memory.

use std::path::Path;

use super::Case;
use super::dataset_files::nothing;

/// Moves the dataset's only shard away: a shard the manifest lists is
/// missing, a data problem (exit 1) for every command that reads it.
fn missing_shard(root: &Path) -> Option<std::fs::File> {
    super::save(root, "ds/shard-00000.rfp");
    None
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "bench with a window of 10^12 records",
        args: &["bench", "{ds}", "--shuffle", "block", "--window", "1000000000000", "--prefetch", "1"],
        before: nothing,
        shell: "",
        code: 0,
        message: "",
    },
    Case {
        name: "bench with a window of u64::MAX records",
        args: &["bench", "{ds}", "--shuffle", "block", "--window", "18446744073709551615"],
        before: nothing,
        shell: "",
        code: 0,
        message: "",
    },
    Case {
        name: "order with a window and blocks of u64::MAX records",
        args: &[
            "order",
            "{ds}",
            "--shuffle",
            "block",
            "--window",
            "18446744073709551615",
            "--block-len",
            "18446744073709551615",
        ],
        before: nothing,
        shell: "",
        code: 0,
        message: "",
    },
    Case {
        name: "bench with a window of 0",
        args: &["bench", "{ds}", "--shuffle", "block", "--window", "0"],
        before: nothing,
        shell: "",
        code: 2,
        message: "window must be 1..=18446744073709551615, got 0",
    },
    Case {
        name: "order with a batch of 10^12",
        args: &["order", "{ds}", "--batch", "1000000000000"],
        before: nothing,
        shell: "",
        code: 2,
        message: "batch size must be 1..=65536, got 1000000000000",
    },
    Case {
        name: "bench with a batch of 0",
        args: &["bench", "{ds}", "--batch", "0"],
        before: nothing,
        shell: "",
        code: 2,
        message: "batch size must be 1..=65536, got 0",
    },
    Case {
        name: "bench with an image side of 100000",
        args: &["bench", "{ds}", "--pipeline", "train", "--size", "100000"],
        before: nothing,
        shell: "",
        code: 2,
        message: "image side must be 1..=8192, got 100000",
    },
    Case {
        name: "bench val with the largest u32 image side",
        args: &["bench", "{ds}", "--pipeline", "val", "--size", "4294967295"],
        before: nothing,
        shell: "",
        code: 2,
        message: "image side must be 1..=8192, got 4294967295",
    },
    Case {
        name: "bench with 64 GiB of I/O memory per core",
        args: &["bench", "{ds}", "--io-memory", "64G"],
        before: nothing,
        shell: "",
        code: 2,
        message: "io_memory must be 64 KiB..=1 GiB bytes, got 68719476736 (64 GiB)",
    },
    Case {
        name: "bench with an I/O memory that overflows u64",
        args: &["bench", "{ds}", "--io-memory", "16777216T"],
        before: nothing,
        shell: "",
        code: 2,
        message: "is too large (at most 18446744073709551615 bytes)",
    },
    Case {
        name: "bench with a shard-size-like number past u64",
        args: &["bench", "{ds}", "--max-merge", "99999999999999999999"],
        before: nothing,
        shell: "",
        code: 2,
        message: "is too large (at most 18446744073709551615 bytes)",
    },
    Case {
        name: "bench on 3000 cores",
        args: &["bench", "{ds}", "--cores", "3000"],
        before: nothing,
        shell: "",
        code: 2,
        message: "per CPU of this process's",
    },
    Case {
        name: "bench with 100 TiB merged reads",
        args: &["bench", "{ds}", "--max-merge", "100T"],
        before: nothing,
        shell: "",
        code: 2,
        message: "max_merge must be 1 B..=64 MiB bytes, got 109951162777600 (100 TiB)",
    },
    Case {
        name: "bench with a 100 TiB gap",
        args: &["bench", "{ds}", "--max-gap", "100T"],
        before: nothing,
        shell: "",
        code: 2,
        message: "max_gap must be 0 B..=1 MiB bytes, got 109951162777600 (100 TiB)",
    },
    Case {
        name: "bench with a prefetch of 10^6 batches",
        args: &["bench", "{ds}", "--prefetch", "1000000"],
        before: nothing,
        shell: "",
        code: 2,
        message: "prefetch must be 1..=1024, got 1000000",
    },
    Case {
        name: "bench with a batch of 65537",
        args: &["bench", "{ds}", "--batch", "65537"],
        before: nothing,
        shell: "",
        code: 2,
        message: "batch size must be 1..=65536, got 65537",
    },
    Case {
        name: "bench --pipeline train on a dataset of bytes",
        args: &["bench", "{ds}", "--pipeline", "train"],
        before: nothing,
        shell: "",
        code: 2,
        message: "an image pipeline needs a dataset of images",
    },
    Case {
        name: "verify with a missing shard",
        args: &["verify", "{ds}"],
        before: missing_shard,
        shell: "",
        code: 1,
        message: "is corrupt: 1 problem (listed on stdout)",
    },
    Case {
        name: "inspect with a missing shard",
        args: &["inspect", "{ds}"],
        before: missing_shard,
        shell: "",
        code: 1,
        message: "shard-00000.rfp: No such file or directory",
    },
    Case {
        name: "bench with a missing shard",
        args: &["bench", "{ds}"],
        before: missing_shard,
        shell: "",
        code: 1,
        message: "shard-00000.rfp: No such file or directory",
    },
];
