//! Thousands of requests withdrawn at random moments (in the queue, on
//! the pool, in the model, after the answer was sent): every request that
//! stays gets exactly its own row, the queue drains to zero, and the
//! batcher keeps serving.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{checksum, png};
use ringfeed_serve::{Batch, BatchData, Batcher, Error, OutputMut, Preprocessor, Spec};

const IMAGES: u64 = 24;
const REQUESTS: u64 = 4000;

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn random_cancellations_leak_nothing_and_mix_up_no_rows() {
    let spec = Spec::builder().square(16).raw_u8().build().unwrap();
    let images: Vec<Vec<u8>> = (0..IMAGES).map(|i| png(24 + i as u32, 20, i)).collect();
    let mut pre = Preprocessor::new(&spec).unwrap();
    let expected: Vec<u64> = images
        .iter()
        .map(|b| {
            let mut row = vec![0u8; spec.row_len()];
            pre.run(b, OutputMut::U8(&mut row)).unwrap();
            checksum(BatchData::U8(&row))
        })
        .collect();
    let distinct: std::collections::HashSet<_> = expected.iter().collect();
    assert_eq!(distinct.len(), IMAGES as usize, "rows must be told apart");

    let batcher = Arc::new(
        Batcher::builder(spec)
            .max_batch(8)
            .max_delay(Duration::from_micros(500))
            .queue(128)
            .in_flight(2)
            .threads(2)
            .build(|batch: Batch| async move {
                // Sometimes slow, so that requests are cancelled mid-model.
                let sums: Vec<u64> = (0..batch.len()).map(|i| checksum(batch.row(i).unwrap())).collect();
                if sums[0].is_multiple_of(3) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
                Ok::<_, std::io::Error>(sums)
            })
            .unwrap(),
    );

    let images = Arc::new(images);
    let expected = Arc::new(expected);
    // Below the queue's capacity (nothing refused), then far above it.
    let mut totals = [0u64; 3];
    for (seed, outstanding) in [(0x5eed, 100), (0xfeed, 600)] {
        let counts = storm(&batcher, &images, &expected, seed, outstanding).await;
        eprintln!(
            "{outstanding} outstanding: ok {}, cancelled {}, rejected {}",
            counts[0], counts[1], counts[2]
        );
        let least = if outstanding == 100 { 500 } else { 10 };
        assert!(counts[0] > least && counts[1] > least, "{counts:?}");
        if outstanding == 100 {
            assert_eq!(counts[2], 0, "withdrawn requests must not crowd out live ones");
        }
        totals.iter_mut().zip(counts).for_each(|(t, c)| *t += c);
    }
    let [ok, cancelled, rejected] = totals;
    assert!(rejected > 0, "the second storm overloads the queue");

    // Everything drains: no request or batch is stuck.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let m = loop {
        let m = batcher.metrics();
        let accounted = m.completed + m.failed_client + m.failed_server + m.cancelled;
        if m.queue_depth == 0 && m.batches_in_flight == 0 && accounted == m.submitted {
            break m;
        }
        assert!(std::time::Instant::now() < deadline, "not drained: {m:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // A refusal is counted at `submit` even when the caller gave up
    // before looking at it.
    assert!(m.rejected >= rejected && m.rejected <= rejected + cancelled, "{m:?}");
    assert_eq!(m.submitted + m.rejected, 2 * REQUESTS);
    assert!(m.completed >= ok, "{m:?}");
    assert_eq!((m.failed_client, m.failed_server), (0, 0));
    eprintln!("batch sizes {:?}", m.batch_sizes);

    // And it still serves, every request its own row.
    let futs: Vec<_> =
        (0..IMAGES as usize).map(|k| (k, tokio::spawn(batcher.submit(images[k].clone())))).collect();
    for (k, f) in futs {
        assert_eq!(f.await.unwrap().unwrap().output, expected[k]);
    }
    assert_eq!(batcher.metrics().queue_depth, 0);
}

/// `REQUESTS` requests with about `outstanding` at a time, a quarter never
/// cancelled, the rest given a random deadline; returns how many got their
/// row, were cancelled, were refused.
async fn storm(
    batcher: &Arc<Batcher<u64>>,
    images: &Arc<Vec<Vec<u8>>>,
    expected: &Arc<Vec<u64>>,
    seed: u64,
    outstanding: usize,
) -> [u64; 3] {
    let mut counts = [0u64; 3];
    let mut rng = Rng(seed);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..REQUESTS {
        let k = rng.below(IMAGES) as usize;
        // 0: never cancelled; else a deadline of 0..2 ms, or select! on a
        // sleep.
        let how = rng.below(4);
        let micros = rng.below(2000);
        let (b, images, expected) = (Arc::clone(batcher), Arc::clone(images), Arc::clone(expected));
        tasks.spawn(async move {
            let fut = b.submit(images[k].clone());
            let outcome = match how {
                0 => Some(fut.await),
                1 | 2 => tokio::time::timeout(Duration::from_micros(micros), fut).await.ok(),
                _ => tokio::select! {
                    r = fut => Some(r),
                    () = tokio::time::sleep(Duration::from_micros(micros)) => None,
                },
            };
            match outcome {
                Some(Ok(r)) => {
                    assert_eq!(r.output, expected[k], "request {i} got another row");
                    0
                }
                None => 1,
                Some(Err(Error::Overloaded { .. })) => 2,
                Some(Err(e)) => panic!("request {i}: {e}"),
            }
        });
        while tasks.len() >= outstanding {
            counts[tasks.join_next().await.unwrap().unwrap()] += 1;
        }
    }
    while let Some(r) = tasks.join_next().await {
        counts[r.unwrap()] += 1;
    }
    assert_eq!(counts.iter().sum::<u64>(), REQUESTS);
    counts
}
