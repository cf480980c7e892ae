//! The async side of the loader: `next_async` futures dropped at any
//! point lose nothing, and `build_async` / `close` keep a tokio runtime's
//! worker threads free.

mod common;

use std::time::Duration;

use common::images::{dataset, loader};
use futures_lite::future::poll_once;
use ringfeed::{Digest, ErrorPolicy, ImagePipeline, Loader, LoaderState, SampleTransform};

/// What a consumer saw: every batch's position, the state after it, and a
/// digest of all of them.
#[derive(Debug, PartialEq)]
struct Seen {
    positions: Vec<(u64, u64)>,
    states: Vec<LoaderState>,
    digest: String,
}

fn builder(dir: &std::path::Path) -> ringfeed::LoaderBuilder {
    loader(dir, ImagePipeline::train(48), 2, ErrorPolicy::Fail).epochs(10).prefetch(2)
}

fn undisturbed(dir: &std::path::Path) -> Seen {
    let mut l = builder(dir).build().unwrap();
    let (mut positions, mut states, mut digest) = (Vec::new(), Vec::new(), Digest::default());
    while let Some(b) = l.next() {
        let b = b.unwrap();
        positions.push((b.epoch, b.index));
        digest.update(&b);
        states.push(l.state());
    }
    Seen { positions, states, digest: digest.hex() }
}

/// A cheap deterministic generator for the cancellation points.
fn next_rand(x: &mut u64) -> u64 {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    *x
}

#[test]
fn cancelled_next_async_futures_lose_nothing() {
    let (dir, _) = dataset(false);
    let want = undisturbed(dir.path());
    assert_eq!(want.positions.len(), 50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let (seen, polled_once, timed_out) = rt.block_on(async {
        let mut l = builder(dir.path()).build_async().await.unwrap();
        let (mut positions, mut states, mut digest) = (Vec::new(), Vec::new(), Digest::default());
        let (mut polled_once, mut timed_out, mut x) = (0u64, 0u64, 0x9E37_79B9_7F4A_7C15u64);
        loop {
            let got = match next_rand(&mut x) % 4 {
                // Polled once and dropped: cancelled right after the
                // receive registered its waker, whenever nothing is queued.
                0 | 1 => loop {
                    match poll_once(l.next_async()).await {
                        Some(got) => break got,
                        None => {
                            polled_once += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                },
                // Dropped by a timeout at a random moment of the wait,
                // possibly after being woken.
                2 => {
                    let limit = Duration::from_micros(next_rand(&mut x) % 300);
                    match tokio::time::timeout(limit, l.next_async()).await {
                        Ok(got) => got,
                        Err(_) => {
                            timed_out += 1;
                            continue;
                        }
                    }
                }
                _ => l.next_async().await,
            };
            let Some(b) = got else { break };
            let b = b.unwrap();
            positions.push((b.epoch, b.index));
            digest.update(&b);
            states.push(l.state());
        }
        l.close().await;
        (Seen { positions, states, digest: digest.hex() }, polled_once, timed_out)
    });
    eprintln!("cancelled {polled_once} futures after one poll and {timed_out} by a timeout");
    assert!(polled_once + timed_out >= 1000, "only {polled_once} + {timed_out} cancellations");
    assert!(timed_out > 0);
    assert_eq!(seen, want);
}

/// `close` runs the blocking part of shutting down off the runtime: on a
/// runtime with one worker thread, a task can still run while the
/// loader's workers are held up, and it is that task which lets them go.
/// A close that joined the workers in place would block the only worker
/// thread forever (the watchdog below fails the test).
#[test]
fn close_and_build_async_do_not_block_the_runtime() {
    let (dir, _) = dataset(false);
    let (gate_tx, gate_rx) = flume::unbounded::<()>();
    let (entered_tx, entered_rx) = flume::unbounded::<()>();
    let closed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hold = closed.clone();
    let transform = SampleTransform::new(move |_, _| {
        if hold.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = entered_tx.send(());
            // Held until the gate's sender is dropped.
            let _ = gate_rx.recv();
        }
        Ok(())
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_time().build().unwrap();
    let (done_tx, done_rx) = flume::bounded::<Digest>(1);
    let (started_tx, started_rx) = flume::bounded::<()>(1);
    let builder = builder(dir.path()).sample_transform(transform);
    rt.spawn(async move {
        let mut l = builder.build_async().await.unwrap();
        let mut digest = Digest::default();
        digest.update(&l.next_async().await.unwrap().unwrap());
        // From now on the workers stop inside the transform.
        closed.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = entered_rx.recv_async().await;
        let closing = l.close();
        started_tx.send_async(()).await.unwrap();
        closing.await;
        done_tx.send_async(digest).await.unwrap();
    });
    rt.spawn(async move {
        started_rx.recv_async().await.unwrap();
        drop(gate_tx);
    });
    match done_rx.recv_timeout(Duration::from_secs(120)) {
        Ok(digest) => {
            let mut want = Digest::default();
            want.update(&builder_first(dir.path()));
            assert_eq!(digest.hex(), want.hex());
        }
        Err(e) => {
            // The runtime cannot be shut down with its thread blocked.
            std::mem::forget(rt);
            panic!("close() did not complete: it blocked the runtime's only worker thread ({e:?})");
        }
    }
}

fn builder_first(dir: &std::path::Path) -> ringfeed::Batch {
    let mut l: Loader = builder(dir).build().unwrap();
    l.next().unwrap().unwrap()
}
