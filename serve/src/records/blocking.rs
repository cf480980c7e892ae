//! The fallback backend: positioned reads through the page cache on a few
//! plain threads, for systems where io_uring is unavailable (or when the
//! caller asks for it). One read per thread at a time, so `threads` is
//! the queue depth.

use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread;

use bytes::Bytes;

use super::io::{Backend, ReadOp, short_read};

#[derive(Debug)]
pub(crate) struct BlockingBackend {
    tx: Mutex<Sender<ReadOp>>,
}

impl BlockingBackend {
    pub(crate) fn start(threads: usize) -> io::Result<BlockingBackend> {
        let (tx, rx) = channel::<ReadOp>();
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..threads.max(1) {
            let rx = rx.clone();
            thread::Builder::new().name(format!("rf-serve-read{n}")).spawn(move || worker(&rx))?;
        }
        Ok(BlockingBackend { tx: Mutex::new(tx) })
    }
}

impl Backend for BlockingBackend {
    fn submit(&self, op: ReadOp) {
        // Workers stop only when the sender is gone; a dead worker pool
        // drops the op, whose reply channel then tells the caller.
        let _ = self.tx.lock().unwrap_or_else(|e| e.into_inner()).send(op);
    }
}

fn worker(rx: &Mutex<Receiver<ReadOp>>) {
    loop {
        // The lock is held only to take one op, not across the read.
        let op = match rx.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(op) => op,
            Err(_) => return,
        };
        let ReadOp { file, offset, len, permit, reply, .. } = op;
        let mut buf = vec![0u8; len];
        let result = match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(Bytes::from(buf)),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Err(short_read(len)),
            Err(e) => Err(e),
        };
        drop(permit);
        let _ = reply.send(result);
    }
}
