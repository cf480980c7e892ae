//! Cases about what the commands print: a stdout that cannot be written
//! is an error with a message (exit 2), never a panic or a silent exit 0,
//! and names with control characters print as one escaped line.

use super::Case;
use super::dataset_files::nothing;

const FULL: &str = "exec >/dev/full;";
const NO_SPACE: &str = "error: cannot write to stdout: No space left on device";

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "inspect to a full stdout",
        args: &["inspect", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "inspect --json to a full stdout",
        args: &["inspect", "--json", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "order to a full stdout",
        args: &["order", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "verify to a full stdout",
        args: &["verify", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "verify --json to a full stdout",
        args: &["verify", "--json", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "bench to a full stdout",
        args: &["bench", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "bench --json to a full stdout",
        args: &["bench", "--json", "{ds}"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "pack to a full stdout",
        args: &["pack", "-q", "{src}", "{root}/packed"],
        before: nothing,
        shell: FULL,
        code: 2,
        message: NO_SPACE,
    },
    Case {
        name: "a path with a newline and an escape sequence in an error",
        args: &["inspect", "{root}/no\nsuch\u{1b}[2J"],
        before: nothing,
        shell: "",
        code: 2,
        message: "no\\nsuch\\u{1b}[2J",
    },
];
