//! Records: every record read back exactly, by index, by key and in
//! coalesced batches, on both backends, with and without O_DIRECT; damage
//! is an error naming the file and record; abandoned reads give their
//! bytes back; the budget holds.

use std::fs;
use std::path::Path;
use std::time::Duration;

use ringfeed_pack::{KeyIndexOrigin, PackWriter, Payload, Schema};
use ringfeed_serve::{Error, Fault, RecordIo, Records};

// The storage layer's test helpers (deterministic bytes, scratch dirs).
#[path = "../../pack/tests/common/mod.rs"]
mod pack_common;

use pack_common::bytes;

struct Packed {
    dir: tempfile::TempDir,
    payloads: Vec<Vec<u8>>,
}

/// `n` records of 1 byte .. ~12 KB (a few much larger), keys `doc/N`,
/// labels `N % 5`, in shards of ~1 MB.
fn packed(n: usize) -> Packed {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let schema = Schema { payload: Payload::Bytes, labels: true, keys: true };
    let mut w = PackWriter::builder(dir.path()).schema(schema).shard_size(1 << 20).build().unwrap();
    let mut payloads = Vec::new();
    for i in 0..n {
        let len = if i % 97 == 3 { 300_000 + i } else { 1 + (i * 7919) % 12_000 };
        let p = bytes(i as u64 + 7, len);
        w.push(&p, (i % 5) as i64, Some(&format!("doc/{i}"))).unwrap();
        payloads.push(p);
    }
    let shards = w.finish().unwrap().shards.len();
    assert!(n < 1_000 || shards > 3, "{shards} shards");
    Packed { dir, payloads }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn configs() -> Vec<(RecordIo, bool)> {
    vec![
        (RecordIo::Uring, true),
        (RecordIo::Uring, false),
        (RecordIo::TokioUring, true),
        (RecordIo::TokioUring, false),
        (RecordIo::Blocking, false),
    ]
}

#[test]
fn every_record_comes_back_by_index_key_and_batch_on_every_backend() {
    let p = packed(1_500);
    let rt = runtime();
    for (io, direct) in configs() {
        let records = Records::builder(p.dir.path()).io(io).direct_io(direct).build().unwrap();
        assert_eq!(records.io(), io);
        assert_eq!(records.direct_io().is_some(), direct, "statx reports O_DIRECT support here");
        assert_eq!(records.key_index(), Some(KeyIndexOrigin::File));
        assert_eq!(records.len(), 1_500);
        rt.block_on(async {
            // Many in flight at once, from several tasks.
            let mut set = tokio::task::JoinSet::new();
            for i in 0..p.payloads.len() as u64 {
                let r = records.clone();
                set.spawn(async move { (i, r.get(i).await) });
            }
            while let Some(joined) = set.join_next().await {
                let (i, rec) = joined.unwrap();
                let rec = rec.unwrap();
                assert_eq!(rec.index(), i);
                assert_eq!(
                    rec.payload()[..],
                    p.payloads[i as usize][..],
                    "record {i} ({io:?}, direct {direct})"
                );
                assert_eq!(rec.label(), Some((i % 5) as i64));
                assert_eq!(rec.key(), Some(format!("doc/{i}").as_str()));
            }
            for i in (0..1_500).step_by(37) {
                let rec = records.get_by_key(&format!("doc/{i}")).await.unwrap();
                assert_eq!((rec.index(), &rec.payload()[..]), (i as u64, &p.payloads[i][..]));
            }
            // Batches: neighbours, strangers, other shards, repeats, order kept.
            let mut x = 12345u64;
            for _ in 0..40 {
                let n = 1 + (x % 64) as usize;
                let mut want = Vec::new();
                for _ in 0..n {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let base = (x >> 33) % 1_500;
                    want.push(
                        if x.is_multiple_of(3) { base } else { (base / 8) * 8 + (x >> 20) % 8 }.min(1_499),
                    );
                }
                let got = records.get_many(&want).await.unwrap();
                assert_eq!(got.len(), want.len());
                for (rec, &i) in got.iter().zip(&want) {
                    assert_eq!(rec.index(), i);
                    assert_eq!(rec.payload()[..], p.payloads[i as usize][..]);
                }
            }
            assert!(records.get_many(&[]).await.unwrap().is_empty());
        });
        assert_eq!(records.bytes_in_flight(), 0);
    }
}

#[test]
fn missing_records_and_keys_are_404s() {
    let p = packed(100);
    let records = Records::open(p.dir.path()).unwrap();
    runtime().block_on(async {
        for err in [
            records.get(100).await.unwrap_err(),
            records.get(u64::MAX).await.unwrap_err(),
            records.get_by_key("doc/100").await.unwrap_err(),
            records.get_by_key("").await.unwrap_err(),
            records.get_many(&[0, 1, 100]).await.unwrap_err(),
        ] {
            assert!(matches!(err, Error::NotFound(_)), "{err}");
            assert_eq!((err.fault(), err.http_status()), (Fault::Client, 404));
        }
    });
    assert_eq!(records.index_of("doc/42").unwrap(), Some(42));
}

#[test]
fn a_built_key_index_answers_like_the_persisted_one() {
    let p = packed(300);
    fs::remove_file(p.dir.path().join(ringfeed_pack::KEY_INDEX_FILE)).unwrap();
    let records = Records::open(p.dir.path()).unwrap();
    assert_eq!(records.key_index(), Some(KeyIndexOrigin::Built));
    for i in 0..300 {
        assert_eq!(records.index_of(&format!("doc/{i}")).unwrap(), Some(i));
    }
}

fn shard_of_record(dir: &Path, index: u64) -> (std::path::PathBuf, u64) {
    let ds = ringfeed_pack::Dataset::open(dir).unwrap();
    let loc = ds.locate(index).unwrap();
    (ds.shards()[loc.shard].path().to_path_buf(), loc.offset)
}

#[test]
fn a_damaged_record_fails_alone_naming_its_file_and_offset() {
    let p = packed(400);
    let (shard, offset) = shard_of_record(p.dir.path(), 123);
    for (io, direct) in configs() {
        let records = Records::builder(p.dir.path()).io(io).direct_io(direct).build().unwrap();
        let mut b = fs::read(&shard).unwrap();
        b[offset as usize + 1] ^= 0x40;
        fs::write(&shard, &b).unwrap();
        runtime().block_on(async {
            let err = records.get(123).await.unwrap_err();
            assert_eq!(err.fault(), Fault::Server);
            let msg = err.to_string();
            assert!(
                msg.contains(&shard.display().to_string()) && msg.contains(&format!("at byte {offset}")),
                "{msg}"
            );
            let Error::Storage(inner) = &err else { panic!("{err:?}") };
            assert!(inner.is_corruption(), "{inner}");
            // In a batch: the batch fails; its neighbours alone still read.
            assert!(records.get_many(&[122, 123, 124]).await.is_err());
            assert_eq!(records.get(122).await.unwrap().payload()[..], p.payloads[122][..]);
            assert_eq!(records.get(124).await.unwrap().payload()[..], p.payloads[124][..]);
        });
        b[offset as usize + 1] ^= 0x40;
        fs::write(&shard, &b).unwrap();
    }
}

#[test]
fn a_shard_truncated_after_open_is_an_error_not_a_hang() {
    let p = packed(400);
    let (shard, offset) = shard_of_record(p.dir.path(), 300);
    for (io, direct) in configs() {
        let records = Records::builder(p.dir.path()).io(io).direct_io(direct).build().unwrap();
        let full = fs::read(&shard).unwrap();
        fs::OpenOptions::new().write(true).open(&shard).unwrap().set_len(offset).unwrap();
        let err = runtime().block_on(records.get(300)).unwrap_err();
        assert!(matches!(&err, Error::Storage(e) if e.is_corruption()), "{io:?} {direct}: {err}");
        fs::write(&shard, &full).unwrap();
    }
}

#[test]
fn abandoned_reads_give_their_budget_back() {
    let p = packed(2_000);
    // A budget below one large record: reading record 3 (300 KB) needs
    // the whole budget, so it completes only once every abandoned read
    // has returned its share.
    let budget = 64 << 10;
    let records = Records::builder(p.dir.path()).max_bytes_in_flight(budget).build().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let mut set = tokio::task::JoinSet::new();
        let mut x = 99u64;
        for n in 0..4_000u64 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let r = records.clone();
            let (i, wait_us, many) = ((x >> 33) % 2_000, (x >> 12) % 300, n.is_multiple_of(4));
            set.spawn(async move {
                let read = async {
                    if many {
                        r.get_many(&[i, (i + 1) % 2_000, (i * 7) % 2_000]).await.map(|_| ())
                    } else {
                        r.get(i).await.map(|_| ())
                    }
                };
                // Some finish, most are dropped part-way (client gone).
                let _ = tokio::time::timeout(Duration::from_micros(wait_us), read).await;
                assert!(r.bytes_in_flight() <= budget);
            });
        }
        while let Some(j) = set.join_next().await {
            j.unwrap();
        }
        let big = tokio::time::timeout(Duration::from_secs(30), records.get(3)).await;
        assert_eq!(
            big.expect("budget leaked: the full-budget read never started").unwrap().payload()[..],
            p.payloads[3][..]
        );
    });
    assert_eq!(records.bytes_in_flight(), 0);
}

#[test]
fn works_from_a_current_thread_runtime_and_after_its_creator_is_gone() {
    let p = packed(200);
    let records = Records::open(p.dir.path()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let got = rt.block_on(records.get_many(&(0..200).collect::<Vec<_>>())).unwrap();
    assert!(got.iter().zip(&p.payloads).all(|(r, want)| r.payload()[..] == want[..]));
    // A clone outlives the handle it came from, and payloads outlive both.
    let clone = records.clone();
    drop(records);
    let rec = runtime().block_on(clone.get(5)).unwrap();
    drop(clone);
    assert_eq!(rec.payload()[..], p.payloads[5][..]);
}

#[test]
fn bad_settings_are_refused_at_build() {
    let p = packed(10);
    for b in [
        Records::builder(p.dir.path()).max_bytes_in_flight(0),
        Records::builder(p.dir.path()).max_bytes_in_flight(1 << 40),
        Records::builder(p.dir.path()).blocking_threads(0),
    ] {
        assert!(matches!(b.build().unwrap_err(), Error::Config(_)));
    }
    let err = Records::open(p.dir.path().join("missing")).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
