//! The training example as 2 and 3 ranks of one job, started by
//! `scripts/launch-ranks.sh` (torchrun's environment): every record once
//! per epoch across the ranks (less the `drop_last` remainder), the same
//! number of batches on every rank, each rank's batches exactly the global
//! order's (`EpochPlan`, what `ringfeed order --rank R --world N
//! --drop-last` prints), and a job whose ranks were all killed mid-epoch,
//! restarted from their per-rank checkpoints, continues step for step,
//! batch for batch and (one thread each) loss for loss. A job of 3 ranks
//! takes over a 2-rank job's checkpoint at an epoch boundary (and refuses
//! one from the middle of an epoch).
//!
//! Runs the example's binary, which `cargo test --all-targets` builds (or
//! `cargo build -p ringfeed-examples --features tch --example
//! train_resnet`).
#![cfg(feature = "tch")]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ringfeed::{DdpConfig, EpochPlan, PackWriter, Payload, Permutation, Schema, Shuffle};

/// Records in the dataset: with batches of 4, 2 ranks read 32 of each
/// epoch's 38 (4 batches each) and 3 ranks 36 (3 batches each).
const RECORDS: u64 = 38;
const BATCH: u64 = 4;
const SEED: u64 = 5;
/// `--crash-after`'s exit status.
const CRASHED: i32 = 17;

/// `RECORDS` images of the decode crate's fixtures, labels `i % 3`.
fn dataset(dir: &Path) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../decode/tests/fixtures");
    let names = ["rgb.jpg", "progressive.jpg", "gray.jpg", "rgb.png", "palette.png", "big.jpg"];
    let schema = Schema { payload: Payload::Image, labels: true, keys: false };
    let mut w = PackWriter::builder(dir).schema(schema).build().unwrap();
    for i in 0..RECORDS as usize {
        let bytes = std::fs::read(fixtures.join(names[i % names.len()])).unwrap();
        w.push(&bytes, (i % 3) as i64, None).unwrap();
    }
    w.finish().unwrap();
}

/// The example's binary, built now with this test's features by the cargo
/// running the test (`cargo test --all-targets` builds examples as test
/// harnesses, not as the programs themselves), once per test process:
/// `target/<profile>/deps/<test>` → `target/<profile>/examples/train_resnet`.
fn example_binary() -> PathBuf {
    static BUILT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            let status = Command::new(env!("CARGO"))
                .args(["build", "-q", "--locked", "-p", "ringfeed-examples", "--features", "tch"])
                .args(["--example", "train_resnet"])
                .current_dir(&root)
                .status()
                .expect("cargo runs");
            assert!(status.success(), "building the train_resnet example failed");
            let exe = std::env::current_exe().unwrap();
            let profile =
                exe.parent().and_then(Path::parent).expect("the test runs from target/<profile>/deps");
            let bin = profile.join("examples").join(format!("train_resnet{}", std::env::consts::EXE_SUFFIX));
            assert!(bin.is_file(), "{} is missing after the build", bin.display());
            bin
        })
        .clone()
}

/// One step of one rank, from `--index-log`.
#[derive(Debug, Clone, PartialEq)]
struct Step {
    rank: u64,
    world: u64,
    epoch: u64,
    batch: u64,
    step: u64,
    indices: Vec<u64>,
    loss: f64,
}

/// A job of `world` ranks of the example (1 loader core, 1 libtorch thread
/// and 32-pixel crops each) with `args`, appending to `log`.
struct Job<'a> {
    data: &'a Path,
    world: u64,
}

impl Job<'_> {
    fn run(&self, log: &Path, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/launch-ranks.sh");
        let mut cmd = Command::new("bash");
        // A rank that crashes on purpose does so after the same step as the
        // others, but they run independently (tch has no collectives): the
        // others may finish on their own before the launcher stops them.
        cmd.arg(script).args(["--grace", "300", &self.world.to_string(), "--"]).arg(example_binary());
        cmd.arg("--data").arg(self.data).arg("--index-log").arg(log);
        cmd.args(["--batch", &BATCH.to_string(), "--seed", &SEED.to_string(), "--size", "32"]);
        cmd.args(["--classes", "3", "--cores", "1", "--threads", "1"]).args(args);
        for var in ["RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"] {
            cmd.env_remove(var);
        }
        cmd.output().unwrap()
    }

    /// Runs the job, which must succeed.
    fn ok(&self, log: &Path, args: &[&str]) {
        let out = self.run(log, args);
        assert!(out.status.success(), "{} ranks, {args:?}: {}", self.world, show(&out));
    }

    /// Batches each rank reads per epoch.
    fn batches_per_epoch(&self) -> u64 {
        DdpConfig::new(0, self.world, true).unwrap().batches_per_rank(RECORDS, BATCH)
    }
}

fn show(out: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Each rank's steps from the shared index log, in the order written.
fn steps(log: &Path, world: u64) -> Vec<Vec<Step>> {
    let text = std::fs::read_to_string(log).unwrap();
    let mut ranks = vec![Vec::new(); world as usize];
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        let int = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("no {k} in {line}"));
        let step = Step {
            rank: int("rank"),
            world: int("world"),
            epoch: int("epoch"),
            batch: int("batch"),
            step: int("step"),
            indices: v["indices"].as_array().unwrap().iter().map(|i| i.as_u64().unwrap()).collect(),
            loss: v["loss"].as_f64().unwrap(),
        };
        assert_eq!(step.world, world, "{line}");
        ranks[step.rank as usize].push(step);
    }
    ranks
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

/// Two whole epochs and one batch of a third, checked against the global
/// order; then the same run killed mid-epoch and resumed.
fn ranks(world: u64) {
    let dir = scratch();
    let data = dir.path().join("data");
    dataset(&data);
    let job = Job { data: &data, world };
    let per_epoch = job.batches_per_epoch();
    let total = 2 * per_epoch + 2;

    let straight_log = dir.path().join("straight.jsonl");
    job.ok(&straight_log, &["--steps", &total.to_string()]);
    let straight = steps(&straight_log, world);
    for (r, s) in straight.iter().enumerate() {
        // Equal batch counts: every rank ran every step, in order.
        assert_eq!(s.iter().map(|s| s.step).collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>(), "rank {r}");
    }
    for epoch in 0..3 {
        let mut seen = Vec::new();
        for (r, s) in straight.iter().enumerate() {
            let ddp = DdpConfig::new(r as u64, world, true).unwrap();
            let plan = EpochPlan::new(RECORDS, Shuffle::Global, SEED, epoch, ddp, BATCH).unwrap();
            assert_eq!(plan.batches(), per_epoch);
            let got: Vec<(u64, Vec<u64>)> =
                s.iter().filter(|s| s.epoch == epoch).map(|s| (s.batch, s.indices.clone())).collect();
            // The last epoch is cut short by --steps.
            let want: Vec<(u64, Vec<u64>)> =
                (0..plan.batches()).map(|b| (b, plan.batch_indices(b))).take(got.len()).collect();
            assert_eq!(got.len() as u64, if epoch < 2 { per_epoch } else { 2 }, "rank {r}, epoch {epoch}");
            assert_eq!(
                got, want,
                "rank {r}, epoch {epoch}: not `ringfeed order --rank {r} --world {world}`'s"
            );
            seen.extend(got.into_iter().flat_map(|(_, i)| i));
        }
        if epoch < 2 {
            // Every record once, less the remainder drop_last leaves out:
            // the epoch order's positions past the last whole batch of
            // every rank.
            let read = per_epoch * BATCH * world;
            let unique: BTreeSet<u64> = seen.iter().copied().collect();
            assert_eq!(unique.len(), seen.len(), "epoch {epoch}: a record twice");
            let order = Permutation::new(RECORDS, SEED, epoch);
            let want: BTreeSet<u64> = (0..read).map(|p| order.get(p)).collect();
            assert_eq!(unique, want, "epoch {epoch}: not the first {read} of the epoch's order");
            assert!(read < RECORDS, "the dataset leaves a remainder to drop");
        }
    }

    // Killed mid-epoch 1 right after a checkpoint (every 2 steps), every
    // rank, then restarted: the two logs together are the straight run's.
    let crash = 2 * ((per_epoch + 2) / 2);
    assert!(crash > per_epoch && !crash.is_multiple_of(per_epoch) && crash < total, "mid-epoch 1");
    let ckpt = dir.path().join("ckpt");
    let ckpt_arg = ckpt.to_str().unwrap();
    let log = dir.path().join("crashed.jsonl");
    let common = ["--steps", &total.to_string(), "--checkpoint", ckpt_arg, "--checkpoint-every", "2"];
    let crash_arg = crash.to_string();
    let out = job.run(&log, &[&common[..], &["--crash-after", &crash_arg]].concat());
    assert_eq!(out.status.code(), Some(CRASHED), "the crash run: {}", show(&out));
    let crashed = steps(&log, world);
    for (r, s) in crashed.iter().enumerate() {
        assert_eq!(s.len() as u64, crash, "rank {r} stopped after step {crash}");
    }
    // One checkpoint directory per rank, each with its own newest step.
    let dirs: BTreeSet<String> =
        std::fs::read_dir(&ckpt).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(dirs, (0..world).map(|r| format!("rank-{r}")).collect(), "{}", ckpt.display());
    for r in 0..world {
        let newest = ckpt.join(format!("rank-{r}/step-{crash:012}.safetensors"));
        assert!(newest.is_file(), "{} missing", newest.display());
    }
    job.ok(&log, &[&common[..], &["--resume"]].concat());
    let resumed = steps(&log, world);
    for r in 0..world as usize {
        let (a, b) = (&straight[r], &resumed[r]);
        assert_eq!(a.len(), b.len(), "rank {r}: {} steps straight, {} crashed + resumed", a.len(), b.len());
        for (a, b) in a.iter().zip(b) {
            let key = |s: &Step| (s.step, s.epoch, s.batch, s.indices.clone());
            assert_eq!(key(a), key(b), "rank {r}: another batch after the restart");
            // Model, momentum and data restored exactly; one thread keeps
            // libtorch's arithmetic in the same order.
            assert!(
                (a.loss - b.loss).abs() <= 1e-4 * a.loss.abs(),
                "rank {r}, step {}: loss {} vs {}",
                a.step,
                a.loss,
                b.loss
            );
        }
    }
}

#[test]
fn two_ranks() {
    ranks(2);
}

#[test]
fn three_ranks() {
    ranks(3);
}

/// The steps saved in a checkpoint directory, oldest first (by file name).
fn checkpoint_steps(dir: &Path) -> Vec<u64> {
    let mut steps: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
        })
        .collect();
    steps.sort_unstable();
    steps
}

/// 2 ranks train epoch 0, checkpoint at its end and are killed 2 steps
/// into epoch 1; 3 ranks take over from the epoch boundary and train
/// epoch 1 as 3 ranks split it: every record of the epoch's order once,
/// equal batch counts, each rank's batches `ringfeed order --rank R
/// --world 3`'s. A 2-rank checkpoint from the middle of an epoch is
/// refused to 3 ranks.
#[test]
fn another_world_size_takes_over_at_an_epoch_boundary() {
    let dir = scratch();
    let data = dir.path().join("data");
    dataset(&data);
    let (two, three) = (Job { data: &data, world: 2 }, Job { data: &data, world: 3 });
    let (per2, per3) = (two.batches_per_epoch(), three.batches_per_epoch());
    assert_ne!(per2, per3, "the worlds split an epoch differently");
    let ckpt = dir.path().join("ckpt");
    let ckpt_arg = ckpt.to_str().unwrap();

    let log2 = dir.path().join("two.jsonl");
    let (total2, crash) = ((2 * per2).to_string(), (per2 + 2).to_string());
    let out = two.run(
        &log2,
        &["--steps", &total2, "--checkpoint", ckpt_arg, "--checkpoint-at-epoch-end", "--crash-after", &crash],
    );
    assert_eq!(out.status.code(), Some(CRASHED), "the 2-rank run: {}", show(&out));
    for (r, s) in steps(&log2, 2).iter().enumerate() {
        assert_eq!(s.len() as u64, per2 + 2, "rank {r}");
        // Only the epoch's end was saved: the newest checkpoint is there.
        assert_eq!(checkpoint_steps(&ckpt.join(format!("rank-{r}"))), vec![per2], "rank {r}");
    }

    let log3 = dir.path().join("three.jsonl");
    let total3 = (per2 + per3).to_string();
    three.ok(&log3, &["--steps", &total3, "--checkpoint", ckpt_arg, "--checkpoint-at-epoch-end", "--resume"]);
    let mut seen = Vec::new();
    for (r, s) in steps(&log3, 3).iter().enumerate() {
        // Equal batch counts, numbered on from the 2 ranks' steps.
        assert_eq!(
            s.iter().map(|s| s.step).collect::<Vec<_>>(),
            (per2 + 1..=per2 + per3).collect::<Vec<_>>(),
            "rank {r}"
        );
        let ddp = DdpConfig::new(r as u64, 3, true).unwrap();
        let plan = EpochPlan::new(RECORDS, Shuffle::Global, SEED, 1, ddp, BATCH).unwrap();
        assert_eq!(plan.batches(), per3);
        let got: Vec<(u64, u64, Vec<u64>)> =
            s.iter().map(|s| (s.epoch, s.batch, s.indices.clone())).collect();
        let want: Vec<(u64, u64, Vec<u64>)> = (0..per3).map(|b| (1, b, plan.batch_indices(b))).collect();
        assert_eq!(got, want, "rank {r}: not `ringfeed order --epoch 1 --rank {r} --world 3`'s");
        seen.extend(got.into_iter().flat_map(|(_, _, i)| i));
        // The 3 ranks checkpoint at the end of epoch 1 in their own
        // directories.
        assert!(checkpoint_steps(&ckpt.join(format!("rank-{r}"))).contains(&(per2 + per3)), "rank {r}");
    }
    let read = per3 * BATCH * 3;
    let unique: BTreeSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "epoch 1: a record twice");
    let order = Permutation::new(RECORDS, SEED, 1);
    assert_eq!(
        unique,
        (0..read).map(|p| order.get(p)).collect(),
        "epoch 1: not the first {read} of its order"
    );

    // Mid-epoch 0 (the end-of-run checkpoint after 2 of 4 batches).
    let mid = dir.path().join("mid");
    let mid_arg = mid.to_str().unwrap();
    let log = dir.path().join("mid2.jsonl");
    two.ok(&log, &["--steps", "2", "--checkpoint", mid_arg]);
    let out =
        three.run(&dir.path().join("mid3.jsonl"), &["--steps", "5", "--checkpoint", mid_arg, "--resume"]);
    assert!(!out.status.success(), "3 ranks resumed a mid-epoch 2-rank checkpoint: {}", show(&out));
    let text = show(&out);
    for want in [
        "taken by 2 ranks in the middle of epoch 0",
        "this job has 3 ranks",
        "only checkpoints at an epoch boundary can change the world size",
    ] {
        assert!(text.contains(want), "no `{want}` in {text}");
    }
}
