//! `ringfeed bench` and `ringfeed order`: JSON reports, determinism across
//! cores, agreement between the two, and start-up under tight memlock.

use std::path::Path;
use std::process::{Command, Output};

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ringfeed")
}

fn run(args: &[&str]) -> Output {
    Command::new(bin()).args(args).env_remove("RANK").env_remove("WORLD_SIZE").output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// A packed dataset of 300 files of varied sizes in two classes.
fn dataset(root: &Path) -> std::path::PathBuf {
    let src = root.join("src");
    for i in 0..300u32 {
        let dir = src.join(format!("c{}", i % 2));
        std::fs::create_dir_all(&dir).unwrap();
        let body: Vec<u8> = (0..(i * 37 % 4000)).map(|b| (b ^ i) as u8).collect();
        std::fs::write(dir.join(format!("{i:04}.jpg")), body).unwrap();
    }
    let ds = root.join("ds");
    let o = run(&["pack", "-q", "--shard-size", "200K", s(&src), s(&ds)]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    ds
}

#[test]
fn bench_reports_and_digest_does_not_depend_on_cores_or_io() {
    let dir = scratch();
    let ds = dataset(dir.path());
    let mut digests = Vec::new();
    for (cores, io, shuffle) in [
        ("1", "direct", "global"),
        ("2", "direct", "global"),
        ("2", "buffered", "global"),
        ("1", "buffered", "global"),
    ] {
        let j = json(&run(&[
            "bench",
            s(&ds),
            "--json",
            "--cores",
            cores,
            "--io",
            io,
            "--shuffle",
            shuffle,
            "--epochs",
            "2",
            "--batch",
            "16",
        ]));
        for key in ["samples_per_sec", "mb_per_sec", "first_batch_ms", "peak_rss_mb"] {
            assert!(j[key].as_f64().unwrap() > 0.0, "{key} in {j}");
        }
        assert_eq!(j["samples"], 600);
        assert_eq!(j["io"], io);
        assert!(j["metrics"]["reads"].as_u64().unwrap() > 0);
        digests.push(j["digest"].as_str().unwrap().to_string());
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    let other_seed = json(&run(&["bench", s(&ds), "--json", "--seed", "9", "--batch", "16"]));
    let one_epoch = json(&run(&["bench", s(&ds), "--json", "--batch", "16"]));
    assert_ne!(other_seed["digest"], one_epoch["digest"]);
    let undigested = json(&run(&["bench", s(&ds), "--json", "--batch", "16", "--no-digest"]));
    assert!(undigested["digest"].is_null(), "{undigested}");
    assert_eq!(undigested["samples"], one_epoch["samples"]);
}

#[test]
fn order_prints_the_batches_bench_reads() {
    let dir = scratch();
    let ds = dataset(dir.path());
    for world in ["1", "3"] {
        let mut all = Vec::new();
        for rank in 0..world.parse::<u32>().unwrap() {
            let rank = rank.to_string();
            let o = run(&[
                "order",
                s(&ds),
                "--seed",
                "4",
                "--epoch",
                "2",
                "--batch",
                "32",
                "--rank",
                &rank,
                "--world",
                world,
            ]);
            assert!(o.status.success());
            let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            assert_eq!(lines.len(), (300usize.div_ceil(world.parse().unwrap())).div_ceil(32));
            for (b, line) in lines.iter().enumerate() {
                assert_eq!(line["batch"], b);
                assert_eq!(line["epoch"], 2);
                all.extend(line["indices"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()));
            }
        }
        let distinct: std::collections::BTreeSet<u64> = all.iter().copied().collect();
        assert_eq!(distinct.len(), 300, "world {world}: ranks must cover the epoch");
    }
    // The same environment variables torchrun sets are honoured.
    let o = Command::new(bin())
        .args(["order", s(&ds), "--batch", "300"])
        .env("RANK", "1")
        .env("WORLD_SIZE", "2")
        .output()
        .unwrap();
    let line: serde_json::Value =
        serde_json::from_slice(o.stdout.split(|&c| c == b'\n').next().unwrap()).unwrap();
    assert_eq!(line["indices"].as_array().unwrap().len(), 150);
    let o = Command::new(bin()).args(["order", s(&ds)]).env("RANK", "x").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("RANK"));
}

/// Runs `ringfeed bench` through `sh -c`, with `wrap` turning the bench
/// command line into the full shell command.
fn digest_under(wrap: impl Fn(&str) -> String, ds: &Path) -> (String, String) {
    let cmd = wrap(&format!("{} bench {} --json --io direct --cores 2", bin(), s(ds)));
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(o.status.success(), "{cmd}: {stderr}");
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    (j["digest"].as_str().unwrap().to_string(), stderr)
}

#[test]
fn works_under_a_low_soft_memlock_limit_and_without_cap_ipc_lock() {
    let dir = scratch();
    let ds = dataset(dir.path());
    let (normal, _) = digest_under(|c| c.to_string(), &ds);
    // The soft limit is raised to the hard one at start-up.
    let (low_soft, _) = digest_under(|c| format!("ulimit -Sl 256; {c}"), &ds);
    assert_eq!(low_soft, normal);
    // Without CAP_IPC_LOCK the buffer pool is sized to the limit, with a
    // warning, and reads still work.
    let (no_cap, stderr) =
        digest_under(|c| format!("ulimit -Sl 256; exec capsh --drop=cap_ipc_lock -- -c '{c}'"), &ds);
    assert_eq!(no_cap, normal);
    if rlimit_is_finite() {
        assert!(stderr.contains("memlock"), "expected a memlock warning, got: {stderr}");
    }
}

fn rlimit_is_finite() -> bool {
    let o = Command::new("sh").args(["-c", "ulimit -Hl"]).output().unwrap();
    String::from_utf8_lossy(&o.stdout).trim() != "unlimited"
}

#[test]
fn a_hard_memlock_limit_below_io_urings_needs_is_a_clear_error() {
    let dir = scratch();
    let ds = dataset(dir.path());
    let cmd = format!("ulimit -l 256; exec capsh --drop=cap_ipc_lock -- -c '{} bench {}'", bin(), s(&ds));
    let o = Command::new("sh").args(["-c", &cmd]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("locked-memory limit is 256 KiB"), "{err}");
}

#[test]
fn image_pipelines_give_the_same_digest_on_one_or_two_cores() {
    let dir = scratch();
    let src = dir.path().join("src");
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    for (i, name) in
        ["rgb.jpg", "big.jpg", "gray.jpg", "rgb.png", "progressive.jpg", "cmyk.jpg"].iter().enumerate()
    {
        for copy in 0..4 {
            let class = src.join(format!("c{}", (i + copy) % 2));
            std::fs::create_dir_all(&class).unwrap();
            std::fs::copy(fixtures.join(name), class.join(format!("{copy}_{name}"))).unwrap();
        }
    }
    let ds = dir.path().join("ds");
    assert!(run(&["pack", "-q", s(&src), s(&ds)]).status.success());
    for pipeline in ["train", "val"] {
        let digest = |cores: &str, tensors: bool| {
            let mut args = vec![
                "bench",
                s(&ds),
                "--json",
                "--pipeline",
                pipeline,
                "--size",
                "64",
                "--batch",
                "5",
                "--cores",
                cores,
            ];
            if tensors {
                args.push("--tensors");
            }
            let j = json(&run(&args));
            assert_eq!(j["batch_memory"], if tensors { "tensor" } else { "pooled" });
            assert_eq!(j["samples"], 24);
            assert!(j["images_per_sec"].as_f64().unwrap() > 0.0);
            assert!(j["metrics"]["decode_ms"].as_f64().unwrap() > 0.0);
            assert!(j["limiting_stage"].is_string());
            j["digest"].as_str().unwrap().to_string()
        };
        assert_eq!(digest("1", false), digest("2", false), "{pipeline}");
        // The path a tch training loop takes: the same pixels.
        #[cfg(feature = "tch")]
        assert_eq!(digest("2", true), digest("1", false), "{pipeline} tensors");
    }
    let o = run(&["bench", s(&ds), "--pipeline", "val", "--tensors"]);
    if cfg!(feature = "tch") {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    } else {
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains("tch feature"));
    }
}

#[test]
fn corrupt_records_fail_skip_or_are_replaced() {
    let dir = scratch();
    let ds = dataset(dir.path());
    // Flip a byte inside record 100's payload (1,700 bytes long).
    let (shard, offset) = {
        let d = ringfeed::Dataset::open(&ds).unwrap();
        let loc = d.locate(100).unwrap();
        (d.shards()[loc.shard].path().to_path_buf(), loc.offset + 50)
    };
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[offset as usize] ^= 1;
    std::fs::write(&shard, bytes).unwrap();

    let failed = run(&["bench", s(&ds), "--json", "--batch", "16"]);
    assert!(!failed.status.success());
    let msg = String::from_utf8_lossy(&failed.stderr);
    assert!(msg.contains("checksum") && msg.contains(s(&shard)), "{msg}");

    let skipped = json(&run(&["bench", s(&ds), "--json", "--batch", "16", "--on-corrupt", "skip"]));
    assert_eq!(skipped["samples"], 299);
    assert_eq!(skipped["metrics"]["skipped"], 1);

    let replaced = json(&run(&["bench", s(&ds), "--json", "--batch", "16", "--on-corrupt", "replace"]));
    assert_eq!(replaced["samples"], 300);
    assert_eq!(replaced["metrics"]["replaced"], 1);
    assert!(
        replaced["metrics"]["corrupt_locations"][0].as_str().unwrap().contains("record 100"),
        "{replaced}"
    );
    let again =
        json(&run(&["bench", s(&ds), "--json", "--batch", "16", "--on-corrupt", "replace", "--cores", "1"]));
    assert_eq!(again["digest"], replaced["digest"]);

    let text = run(&["bench", s(&ds), "--batch", "16", "--on-corrupt", "replace"]);
    let out = String::from_utf8_lossy(&text.stdout);
    assert!(out.contains("corrupt records: 1 (0 skipped, 1 replaced)"), "{out}");
}

#[test]
fn an_unreadable_shard_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch();
    let ds = dataset(dir.path());
    let shard = std::fs::read_dir(&ds)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "rfp"))
        .unwrap();
    std::fs::set_permissions(&shard, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads any file; drop the capabilities that allow it.
    for cmd in ["bench", "verify"] {
        let line = format!(
            "exec capsh --drop=cap_dac_override,cap_dac_read_search -- -c '{} {cmd} {}'",
            bin(),
            s(&ds)
        );
        let o = Command::new("sh").args(["-c", &line]).output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {stderr}");
        assert!(stderr.contains(s(&shard)) && stderr.contains("ermission denied"), "{cmd}: {stderr}");
    }
}

/// The CPUs this process may run on, from /proc/self/status.
fn allowed_cpus() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim();
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.parse().unwrap()..=b.parse().unwrap()).collect::<Vec<usize>>(),
            None => vec![part.parse().unwrap()],
        })
        .collect()
}

fn worker_cpus(j: &serde_json::Value) -> Vec<Vec<usize>> {
    serde_json::from_value(j["worker_cpus"].clone()).unwrap()
}

/// Workers are pinned inside the process's affinity mask, not to CPUs
/// 0..n of the machine: under `taskset -c C` a 1-core loader runs on C.
#[test]
fn workers_run_inside_the_affinity_mask() {
    let allowed = allowed_cpus();
    if allowed.len() < 2 || Command::new("taskset").arg("-V").output().is_err() {
        eprintln!("skipped: needs 2 CPUs and taskset (have {allowed:?})");
        return;
    }
    let dir = scratch();
    let ds = dataset(dir.path());
    let last = *allowed.last().unwrap();
    let o = Command::new("taskset")
        .args(["-c", &last.to_string(), bin(), "bench", s(&ds), "--json", "--no-digest"])
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .output()
        .unwrap();
    let j = json(&o);
    assert_eq!(j["cores"], 1, "one CPU in the mask: one core by default");
    assert_eq!(worker_cpus(&j), vec![vec![last]]);
    // Two workers under a one-CPU mask are fenced to it, not pinned outside.
    let o = Command::new("taskset")
        .args(["-c", &last.to_string(), bin(), "bench", s(&ds), "--json", "--no-digest", "--cores", "2"])
        .env_remove("LOCAL_RANK")
        .env_remove("LOCAL_WORLD_SIZE")
        .output()
        .unwrap();
    assert_eq!(worker_cpus(&json(&o)), vec![vec![last], vec![last]]);
}

/// Under torchrun, the processes of a node split the mask between them
/// (`LOCAL_RANK` of `LOCAL_WORLD_SIZE`): two processes at once get
/// disjoint CPUs.
#[test]
fn local_ranks_get_disjoint_cpus() {
    let allowed = allowed_cpus();
    if allowed.len() < 2 {
        eprintln!("skipped: needs 2 CPUs (have {allowed:?})");
        return;
    }
    let dir = scratch();
    let ds = dataset(dir.path());
    let children: Vec<_> = (0..2)
        .map(|rank| {
            Command::new(bin())
                .args(["bench", s(&ds), "--json", "--no-digest", "--epochs", "3"])
                .env("LOCAL_RANK", rank.to_string())
                .env("LOCAL_WORLD_SIZE", "2")
                .env_remove("RANK")
                .env_remove("WORLD_SIZE")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let shares: Vec<Vec<usize>> =
        children.into_iter().map(|c| worker_cpus(&json(&c.wait_with_output().unwrap())).concat()).collect();
    let half = allowed.len() / 2;
    assert_eq!(shares[0], allowed[..half], "LOCAL_RANK 0");
    assert_eq!(shares[1], allowed[half..], "LOCAL_RANK 1");
    let o = Command::new(bin())
        .args(["bench", s(&ds)])
        .env("LOCAL_RANK", "2")
        .env("LOCAL_WORLD_SIZE", "2")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("LOCAL_RANK"));
}
