//! Cases about what `pack` reads: re-packs that fail midway (the old
//! dataset must survive), text that is not UTF-8, symlinks, files over the
//! record limit, images the decoder will refuse.

use std::os::unix::fs::symlink;
use std::path::Path;

use super::Case;

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// `{root}/text`: a text tree whose last file is Latin-1.
fn latin1_text(root: &Path) -> Option<std::fs::File> {
    for i in 0..50 {
        write(root, &format!("text/{i:02}.txt"), format!("line {i}\n").as_bytes());
    }
    write(root, "text/zz.txt", b"caf\xe9\n");
    None
}

/// `{root}/loop`: a class directory holding a link to itself.
fn symlink_loop(root: &Path) -> Option<std::fs::File> {
    write(root, "loop/c0/a.jpg", b"a");
    symlink(root.join("loop/c0"), root.join("loop/c0/again")).unwrap();
    None
}

/// `{root}/dangling`: a class holding a link to nothing, named like an image.
fn dangling(root: &Path) -> Option<std::fs::File> {
    write(root, "dangling/c0/a.jpg", b"a");
    symlink(root.join("nowhere.jpg"), root.join("dangling/c0/b.jpg")).unwrap();
    None
}

/// `{root}/linked`: a class whose images are behind a symlinked directory.
fn linked_dir(root: &Path) -> Option<std::fs::File> {
    write(root, "elsewhere/x/a.jpg", b"a");
    std::fs::create_dir_all(root.join("linked/c0")).unwrap();
    symlink(root.join("elsewhere/x"), root.join("linked/c0/x")).unwrap();
    None
}

/// `{root}/huge`: a 5 GB sparse file among small ones.
fn huge_file(root: &Path) -> Option<std::fs::File> {
    write(root, "huge/a.bin", b"a");
    std::fs::File::create(root.join("huge/b.bin")).unwrap().set_len(5 << 30).unwrap();
    None
}

/// `{root}/imgs`: an ImageFolder with one PNG whose header claims more
/// pixels than the decoder accepts.
fn oversized_image(root: &Path) -> Option<std::fs::File> {
    let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    png.extend(20_000u32.to_be_bytes());
    png.extend(20_000u32.to_be_bytes());
    png.extend([8, 2, 0, 0, 0, 0, 0, 0, 0]);
    write(root, "imgs/c0/huge.png", &png);
    None
}

pub(crate) const CASES: &[Case] = &[
    Case {
        name: "re-pack over a dataset from text with a Latin-1 file",
        args: &["pack", "-q", "{root}/text", "{ds}"],
        before: latin1_text,
        shell: "",
        code: 1,
        message: "zz.txt at byte 3: text is not valid UTF-8; to pack other encodings as they are, choose the \
                  bytes payload (ringfeed pack --payload bytes)",
    },
    Case {
        name: "pack Latin-1 text with --payload bytes",
        args: &["pack", "-q", "--payload", "bytes", "{root}/text", "{root}/out"],
        before: latin1_text,
        shell: "",
        code: 0,
        message: "",
    },
    Case {
        name: "re-pack over a dataset from a tree with a symlink loop",
        args: &["pack", "-q", "{root}/loop", "{ds}"],
        before: symlink_loop,
        shell: "",
        code: 2,
        message: "loop/c0/again leads back to",
    },
    Case {
        name: "re-pack over a dataset from a tree with a dangling symlink",
        args: &["pack", "-q", "{root}/dangling", "{ds}"],
        before: dangling,
        shell: "",
        code: 2,
        message: "follow symlink",
    },
    Case {
        name: "pack a class behind a symlinked directory",
        args: &["pack", "-q", "--format", "imagefolder", "{root}/linked", "{root}/out"],
        before: linked_dir,
        shell: "",
        code: 0,
        message: "",
    },
    Case {
        name: "re-pack over a dataset from a tree with a 5 GB file",
        args: &["pack", "-q", "{root}/huge", "{ds}"],
        before: huge_file,
        // 1 GB of address space: reading the file whole would abort.
        shell: "ulimit -v 1000000;",
        code: 2,
        message: "b.bin: the 5368709120-byte file is larger than the pack format's record limit",
    },
    Case {
        name: "pack an image over the decoder's limits",
        args: &["pack", "-q", "{root}/imgs", "{root}/out"],
        before: oversized_image,
        shell: "",
        code: 0,
        message: "warn: 1 of 1 images will not decode with ringfeed's image pipeline",
    },
];
