//! Random record reads through `Records` against fio on the same file, in
//! one run: `get(index)` and `get_by_key(key)` with 32 requests in flight
//! (one tokio worker; reads on the io_uring thread, O_DIRECT) against
//! `fio --rw=randread --bs=8k --iodepth=32 --direct=1 --ioengine=io_uring`
//! on the dataset's shard. Rounds alternate (fio, get, get_by_key, and
//! `get_many` of 32 random records); medians are reported. One JSON line
//! per figure, then a summary line.
//!
//! `cargo bench -p ringfeed-serve --bench records [-- DATASET_DIR]`
//!
//! Without a directory it packs the shared text set
//! (`~/.cache/ringfeed-bench/text`, 50,000 documents of ~5 KB, from
//! `../shared/datasets/make.sh`) into `~/.cache/ringfeed-bench/text-pack`
//! once. `cargo test --all-targets` runs this without `--bench`: a smoke
//! run on a small generated dataset, no fio.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use ringfeed_serve::{RecordIo, Records};

const IN_FLIGHT: usize = 32;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bench = std::env::args().any(|a| a == "--bench");
    let arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let _tmp;
    let dir = match arg {
        Some(d) => PathBuf::from(d),
        None if bench => shared_text_pack()?,
        None => {
            _tmp = tempfile::tempdir()?;
            small_pack(_tmp.path())?;
            _tmp.path().to_path_buf()
        }
    };
    let phase = if bench { Duration::from_secs(5) } else { Duration::from_millis(100) };
    let rounds = if bench { 5 } else { 1 };

    let records = Records::builder(&dir).io(RecordIo::Uring).build()?;
    // tokio-uring's runtime behind the same seam, for the record.
    let via_tokio_uring = Records::builder(&dir).io(RecordIo::TokioUring).build()?;
    let n = records.len();
    let dataset = ringfeed_pack::Dataset::open(&dir)?;
    let keys: Vec<String> = (0..n).map(|i| dataset.key(i).map(str::to_owned)).collect::<Result<_, _>>()?;
    let mean_bytes = dataset.manifest().payload_bytes as f64 / n as f64;
    println!(
        "{{\"dataset\":{:?},\"records\":{n},\"direct_io_align\":{},\"key_index\":\"{:?}\"}}",
        dir.display().to_string(),
        records.direct_io().unwrap_or(0),
        records.key_index()
    );
    let shard = dataset.shards().iter().max_by_key(|s| s.file_len()).ok_or("no shards")?.path().to_path_buf();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let (mut fio, mut get, mut by_key, mut many) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut get_tu = Vec::new();
    for round in 0..rounds {
        if bench {
            drop_caches();
            fio.push(run_fio(&shard, phase)?);
        }
        // Each driver runs as a task on the runtime's worker, as a
        // server's handlers do (not on the thread that called block_on).
        let r = records.clone();
        get.push(rt.block_on(rt.spawn(async move {
            drive(&r, phase, round, mean_bytes, |r, i| {
                let r = r.clone();
                async move { r.get(i).await.map(|_| 1) }
            })
            .await
        }))?);
        let r = via_tokio_uring.clone();
        get_tu.push(rt.block_on(rt.spawn(async move {
            drive(&r, phase, round, mean_bytes, |r, i| {
                let r = r.clone();
                async move { r.get(i).await.map(|_| 1) }
            })
            .await
        }))?);
        let (r, k) = (records.clone(), keys.clone());
        by_key.push(rt.block_on(rt.spawn(async move {
            drive(&r, phase, round, mean_bytes, |r, i| {
                let (r, key) = (r.clone(), k[i as usize].clone());
                async move { r.get_by_key(&key).await.map(|_| 1) }
            })
            .await
        }))?);
        let r = records.clone();
        many.push(rt.block_on(rt.spawn(async move {
            drive(&r, phase, round, mean_bytes, |r, i| {
                let r = r.clone();
                let want: Vec<u64> =
                    (0..32u64).map(|j| (i.wrapping_mul(2654435761).wrapping_add(j * 7919)) % n).collect();
                async move { r.get_many(&want).await.map(|v| v.len()) }
            })
            .await
        }))?);
    }
    let get_r = Stats::median(&get);
    let key_r = Stats::median(&by_key);
    let many_r = Stats::median(&many);
    let tu_r = Stats::median(&get_tu);
    for (name, s) in
        [("get", &get_r), ("get_by_key", &key_r), ("get_many_32", &many_r), ("get_via_tokio_uring", &tu_r)]
    {
        println!(
            "{{\"name\":\"{name}\",\"records_per_s\":{:.0},\"requests_per_s\":{:.0},\"mb_per_s\":{:.1},\"p50_us\":{:.0},\"p99_us\":{:.0}}}",
            s.records_per_s, s.requests_per_s, s.mb_per_s, s.p50_us, s.p99_us
        );
    }
    if bench {
        let fio_iops = median(fio.iter().map(|f| f.0).collect());
        let fio_p50 = median(fio.iter().map(|f| f.1).collect());
        let fio_p99 = median(fio.iter().map(|f| f.2).collect());
        println!(
            "{{\"name\":\"fio_randread_8k_qd32\",\"iops\":{fio_iops:.0},\"p50_us\":{fio_p50:.0},\"p99_us\":{fio_p99:.0}}}"
        );
        println!(
            "{{\"summary\":true,\"get_vs_fio\":{:.3},\"get_via_tokio_uring_vs_fio\":{:.3},\"get_by_key_vs_get\":{:.3},\"rounds\":{rounds},\"phase_s\":{}}}",
            get_r.records_per_s / fio_iops,
            tu_r.records_per_s / fio_iops,
            key_r.records_per_s / get_r.records_per_s,
            phase.as_secs()
        );
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Stats {
    records_per_s: f64,
    requests_per_s: f64,
    mb_per_s: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Stats {
    fn median(v: &[Stats]) -> Stats {
        let m = |f: fn(&Stats) -> f64| median(v.iter().map(f).collect());
        Stats {
            records_per_s: m(|s| s.records_per_s),
            requests_per_s: m(|s| s.requests_per_s),
            mb_per_s: m(|s| s.mb_per_s),
            p50_us: m(|s| s.p50_us),
            p99_us: m(|s| s.p99_us),
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `IN_FLIGHT` tasks issuing requests back to back for `phase`, each
/// request for a pseudo-random record; returns throughput and latency.
async fn drive<F, Fut>(records: &Records, phase: Duration, round: usize, mean_bytes: f64, request: F) -> Stats
where
    F: Fn(&Records, u64) -> Fut,
    Fut: std::future::Future<Output = ringfeed_serve::Result<usize>> + Send + 'static,
{
    let n = records.len();
    let started = Instant::now();
    let deadline = started + phase;
    let mut set = tokio::task::JoinSet::new();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64 ^ (round as u64) << 32;
    let (mut lat, mut count, mut reqs) = (Vec::new(), 0usize, 0usize);
    let next = |seed: &mut u64| {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        *seed % n
    };
    for _ in 0..IN_FLIGHT {
        let fut = request(records, next(&mut seed));
        set.spawn(async move {
            let t = Instant::now();
            (fut.await, t.elapsed())
        });
    }
    while let Some(done) = set.join_next().await {
        let (got, took) = done.expect("request task");
        count += got.expect("read");
        reqs += 1;
        lat.push(took.as_secs_f64() * 1e6);
        if Instant::now() < deadline {
            let fut = request(records, next(&mut seed));
            set.spawn(async move {
                let t = Instant::now();
                (fut.await, t.elapsed())
            });
        }
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_by(f64::total_cmp);
    Stats {
        records_per_s: count as f64 / secs,
        requests_per_s: reqs as f64 / secs,
        mb_per_s: count as f64 * mean_bytes / secs / 1e6,
        p50_us: lat[lat.len() / 2],
        p99_us: lat[(lat.len() * 99 / 100).min(lat.len() - 1)],
    }
}

/// fio's IOPS, p50 and p99 completion latency (µs).
fn run_fio(file: &Path, phase: Duration) -> Result<(f64, f64, f64), Box<dyn std::error::Error>> {
    let out = Command::new("fio")
        .args([
            "--name=randread",
            "--rw=randread",
            "--bs=8k",
            "--iodepth=32",
            "--direct=1",
            "--ioengine=io_uring",
            "--readonly",
            "--time_based",
            "--output-format=json",
        ])
        .arg(format!("--runtime={}", phase.as_secs().max(1)))
        .arg(format!("--filename={}", file.display()))
        .output()
        .map_err(|e| format!("fio: {e} (install fio to compare)"))?;
    if !out.status.success() {
        return Err(format!("fio failed: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let read = &v["jobs"][0]["read"];
    let pct = |p: &str| read["clat_ns"]["percentile"][p].as_f64().unwrap_or(f64::NAN) / 1e3;
    Ok((read["iops"].as_f64().ok_or("fio: no iops")?, pct("50.000000"), pct("99.000000")))
}

fn drop_caches() {
    // Root only; O_DIRECT on both sides makes it matter little anyway.
    let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
}

fn shared_text_pack() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let home = PathBuf::from(std::env::var("HOME")?);
    let out = home.join(".cache/ringfeed-bench/text-pack");
    if out.join(ringfeed_pack::MANIFEST_FILE).is_file() {
        return Ok(out);
    }
    let src = home.join(".cache/ringfeed-bench/text");
    if !src.is_dir() {
        return Err(format!("{} is missing: run ../shared/datasets/make.sh", src.display()).into());
    }
    let source = ringfeed_pack::open_source(&src, None)?;
    ringfeed_pack::pack(&*source, &out, &ringfeed_pack::PackOptions::builder().build()?, |_| {})?;
    Ok(out)
}

fn small_pack(dir: &Path) -> Result<(), ringfeed_pack::Error> {
    let schema = ringfeed_pack::Schema { payload: ringfeed_pack::Payload::Bytes, labels: false, keys: true };
    let mut w = ringfeed_pack::PackWriter::builder(dir).schema(schema).build()?;
    for i in 0..2_000u32 {
        w.push(&vec![i as u8; 300 + (i as usize * 97) % 9_000], 0, Some(&format!("doc_{i:05}.txt")))?;
    }
    w.finish().map(|_| ())
}
