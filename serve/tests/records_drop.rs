//! Dropping the last `Records` handle while reads are in the kernel: the
//! ring thread finishes them and ends (its buffers outlive every read),
//! and nothing is left behind. Alone in its binary so that no other
//! `Records` owns a ring thread meanwhile.

use std::time::{Duration, Instant};

use ringfeed_pack::{PackWriter, Payload, Schema};
use ringfeed_serve::{RecordIo, Records};

fn ring_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.trim() == "rf-serve-ring")
        .count()
}

/// Waits (yielding) until `done`, failing after 20 s.
fn wait_until(done: impl Fn() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::yield_now();
    }
}

#[test]
fn the_ring_thread_ends_after_its_last_reads_when_the_handle_goes() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let schema = Schema { payload: Payload::Bytes, labels: false, keys: false };
    let mut w = PackWriter::builder(dir.path()).schema(schema).build().unwrap();
    for i in 0..2_000u32 {
        w.push(&vec![i as u8; 1_000 + (i as usize * 131) % 20_000], 0, None).unwrap();
    }
    w.finish().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for round in 0..5u64 {
        let records = Records::builder(dir.path()).io(RecordIo::Uring).build().unwrap();
        // The thread names itself once it runs.
        wait_until(|| ring_threads() == 1, "the ring thread to start");
        rt.block_on(async {
            let mut set = tokio::task::JoinSet::new();
            for i in 0..500u64 {
                let r = records.clone();
                set.spawn(async move {
                    // Cancelled at once or soon: most reads are still in
                    // the kernel when their future (and handle) is gone.
                    let _ =
                        tokio::time::timeout(Duration::from_micros(i % 50), r.get((i * 7 + round) % 2_000))
                            .await;
                });
            }
            drop(records);
            while let Some(j) = set.join_next().await {
                j.unwrap();
            }
        });
        // Every handle is gone: the thread drains the kernel and ends.
        wait_until(|| ring_threads() == 0, "the ring thread to end");
    }
}
