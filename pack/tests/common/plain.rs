//! Test helpers that need nothing but std and tempfile: deterministic
//! bytes, scratch directories, and an ext4 file system on a loop device.
//! Included by `pack/tests/common/mod.rs` (so by the loader's and serve's
//! tests too) and by `ringfeed-ckpt`'s tests.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::process::Command;

/// A fresh directory on the real file system (under `target/`), not /tmp,
/// which may be tmpfs.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("scratch dir")
}

/// Deterministic pseudo-random bytes (xorshift), so tests need no RNG crate.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Runs a command; its stdout, or its stderr as the error.
pub fn run(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// An ext4 file system on a loop device, mounted; unmounted and detached
/// on drop. Needs root, `mkfs.ext4`, `losetup` and `mount`: `new` says
/// what is missing, and callers skip their test then.
pub struct LoopFs {
    pub image: PathBuf,
    pub device: String,
    pub mount: PathBuf,
    _dir: tempfile::TempDir,
}

impl LoopFs {
    pub fn new(size: u64) -> Result<LoopFs, String> {
        let dir = scratch();
        let image = dir.path().join("disk.img");
        std::fs::File::create(&image).and_then(|f| f.set_len(size)).map_err(|e| e.to_string())?;
        run("mkfs.ext4", &["-q", "-F", "-b", "4096", image.to_str().unwrap()])?;
        let device = run("losetup", &["-f", "--show", image.to_str().unwrap()])?.trim().to_string();
        let mount = dir.path().join("mnt");
        std::fs::create_dir(&mount).map_err(|e| e.to_string())?;
        let fs = LoopFs { image, device, mount, _dir: dir };
        // errors=continue: failed reads must not turn the file system
        // read-only under a test.
        run("mount", &["-o", "errors=continue", &fs.device, fs.mount.to_str().unwrap()])?;
        Ok(fs)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        let _ = run("umount", &[self.mount.to_str().unwrap()]);
        let _ = run("losetup", &["-d", &self.device]);
    }
}
