//! The batcher end to end: rows, threads, isolation, overload, metrics.

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PHOTOS, checksum, fixture, png};
use ringfeed_decode::Pipeline;
use ringfeed_serve::{Batch, BatchData, Batcher, Error, Fault, OutputMut, Spec};

/// The model used by most tests: one checksum per row.
async fn echo(batch: Batch) -> Result<Vec<u64>, std::io::Error> {
    Ok((0..batch.len()).map(|i| checksum(batch.row(i).unwrap())).collect())
}

/// A batcher of one-row batches, one in flight, whose model waits for a
/// permit of the returned gate per batch (so tests decide when batches end).
fn gated(
    configure: impl FnOnce(ringfeed_serve::BatcherBuilder) -> ringfeed_serve::BatcherBuilder,
) -> (Batcher<u64>, Arc<tokio::sync::Semaphore>) {
    let spec = Spec::builder().square(16).raw_u8().build().unwrap();
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let g = Arc::clone(&gate);
    let batcher = configure(Batcher::builder(spec).max_batch(1).in_flight(1))
        .build(move |batch: Batch| {
            let g = Arc::clone(&g);
            async move {
                g.acquire().await.unwrap().forget();
                echo(batch).await
            }
        })
        .unwrap();
    (batcher, gate)
}

#[test]
fn each_request_gets_its_own_offline_row_decoded_off_the_runtime() {
    let workers = Arc::new(Mutex::new(HashSet::new()));
    let w = Arc::clone(&workers);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .on_thread_start(move || {
            w.lock().unwrap().insert(std::thread::current().id());
        })
        .build()
        .unwrap();
    rt.block_on(async {
        let spec = Spec::builder().center_crop(256, 224).build().unwrap();
        let batcher = Arc::new(
            Batcher::builder(spec)
                .max_batch(4)
                .max_delay(Duration::from_millis(20))
                .threads(3)
                .build(echo)
                .unwrap(),
        );
        let pool: HashSet<_> = batcher.pool_thread_ids().iter().copied().collect();
        assert_eq!(pool.len(), 3);
        let mut tasks = Vec::new();
        for round in 0..3 {
            for name in PHOTOS {
                let bytes = fixture(name);
                let mut offline = vec![0f32; spec.row_len()];
                Pipeline::val(256, 224).unwrap().run_val(&bytes, OutputMut::F32(&mut offline)).unwrap();
                let want = checksum(BatchData::F32(&offline));
                let b = Arc::clone(&batcher);
                tasks.push(tokio::spawn(async move { (round, name, want, b.submit(bytes).await) }));
            }
        }
        for t in tasks {
            let (round, name, want, got) = t.await.unwrap();
            let r = got.unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(r.output, want, "{name} round {round}");
            assert!(pool.contains(&r.timings.decoded_on), "{name} decoded off the pool");
            assert!(
                !workers.lock().unwrap().contains(&r.timings.decoded_on),
                "{name} decoded on a tokio worker"
            );
            assert!((1..=4).contains(&r.timings.batch_size));
        }
        let m = batcher.metrics();
        let n = 3 * PHOTOS.len() as u64;
        assert_eq!((m.submitted, m.completed, m.failed_client, m.failed_server), (n, n, 0, 0));
        assert_eq!(m.batch_sizes.len(), 5);
        assert_eq!(m.batch_sizes.iter().enumerate().map(|(i, c)| i as u64 * c).sum::<u64>(), n);
        assert_eq!((m.queue_depth, m.batches_in_flight), (0, 0));
        assert_eq!(m.decode_latency.count, n);
        assert_eq!(m.model_latency.count, m.batch_sizes.iter().sum::<u64>());
        assert!(m.decode_latency.quantile(0.99) >= m.decode_latency.quantile(0.5));
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_image_fails_only_its_own_request() {
    let spec = Spec::builder().square(32).raw_u8().build().unwrap();
    let batcher =
        Batcher::builder(spec).max_batch(8).max_delay(Duration::from_millis(200)).build(echo).unwrap();
    let mut futs = Vec::new();
    let mut offline = ringfeed_serve::Preprocessor::new(&spec).unwrap();
    for i in 0..8u64 {
        let bytes = if i == 3 {
            fixture("truncated.jpg")
        } else if i == 5 {
            b"\x89PNG\r\n\x1a\nxx".to_vec()
        } else {
            png(40, 30, i)
        };
        let mut row = vec![0u8; spec.row_len()];
        let want = offline.run(&bytes, OutputMut::U8(&mut row)).ok().map(|()| checksum(BatchData::U8(&row)));
        futs.push((want, tokio::spawn(batcher.submit(bytes))));
    }
    for (i, (want, f)) in futs.into_iter().enumerate() {
        match (want, f.await.unwrap()) {
            (Some(want), Ok(r)) => {
                assert_eq!(r.output, want, "row {i}");
                assert_eq!(r.timings.batch_size, 6, "the good ones share one batch");
            }
            (None, Err(e)) => {
                assert_eq!(e.fault(), Fault::Client, "{e}");
                assert!(matches!(e, Error::Image(_)), "{e}");
            }
            (want, got) => panic!("row {i}: expected {want:?}, got {got:?}"),
        }
    }
    let m = batcher.metrics();
    assert_eq!((m.completed, m.failed_client, m.failed_server), (6, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_failures_fail_their_batch_as_the_servers_fault_and_nothing_else() {
    let spec = Spec::builder().square(16).raw_u8().build().unwrap();
    let mode = Arc::new(Mutex::new("err"));
    let m2 = Arc::clone(&mode);
    let batcher = Batcher::builder(spec)
        .max_batch(2)
        .max_delay(Duration::from_millis(1))
        .build(move |batch: Batch| {
            let mode = *m2.lock().unwrap();
            async move {
                match mode {
                    "err" => Err(std::io::Error::other("CUDA out of memory")),
                    "short" => Ok(vec![0u64; batch.len() - 1]),
                    "panic" => panic!("model bug"),
                    _ => echo(batch).await,
                }
            }
        })
        .unwrap();
    for (m, words) in [("err", "CUDA out of memory"), ("short", "outputs for"), ("panic", "panicked")] {
        *mode.lock().unwrap() = m;
        let e = batcher.submit(png(20, 20, 1)).await.unwrap_err();
        assert_eq!((e.fault(), e.http_status()), (Fault::Server, 500), "{e}");
        assert!(e.to_string().contains(words), "{m}: {e}");
    }
    *mode.lock().unwrap() = "ok";
    batcher.submit(png(20, 20, 1)).await.unwrap();
    let m = batcher.metrics();
    assert_eq!((m.completed, m.failed_server, m.failed_client), (1, 3, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_at_once_and_recovers() {
    let (batcher, gate) = gated(|b| b.queue(4).max_request_bytes(10_000));
    assert_eq!(batcher.memory_bound(), 4 * 10_000 + 16 * 16 * 3);
    let image = png(20, 20, 2);
    // One in the model (blocked), then four in the queue.
    let first = tokio::spawn(batcher.submit(image.clone()));
    while batcher.metrics().batches_in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let queued: Vec<_> = (0..4).map(|_| tokio::spawn(batcher.submit(image.clone()))).collect();
    let started = std::time::Instant::now();
    for _ in 0..10 {
        let e = batcher.submit(image.clone()).await.unwrap_err();
        assert!(matches!(e, Error::Overloaded { queued: 4 }), "{e}");
        assert_eq!((e.fault(), e.http_status()), (Fault::Overloaded, 503));
    }
    assert!(started.elapsed() < Duration::from_millis(100), "refusals are immediate");
    let e = batcher.submit(vec![0u8; 10_001]).await.unwrap_err();
    assert!(matches!(e, Error::TooLarge { len: 10_001, max: 10_000 }) && e.http_status() == 413);
    assert_eq!(batcher.metrics().queue_depth, 4);
    gate.add_permits(5);
    first.await.unwrap().unwrap();
    for q in queued {
        q.await.unwrap().unwrap();
    }
    let m = batcher.metrics();
    assert_eq!((m.completed, m.rejected, m.failed_client, m.queue_depth), (5, 10, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_close_at_max_batch_or_max_delay() {
    let spec = Spec::builder().square(16).raw_u8().build().unwrap();
    let batcher =
        Batcher::builder(spec).max_batch(4).max_delay(Duration::from_millis(30)).build(echo).unwrap();
    // Ten at once: batches of 4, 4, then 2 after the delay.
    let futs: Vec<_> = (0..10).map(|i| tokio::spawn(batcher.submit(png(20, 20, i)))).collect();
    let mut sizes = Vec::new();
    for f in futs {
        sizes.push(f.await.unwrap().unwrap().timings.batch_size);
    }
    sizes.sort();
    assert_eq!(sizes, [2, 2, 4, 4, 4, 4, 4, 4, 4, 4]);
    // A lone request waits max_delay, not forever.
    let started = std::time::Instant::now();
    let r = batcher.submit(png(20, 20, 99)).await.unwrap();
    assert_eq!(r.timings.batch_size, 1);
    assert!(started.elapsed() >= Duration::from_millis(29));
}

#[test]
fn building_outside_a_runtime_is_a_config_error() {
    let spec = Spec::builder().build().unwrap();
    assert!(matches!(Batcher::builder(spec).build(echo), Err(Error::Config(_))));
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        for b in [
            Batcher::builder(spec).max_batch(0),
            Batcher::builder(spec).threads(0),
            Batcher::builder(spec).queue(0),
        ] {
            assert!(matches!(b.build(echo), Err(Error::Config(_))));
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_request_frees_its_queue_place_at_once() {
    let (batcher, gate) = gated(|b| b.queue(2));
    let image = png(20, 20, 5);
    let first = tokio::spawn(batcher.submit(image.clone()));
    while batcher.metrics().batches_in_flight == 0 {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let second = tokio::spawn(batcher.submit(image.clone()));
    let third = batcher.submit(image.clone()); // not polled: admitted all the same
    assert!(matches!(batcher.submit(image.clone()).await, Err(Error::Overloaded { .. })));
    assert_eq!(batcher.metrics().queue_depth, 2);
    drop(third);
    assert_eq!(batcher.metrics().queue_depth, 1);
    let fourth = tokio::spawn(batcher.submit(image.clone()));
    gate.add_permits(3);
    for f in [first, second, fourth] {
        f.await.unwrap().unwrap();
    }
    let m = batcher.metrics();
    assert_eq!((m.completed, m.cancelled, m.rejected, m.queue_depth), (3, 1, 1, 0));
}

#[test]
fn works_on_a_current_thread_runtime() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    rt.block_on(async {
        let spec = Spec::builder().letterbox(40, 24, [0; 3]).build().unwrap();
        let batcher = Batcher::builder(spec).max_batch(4).build(echo).unwrap();
        let futs: Vec<_> = (0..9).map(|i| batcher.submit(png(30, 30, i))).collect();
        for f in futs {
            assert_ne!(f.await.unwrap().timings.decoded_on, std::thread::current().id());
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_batcher_finishes_what_it_admitted() {
    let spec = Spec::builder().square(16).raw_u8().build().unwrap();
    let batcher = Batcher::builder(spec).max_batch(4).in_flight(1).queue(64).build(echo).unwrap();
    let futs: Vec<_> = (0..40).map(|i| tokio::spawn(batcher.submit(png(20, 20, i)))).collect();
    drop(batcher);
    for f in futs {
        f.await.unwrap().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_wait_limit_refuses_while_the_oldest_request_waits_too_long() {
    let limit = Duration::from_millis(30);
    let (batcher, gate) = gated(|b| b.queue(100).max_queue_wait(limit));
    let image = png(20, 20, 3);
    // One in the model (blocked), one waiting behind it.
    let first = tokio::spawn(batcher.submit(image.clone()));
    while batcher.metrics().batches_in_flight == 0 {
        tokio::task::yield_now().await;
    }
    let second = tokio::spawn(batcher.submit(image.clone()));
    // Young enough: still admitted (the place count is far from full).
    let third = tokio::spawn(batcher.submit(image.clone()));
    // The rule is about time: let the oldest waiter pass the limit.
    tokio::time::sleep(limit + Duration::from_millis(10)).await;
    let e = batcher.submit(image.clone()).await.unwrap_err();
    assert!(matches!(e, Error::Overloaded { .. }), "{e}");
    assert_eq!(batcher.metrics().queue_depth, 2);
    // Withdrawn waiters leave nobody waiting: the door opens again.
    second.abort();
    third.abort();
    let _ = (second.await, third.await);
    assert_eq!(batcher.metrics().queue_depth, 0);
    let fourth = tokio::spawn(batcher.submit(image.clone()));
    gate.add_permits(2);
    first.await.unwrap().unwrap();
    fourth.await.unwrap().unwrap();
    // Drained: admitted at once, however long ago the last wait was long.
    gate.add_permits(1);
    batcher.submit(image).await.unwrap();
    assert_eq!(batcher.metrics().rejected, 1);
}
