//! What drives a worker and how it reads: a glommio executor reading with
//! io_uring, or, where io_uring is unavailable, a plain thread reading with
//! blocking `pread`.
//!
//! io_uring is refused by Docker's default seccomp profile and by
//! `kernel.io_uring_disabled`, and glommio cannot start without it. The
//! worker logic (order, coalescing, CRC checks, decoding, batching, the
//! error policy) is the same future either way; only this module knows the
//! difference: [`spawn`] starts a task (a glommio task, or a future run
//! when it is awaited: with blocking reads there is nothing to overlap on
//! one thread), [`Handle`] reads a shard, [`ShardFiles`] keeps a bounded
//! number of them open. The fallback is slower (one read at a time per
//! core, through the page cache) but delivers the same batches.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use glommio::io::{BufferedFile, DmaFile, ReadResult};
use serde::{Deserialize, Serialize};

use super::resources::IoMode;
use crate::{Error, Result};
use ringfeed_pack::Dataset;

/// Environment variable that picks the backend when the builder leaves it
/// at [`IoBackend::Auto`]: `uring`, `blocking` or `auto`.
pub const IO_BACKEND_ENV: &str = "RINGFEED_IO";

/// What runs the workers and issues their reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IoBackend {
    /// A glommio executor per core, reading with io_uring: many reads in
    /// flight per core, direct I/O possible.
    Uring,
    /// A plain thread per core, reading with blocking `pread` through the
    /// page cache, one read at a time: slower, but needs no io_uring.
    Blocking,
    /// io_uring when this process may use it, otherwise blocking reads,
    /// with a warning; the `RINGFEED_IO` environment variable (`uring`,
    /// `blocking`) overrides the choice.
    #[default]
    Auto,
}

/// Resolves the backend: `Auto` (and `RINGFEED_IO`) into what this process
/// can use. Asking for `Uring` where io_uring is refused is an error.
pub(crate) fn resolve_backend(requested: IoBackend) -> Result<IoBackend> {
    let requested = match (requested, std::env::var(IO_BACKEND_ENV)) {
        (IoBackend::Auto, Ok(v)) => match v.trim() {
            "uring" | "io_uring" => IoBackend::Uring,
            "blocking" => IoBackend::Blocking,
            "auto" | "" => IoBackend::Auto,
            other => {
                return Err(Error::Config(format!(
                    "{IO_BACKEND_ENV}={other:?}: expected uring, blocking or auto"
                )));
            }
        },
        (r, _) => r,
    };
    if requested == IoBackend::Blocking {
        return Ok(IoBackend::Blocking);
    }
    match crate::sys::uring_probe::uring_available() {
        Ok(()) => Ok(IoBackend::Uring),
        Err(e) if requested == IoBackend::Uring => Err(Error::Config(format!(
            "io_uring is unavailable ({}); the uring backend was required",
            why(&e)
        ))),
        Err(e) => {
            log::warn!("io_uring unavailable ({}): reading with blocking pread, slower", why(&e));
            Ok(IoBackend::Blocking)
        }
    }
}

/// The likely cause behind an `io_uring_setup` error.
fn why(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOSYS) => {
            format!("{e}: a seccomp filter such as Docker's default, or a kernel without it")
        }
        Some(libc::EPERM) => format!("{e}: kernel.io_uring_disabled, or a seccomp filter"),
        _ => e.to_string(),
    }
}

/// A task of a worker: a glommio task, or, on blocking threads, the future
/// itself, run when it is awaited.
pub(crate) enum Task<T> {
    Uring(glommio::Task<T>),
    Deferred(Pin<Box<dyn Future<Output = T>>>),
}

impl<T> Future for Task<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match self.get_mut() {
            Task::Uring(t) => Pin::new(t).poll(cx),
            Task::Deferred(f) => f.as_mut().poll(cx),
        }
    }
}

/// Starts `future` as a task of the calling worker.
pub(crate) fn spawn<T: 'static>(backend: IoBackend, future: impl Future<Output = T> + 'static) -> Task<T> {
    match backend {
        IoBackend::Blocking => Task::Deferred(Box::pin(future)),
        _ => Task::Uring(glommio::spawn_local(future)),
    }
}

/// The bytes of a read.
pub(crate) enum ReadBuf {
    Uring(ReadResult),
    Heap(Vec<u8>),
    Remote(ringfeed_pack::RemoteBuf),
}

impl std::ops::Deref for ReadBuf {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            ReadBuf::Uring(r) => r,
            ReadBuf::Heap(v) => v,
            ReadBuf::Remote(r) => r,
        }
    }
}

/// An open shard, as a worker reads it.
pub(crate) enum Handle {
    Direct(DmaFile),
    Buffered(BufferedFile),
    /// The dataset's own descriptor, shared by the blocking workers
    /// (`pread` has no file position to race on).
    Blocking(Arc<File>),
    /// A shard in object storage, whichever backend runs the worker.
    Remote(super::remote::RemoteShard),
}

impl Handle {
    /// Reads `len` bytes at `pos`; fewer only at the end of the file.
    pub(crate) async fn read(&self, pos: u64, len: usize) -> std::io::Result<ReadBuf> {
        match self {
            Handle::Blocking(f) => return read_blocking(f, pos, len).map(ReadBuf::Heap),
            Handle::Remote(r) => return r.read(pos, len).await.map(ReadBuf::Remote),
            Handle::Direct(_) | Handle::Buffered(_) => {}
        }
        let buf = self.read_once(pos, len, true).await?;
        if buf.len() < len {
            // A read that fails part-way returns what it got before the
            // failure. Ask for the next bytes: an error there is the real
            // story (a failing disk), nothing at all is a truncated file,
            // which the caller reports as corrupt.
            let probe = (len - buf.len()).min(4096);
            let next = self.read_once(pos + buf.len() as u64, probe, false).await?;
            drop(next);
        }
        Ok(ReadBuf::Uring(buf))
    }

    /// For a shard in object storage, whose read came back with a record
    /// that failed its checksum: drops the store's cached copy and reads
    /// again (`None` for any other kind of shard: nothing to reread).
    pub(crate) async fn reread(&self, pos: u64, len: usize) -> Option<std::io::Result<ReadBuf>> {
        match self {
            Handle::Remote(r) => Some(r.reread(pos, len).await.map(ReadBuf::Remote)),
            _ => None,
        }
    }

    async fn read_once(&self, pos: u64, len: usize, aligned: bool) -> std::io::Result<ReadResult> {
        match self {
            Handle::Direct(f) if aligned => f.read_at_aligned(pos, len).await.map_err(Into::into),
            Handle::Direct(f) => f.read_at(pos, len).await.map_err(Into::into),
            Handle::Buffered(f) => f.read_at(pos, len).await.map_err(Into::into),
            Handle::Blocking(_) | Handle::Remote(_) => Err(std::io::Error::other("not an io_uring file")),
        }
    }

    async fn close(self) {
        // Errors closing a read-only file change nothing we could act on.
        let _ = match self {
            Handle::Direct(f) => f.close().await,
            Handle::Buffered(f) => f.close().await,
            Handle::Blocking(_) | Handle::Remote(_) => Ok(()),
        };
    }
}

/// `pread` until `len` bytes or the end of the file; an error part-way is
/// returned as the error (the failing disk is the story, not the short
/// read).
fn read_blocking(f: &File, pos: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    let mut got = 0;
    while got < len {
        match f.read_at(&mut buf[got..], pos + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(got);
    Ok(buf)
}

/// A worker's open shards: at most `cap`, least recently used closed first,
/// each opened once however many reads ask for it at the same time.
pub(crate) struct ShardFiles {
    backend: IoBackend,
    io: IoMode,
    dataset: Arc<Dataset>,
    cap: usize,
    /// Open shards, least recently used first.
    open: RefCell<VecDeque<(usize, Rc<Handle>)>>,
    /// Shards being opened; dropping the sender wakes the reads waiting.
    opening: RefCell<HashMap<usize, flume::Receiver<()>>>,
    /// Handles closed by the cap while a read still held them.
    retired: RefCell<Vec<Rc<Handle>>>,
}

impl ShardFiles {
    pub(crate) fn new(backend: IoBackend, io: IoMode, dataset: Arc<Dataset>, cap: usize) -> Self {
        ShardFiles {
            backend,
            io,
            dataset,
            cap: cap.max(1),
            open: RefCell::new(VecDeque::new()),
            opening: RefCell::new(HashMap::new()),
            retired: RefCell::new(Vec::new()),
        }
    }

    /// Shard `shard`, opened if needed.
    pub(crate) async fn get(&self, shard: usize) -> Result<Rc<Handle>> {
        if let Some(remote) = super::remote::RemoteShard::of(&self.dataset, shard)? {
            return Ok(Rc::new(Handle::Remote(remote)));
        }
        if self.backend == IoBackend::Blocking {
            // The dataset's descriptors, under the dataset's own cap.
            return Ok(Rc::new(Handle::Blocking(self.dataset.file(shard)?)));
        }
        loop {
            if let Some(h) = self.lookup(shard) {
                return Ok(h);
            }
            let waiting = self.opening.borrow().get(&shard).cloned();
            let Some(wait) = waiting else { break };
            // Disconnected when the opener is done, whatever the outcome.
            let _ = wait.recv_async().await;
        }
        let (done, wait) = flume::bounded::<()>(1);
        self.opening.borrow_mut().insert(shard, wait);
        let opened = self.open_uring(shard).await;
        self.opening.borrow_mut().remove(&shard);
        drop(done);
        let handle = Rc::new(opened?);
        let evicted = {
            let mut open = self.open.borrow_mut();
            open.push_back((shard, handle.clone()));
            let over = open.len().saturating_sub(self.cap);
            open.drain(..over).map(|(_, h)| h).collect::<Vec<_>>()
        };
        for h in evicted {
            self.retire(h).await;
        }
        Ok(handle)
    }

    fn lookup(&self, shard: usize) -> Option<Rc<Handle>> {
        let mut open = self.open.borrow_mut();
        let at = open.iter().position(|(s, _)| *s == shard)?;
        let entry = open.remove(at)?;
        let handle = entry.1.clone();
        open.push_back(entry);
        Some(handle)
    }

    /// Opens the very file the dataset validated: through its descriptor's
    /// entry in `/proc/self/fd` (held open meanwhile), so that a shard
    /// renamed, replaced or deleted after the dataset was opened is still
    /// read as it was, if the dataset still has it open (the shard's own
    /// path where `/proc` is missing).
    async fn open_uring(&self, shard: usize) -> Result<Handle> {
        use std::os::fd::AsRawFd;
        let file = self.dataset.file(shard)?;
        let path = self.dataset.shards().get(shard).map(|s| s.path().to_path_buf()).unwrap_or_default();
        let proc = std::path::PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
        let same_file = if proc.exists() { proc } else { path.clone() };
        let opened = match self.io {
            IoMode::Direct => DmaFile::open(&same_file).await.map(Handle::Direct),
            _ => BufferedFile::open(&same_file).await.map(Handle::Buffered),
        };
        drop(file);
        opened.map_err(|e| Error::io("open", path, e.into()))
    }

    /// Closes a handle the cap pushed out, or keeps it for
    /// [`close_all`](Self::close_all) while a read still holds it.
    async fn retire(&self, handle: Rc<Handle>) {
        match Rc::try_unwrap(handle) {
            Ok(h) => h.close().await,
            Err(shared) => self.retired.borrow_mut().push(shared),
        }
        // Reads finished meanwhile may have let go of earlier ones.
        let free: Vec<_> = {
            let mut retired = self.retired.borrow_mut();
            let (free, held) = retired.drain(..).partition(|h| Rc::strong_count(h) == 1);
            *retired = held;
            free
        };
        for h in free {
            if let Ok(h) = Rc::try_unwrap(h) {
                h.close().await;
            }
        }
    }

    /// Closes every handle; reads must be over (a handle still held is
    /// closed when its holder drops it).
    pub(crate) async fn close_all(&self) {
        let open: Vec<_> = self.open.borrow_mut().drain(..).map(|(_, h)| h).collect();
        let retired: Vec<_> = self.retired.borrow_mut().drain(..).collect();
        for h in open.into_iter().chain(retired) {
            if let Ok(h) = Rc::try_unwrap(h) {
                h.close().await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;
    use crate::order::DdpConfig;

    /// Set in the child process: which scenario it runs.
    const CHILD: &str = "RINGFEED_TEST_IO_BACKEND_CHILD";

    /// Prints log records to stderr, where the parent looks for the
    /// warning.
    struct Stderr;

    impl log::Log for Stderr {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            eprintln!("{}: {}", record.level(), record.args());
        }
        fn flush(&self) {}
    }

    static LOGGER: Stderr = Stderr;

    /// Runs `test` again in a child process with `CHILD=scenario` (and
    /// `env`); returns its stdout and stderr after checking it passed.
    fn in_child(test: &str, scenario: &str, env: &[(&str, &str)]) -> (String, String) {
        let out = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env(CHILD, scenario)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert!(out.status.success(), "child {scenario} failed:\n{stdout}\n{stderr}");
        assert!(stdout.contains("child done"), "child {scenario} did not run:\n{stdout}\n{stderr}");
        (stdout, stderr)
    }

    /// A dataset of 300 records in a few shards; record `i` is 50 bytes of
    /// `i as u8`.
    fn dataset() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut w = crate::PackWriter::builder(dir.path()).shard_size(4096).build().unwrap();
        for i in 0..300u32 {
            w.push(&[i as u8; 50], 0, None).unwrap();
        }
        w.finish().unwrap();
        dir
    }

    #[test]
    fn a_process_refused_io_uring_reads_with_blocking_reads() {
        if std::env::var(CHILD).as_deref() == Ok("seccomp") {
            return refused_child();
        }
        if std::env::var_os(CHILD).is_some() {
            return;
        }
        let (_, stderr) = in_child(
            "engine::io_backend::tests::a_process_refused_io_uring_reads_with_blocking_reads",
            "seccomp",
            &[],
        );
        let warnings: Vec<_> = stderr.lines().filter(|l| l.contains("io_uring unavailable")).collect();
        assert_eq!(warnings.len(), 1, "{stderr}");
        assert!(warnings[0].contains("reading with blocking pread, slower"), "{stderr}");
        assert!(warnings[0].contains("seccomp"), "{stderr}");
    }

    /// Under a seccomp filter like Docker's: the probe sees ENOSYS, `Auto`
    /// falls back with a warning and streams every record, `Uring` is a
    /// configuration error, not a panic.
    fn refused_child() {
        let _ = log::set_logger(&LOGGER);
        log::set_max_level(log::LevelFilter::Warn);
        crate::sys::uring_probe::deny_uring_for_this_process().unwrap();
        let e = crate::sys::uring_probe::uring_available().unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOSYS));
        let dir = dataset();
        let err = crate::Loader::builder(dir.path()).io_backend(IoBackend::Uring).build().unwrap_err();
        assert!(err.to_string().contains("io_uring is unavailable"), "{err}");
        let mut l = crate::Loader::builder(dir.path())
            .batch_size(16)
            .cores(2)
            .ddp(DdpConfig::default())
            .build()
            .unwrap();
        assert_eq!(l.io_backend(), IoBackend::Blocking);
        let mut seen = vec![false; 300];
        for batch in l.by_ref() {
            let batch = batch.unwrap();
            for (k, payload) in batch.records().enumerate() {
                let i = batch.indices[k] as usize;
                assert_eq!(&payload[..], &[i as u8; 50][..]);
                assert!(!std::mem::replace(&mut seen[i], true), "record {i} twice");
            }
        }
        assert!(seen.iter().all(|&s| s));
        println!("child done");
    }

    #[test]
    fn the_environment_picks_the_backend() {
        let test = "engine::io_backend::tests::the_environment_picks_the_backend";
        match std::env::var(CHILD).as_deref() {
            Ok("env") => {
                let want = std::env::var(IO_BACKEND_ENV).unwrap();
                match want.as_str() {
                    "blocking" => assert_eq!(resolve_backend(IoBackend::Auto).unwrap(), IoBackend::Blocking),
                    "bogus" => {
                        let e = resolve_backend(IoBackend::Auto).unwrap_err().to_string();
                        assert!(e.contains("RINGFEED_IO=\"bogus\": expected uring, blocking or auto"), "{e}");
                    }
                    _ => unreachable!(),
                }
                // An explicit choice wins over the environment.
                assert_eq!(resolve_backend(IoBackend::Blocking).unwrap(), IoBackend::Blocking);
                println!("child done");
            }
            Ok(_) => {}
            Err(_) => {
                in_child(test, "env", &[(IO_BACKEND_ENV, "blocking")]);
                in_child(test, "env", &[(IO_BACKEND_ENV, "bogus")]);
            }
        }
    }
}
