//! A native Rust training loop: a small ResNet-style CNN trained with tch on
//! a packed image dataset, fed by ringfeed's loader (train pipeline,
//! normalized f32 `[B, 3, H, W]` tensors, no copies on the way). Prints the
//! loss, images/s and the share of step time spent waiting for data; saves
//! checkpoints (model + optimizer momentum + loader state, one safetensors
//! file per save, written in the background by `ringfeed-ckpt`'s
//! `AsyncSaver`, the last two kept) and resumes from the newest complete
//! one with exactly the batches the stopped run would have seen next.
//!
//! ```sh
//! scripts/install-libtorch.sh
//! cargo run --release -p ringfeed-examples --features tch --example train_resnet -- \
//!     --data target/bench/images.rf --steps 300 --checkpoint target/ckpt
//! # later, continue to step 600 from the checkpoint:
//! cargo run --release -p ringfeed-examples --features tch --example train_resnet -- \
//!     --data target/bench/images.rf --steps 600 --checkpoint target/ckpt --resume
//! ```
//!
//! Each step prints one JSON line (`step`, `loss`, `batch` = a digest of
//! the batch's record indices, `wait_ms`, `step_ms`); the run ends with a
//! summary line. The model runs on CUDA when libtorch has it.
//!
//! # As one rank of N
//!
//! Started by a launcher that sets torchrun's environment (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`), such as
//! `scripts/launch-ranks.sh` or torchrun itself, each process is one
//! data-parallel rank: its loader reads the rank's share of every epoch
//! (the same split as PyTorch's `DistributedSampler` with `drop_last`, all
//! ranks with the same number of batches) on its share of the CPUs, and,
//! with `WORLD_SIZE` > 1, it checkpoints to and resumes from
//! `<checkpoint>/rank-<RANK>`. Nothing rank-specific is passed:
//!
//! ```sh
//! cargo build --release -p ringfeed-examples --features tch --example train_resnet
//! scripts/launch-ranks.sh 2 -- target/release/examples/train_resnet --data DS.rf \
//!     --steps 300 --checkpoint target/ckpt --checkpoint-every 50 --index-log target/steps.jsonl
//! ```
//!
//! tch has no collective operations (no all-reduce), so each rank trains a
//! replica of its own from the same initialization and the replicas drift
//! apart: the example demonstrates the data side of data parallelism
//! (disjoint shards, equal step counts, exact per-rank resume).
//! Averaging gradients would need NCCL or gloo bindings.
//!
//! `--index-log FILE` appends one JSON line per step (`rank`, `world`,
//! `epoch`, `batch` = the batch's index in the epoch for this rank, `step`,
//! `indices` = the batch's record indices, `loss`), written with one
//! `write` on a file opened for appending, so the ranks may share a file.
//! `--crash-after N` ends the process abruptly (status 17: no final
//! checkpoint, no summary) after step N and after that step's checkpoint,
//! if one was due, is complete, as a job killed there would
//! (`examples/tests/train_resnet_ranks.rs` checks the ranks and the resume).
//!
//! # Resuming with another number of ranks
//!
//! `--resume` first reads rank 0's newest checkpoint (`<checkpoint>/rank-0`,
//! or `<checkpoint>` itself as a job of one rank wrote it, whichever holds
//! the newer step) and the world size its loader state records. The same
//! world size: every rank resumes exactly from its own directory. Another
//! one: an epoch's order depends only on the seed and the epoch, the world
//! size only splits it, so a checkpoint at an epoch boundary (the loader's
//! next batch is batch 0 of epoch E) lets any number of ranks take over.
//! Every rank loads rank 0's model and momentum and step count and plans
//! its share of epochs E, E+1, ... afresh with the new rank and world size.
//! A checkpoint from the middle of an epoch is refused then (the other
//! world's split of that epoch cannot be continued): resume it with the
//! world size that wrote it. `--checkpoint-at-epoch-end` saves after the
//! last batch of every epoch, giving such checkpoints whatever the step
//! counts.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ringfeed::tch::nn::{self, ModuleT};
use ringfeed::tch::{self, Device, Tensor};
use ringfeed::{BatchMemory, DdpConfig, ImagePipeline, Loader};

// Relative to this file's directory, also when a test includes this file.
#[path = "train_common/ckpt.rs"]
mod ckpt;
#[path = "train_common/steps.rs"]
mod steps;

pub(crate) use steps::StepLog;
use steps::batch_digest;

/// Command-line options.
#[derive(Parser, Debug)]
pub(crate) struct Args {
    /// Packed image dataset (`ringfeed pack`), labels = classes.
    #[arg(long, default_value = "target/bench/images.rf")]
    data: PathBuf,
    /// Train until this many steps have run in total (counting the steps
    /// before a resumed checkpoint).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Images per batch.
    #[arg(long, default_value_t = 64)]
    batch: u64,
    /// Crop side of RandomResizedCrop.
    #[arg(long, default_value_t = 128)]
    size: u32,
    /// Loader cores (0 = all).
    #[arg(long, default_value_t = 0)]
    cores: usize,
    /// Threads libtorch may use for the model (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// Learning rate (SGD with momentum 0.9, weight decay 5e-4).
    #[arg(long, default_value_t = 0.05)]
    lr: f64,
    /// Seed of the loader (order and augmentations) and of the model init.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// What to learn: the dataset's `classes`, or `rotation`, a
    /// self-supervised task that needs no labels (each image is turned by
    /// 0/90/180/270 degrees, chosen by its position in the batch, and the
    /// model names the turn). The shared benchmark photos' class labels are
    /// random assignments of 80 source photos, so on that set only
    /// `rotation` shows learning within minutes.
    #[arg(long, default_value = "classes")]
    task: Task,
    /// Number of classes (default: the dataset's class names, else the
    /// largest label + 1 must be given here).
    #[arg(long)]
    classes: Option<i64>,
    /// Checkpoint directory; written at the end of the run and every
    /// `--checkpoint-every` steps. With `WORLD_SIZE` > 1, each rank uses
    /// its subdirectory `rank-<RANK>`.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0 = only at the end).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Also checkpoint after the last batch of every epoch (a checkpoint
    /// another number of ranks can resume from).
    #[arg(long)]
    checkpoint_at_epoch_end: bool,
    /// Continue from the checkpoint in `--checkpoint` (with another
    /// `WORLD_SIZE` than the one that wrote it: only from an epoch
    /// boundary).
    #[arg(long)]
    resume: bool,
    /// Append one JSON line per step to this file: `rank`, `world`,
    /// `epoch`, `batch` (index in the epoch), `step`, `indices` (the
    /// batch's record indices), `loss`.
    #[arg(long)]
    index_log: Option<PathBuf>,
    /// Exit at once with status 17 after this step (and its checkpoint, if
    /// one is due): no final checkpoint, no summary, as a killed job.
    #[arg(long)]
    crash_after: Option<u64>,
}

/// The status `--crash-after` exits with.
const CRASH_STATUS: i32 = 17;

/// The training target.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Task {
    /// The dataset's labels.
    Classes,
    /// Which of four quarter turns was applied.
    Rotation,
}

/// Turns image `i` of the batch by `i % 4` quarter turns; the turns are the
/// labels.
fn rotated(x: &Tensor) -> (Tensor, Tensor) {
    let n = x.size()[0];
    let (mut parts, mut labels) = (Vec::new(), Vec::new());
    for k in 0..4i64.min(n) {
        let idx = Tensor::arange_start_step(k, n, 4, (tch::Kind::Int64, x.device()));
        let part = x.index_select(0, &idx).rot90(k, [2, 3]);
        labels.push(Tensor::full([part.size()[0]], k, (tch::Kind::Int64, x.device())));
        parts.push(part);
    }
    (Tensor::cat(&parts, 0), Tensor::cat(&labels, 0))
}

/// A small ResNet: 3×3 stem, three stages of one basic block each
/// (16/32/64 channels, stride 2 after the first), global average pool.
fn model(p: &nn::Path, classes: i64) -> nn::FuncT<'static> {
    fn conv(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64) -> nn::Conv2D {
        let cfg = nn::ConvConfig { stride, padding: k / 2, bias: false, ..Default::default() };
        nn::conv2d(p, c_in, c_out, k, cfg)
    }
    fn block(p: nn::Path, c_in: i64, c_out: i64, stride: i64) -> nn::FuncT<'static> {
        let (c1, b1) = (
            conv(&p / "conv1", c_in, c_out, 3, stride),
            nn::batch_norm2d(&p / "bn1", c_out, Default::default()),
        );
        let (c2, b2) =
            (conv(&p / "conv2", c_out, c_out, 3, 1), nn::batch_norm2d(&p / "bn2", c_out, Default::default()));
        let skip = (stride != 1 || c_in != c_out).then(|| {
            (
                conv(&p / "skip", c_in, c_out, 1, stride),
                nn::batch_norm2d(&p / "skip_bn", c_out, Default::default()),
            )
        });
        nn::func_t(move |xs, train| {
            let ys = xs.apply(&c1).apply_t(&b1, train).relu().apply(&c2).apply_t(&b2, train);
            let shortcut = match &skip {
                Some((c, b)) => xs.apply(c).apply_t(b, train),
                None => xs.shallow_clone(),
            };
            (ys + shortcut).relu()
        })
    }
    let stem = conv(p / "stem", 3, 16, 3, 2);
    let stem_bn = nn::batch_norm2d(p / "stem_bn", 16, Default::default());
    let stages = nn::seq_t()
        .add(block(p / "stage1", 16, 16, 1))
        .add(block(p / "stage2", 16, 32, 2))
        .add(block(p / "stage3", 32, 64, 2));
    let fc = nn::linear(p / "fc", 64, classes, Default::default());
    nn::func_t(move |xs, train| {
        xs.apply(&stem)
            .apply_t(&stem_bn, train)
            .relu()
            .max_pool2d([3, 3], [2, 2], [1, 1], [1, 1], false)
            .apply_t(&stages, train)
            .adaptive_avg_pool2d([1, 1])
            .flat_view()
            .apply(&fc)
    })
}

/// SGD with momentum and weight decay, written out so that its state (one
/// momentum buffer per parameter, by name) can be checkpointed.
struct Sgd {
    lr: f64,
    momentum: f64,
    weight_decay: f64,
    buffers: Vec<(String, Tensor, Tensor)>,
}

impl Sgd {
    fn new(vs: &nn::VarStore, lr: f64) -> Self {
        let mut params: Vec<(String, Tensor)> =
            vs.variables().into_iter().filter(|(_, t)| t.requires_grad()).collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let buffers = params.into_iter().map(|(n, p)| (n, p.zeros_like(), p)).collect();
        Sgd { lr, momentum: 0.9, weight_decay: 5e-4, buffers }
    }

    fn step(&mut self) {
        tch::no_grad(|| {
            for (_, buf, p) in &mut self.buffers {
                let g = p.grad() + &*p * self.weight_decay;
                let _ = buf.g_mul_scalar_(self.momentum).g_add_(&g);
                let _ = p.g_sub_(&(&*buf * self.lr));
            }
        });
    }

    fn zero_grad(&mut self) {
        for (_, _, p) in &mut self.buffers {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The momentum buffers by parameter name (tensors sharing storage).
    fn momentum(&self) -> Vec<(String, Tensor)> {
        self.buffers.iter().map(|(n, b, _)| (n.clone(), b.shallow_clone())).collect()
    }

    /// Copies saved momentum (`optim.momentum.NAME`) into the buffers.
    fn restore(&mut self, saved: &std::collections::BTreeMap<String, Tensor>) -> Result<()> {
        for (name, buf, _) in &mut self.buffers {
            let t = saved
                .get(&format!("optim.momentum.{name}"))
                .with_context(|| format!("momentum of {name} missing"))?;
            tch::no_grad(|| buf.copy_(t));
        }
        Ok(())
    }
}

/// The newest checkpoint of rank 0: `root/rank-0` (a job of several
/// ranks) or `root` (a job of one), whichever holds the newer step.
fn rank0_checkpoint(root: &std::path::Path) -> Result<PathBuf> {
    let newest = |dir: &std::path::Path| -> Result<Option<u64>> {
        if !dir.is_dir() {
            return Ok(None);
        }
        Ok(ringfeed_ckpt::CheckpointDir::new(dir, 2)?.steps()?.last().copied())
    };
    let ranks = root.join("rank-0");
    match (newest(root)?, newest(&ranks)?) {
        (Some(one), Some(several)) if one > several => Ok(root.to_path_buf()),
        (_, Some(_)) => Ok(ranks),
        (Some(_), None) => Ok(root.to_path_buf()),
        (None, None) => bail!("no checkpoint in {} or {}", root.display(), ranks.display()),
    }
}

/// The epoch a job of `world` ranks starts from when it takes over the
/// checkpoint `saved` of another world size: the saved loader must be at
/// an epoch boundary (next batch 0 of an epoch).
fn takeover_epoch(saved: &ringfeed::LoaderState, world: u64, dir: &std::path::Path) -> Result<u64> {
    if saved.next_batch != 0 {
        bail!(
            "the checkpoint in {} was taken by {} ranks in the middle of epoch {} (next batch {}), and this \
             job has {} ranks: only checkpoints at an epoch boundary can change the world size; resume with \
             {} ranks, or from a checkpoint at an epoch boundary (--checkpoint-at-epoch-end)",
            dir.display(),
            saved.world_size,
            saved.epoch,
            saved.next_batch,
            world,
            saved.world_size
        );
    }
    Ok(saved.epoch)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let summary = train(&args, StepLog::print)?;
    println!("{}", serde_json::json!({ "summary": summary }));
    Ok(())
}

/// Trains as `args` say, calling `on_step` after every step; returns the
/// run's summary.
pub(crate) fn train(args: &Args, mut on_step: impl FnMut(&StepLog)) -> Result<serde_json::Value> {
    if args.threads > 0 {
        tch::set_num_threads(args.threads);
    }
    let device = Device::cuda_if_available();
    tch::manual_seed(args.seed as i64);
    let names = ringfeed::Dataset::open(&args.data)
        .with_context(|| format!("opening {}", args.data.display()))?
        .manifest()
        .classes
        .len() as i64;
    let classes = match (args.task, args.classes) {
        (Task::Rotation, _) => 4,
        (Task::Classes, Some(n)) if n >= 2 => n,
        (Task::Classes, None) if names >= 2 => names,
        _ => bail!("the dataset names no classes: pass --classes N (at least 2)"),
    };
    let vs = nn::VarStore::new(device);
    let net = model(&vs.root(), classes);
    let mut opt = Sgd::new(&vs, args.lr);

    // Rank and world size as the loader takes them (torchrun's variables;
    // rank 0 of 1 when unset): one checkpoint directory per rank.
    let ddp = DdpConfig::from_env()?;
    let checkpoint = args.checkpoint.as_ref().map(|dir| match ddp.world_size {
        1 => dir.clone(),
        _ => dir.join(format!("rank-{}", ddp.rank)),
    });
    let (mut step, state, start_epoch) = match (&args.checkpoint, &checkpoint, args.resume) {
        (Some(root), Some(own), true) => {
            // Rank 0's checkpoint says which world wrote the job's last
            // checkpoints.
            let leader = rank0_checkpoint(root)?;
            let first = ckpt::restore(&leader)?;
            let saved = ringfeed::LoaderState::from_json(&first.loader)?;
            let (restored, state, start_epoch) = if saved.world_size == ddp.world_size {
                // The same world: each rank continues exactly from its own.
                let restored = if *own == leader { first } else { ckpt::restore(own)? };
                let state = ringfeed::LoaderState::from_json(&restored.loader)?;
                (restored, Some(state), 0)
            } else {
                let epoch = takeover_epoch(&saved, ddp.world_size, &leader)?;
                if (saved.seed, saved.batch_size) != (args.seed, args.batch) {
                    bail!(
                        "the checkpoint in {} was taken with seed {} and batches of {}, this run has seed {} \
                         and batches of {}: resuming with another world size needs the same epoch orders",
                        leader.display(),
                        saved.seed,
                        saved.batch_size,
                        args.seed,
                        args.batch
                    );
                }
                eprintln!(
                    "rank {}: resuming {} ranks' checkpoint (step {}) with {} ranks at the start of epoch {epoch}",
                    ddp.rank, saved.world_size, first.step, ddp.world_size
                );
                (first, None, epoch)
            };
            for (name, mut var) in vs.variables() {
                let t = restored
                    .tensors
                    .get(&format!("model.{name}"))
                    .with_context(|| format!("parameter {name} missing"))?;
                tch::no_grad(|| var.copy_(t));
            }
            opt.restore(&restored.tensors)?;
            (restored.step, state, start_epoch)
        }
        (_, _, true) => bail!("--resume needs --checkpoint"),
        _ => (0, None, 0),
    };
    let mut builder = Loader::builder(&args.data)
        .batch_size(args.batch)
        .seed(args.seed)
        .drop_last(true)
        .start_epoch(start_epoch)
        .epochs(u64::MAX - start_epoch)
        .images(ImagePipeline::train(args.size)) // normalized f32, torchvision's recipe
        // Decode straight into the tensors the training step takes.
        .batch_memory(BatchMemory::Tensor);
    if args.cores > 0 {
        builder = builder.cores(args.cores);
    }
    if let Some(state) = state {
        builder = builder.resume(state);
    }
    let mut loader = builder.build()?;

    let mut index_log = match &args.index_log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening {}", path.display()))?,
        ),
        None => None,
    };
    let mut saver = checkpoint.as_deref().map(ckpt::Saver::new).transpose()?;
    let save = |saver: &mut Option<ckpt::Saver>, loader: &Loader, opt: &Sgd, step: u64| -> Result<()> {
        let Some(saver) = saver.as_mut() else { return Ok(()) };
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        saver.save(
            &[("model.", &params), ("optim.momentum.", &opt.momentum())],
            &loader.state().to_json(),
            step,
        )
    };

    let first_step = step;
    let started = Instant::now();
    let (mut waited, mut images, mut first_losses, mut last_losses) = (0f64, 0u64, Vec::new(), Vec::new());
    while step < args.steps {
        let t0 = Instant::now();
        let batch = loader.next().context("the loader ended early")??;
        let wait = t0.elapsed().as_secs_f64();
        let digest = batch_digest(&batch.indices);
        let (epoch, index) = (batch.epoch, batch.index);
        let indices = index_log.is_some().then(|| batch.indices.clone());
        let (x, y) = batch.into_tensors()?;
        let (x, y) = (x.to_device(device), y.to_device(device));
        let (x, y) = if args.task == Task::Rotation { rotated(&x) } else { (x, y) };
        let loss = net.forward_t(&x, true).cross_entropy_for_logits(&y);
        opt.zero_grad();
        loss.backward();
        opt.step();
        let loss = loss.double_value(&[]);
        if !loss.is_finite() {
            bail!("loss became {loss} at step {step}");
        }
        step += 1;
        let step_s = t0.elapsed().as_secs_f64();
        waited += wait;
        images += y.size()[0] as u64;
        if first_losses.len() < 20 {
            first_losses.push(loss);
        }
        last_losses.push(loss);
        if last_losses.len() > 20 {
            last_losses.remove(0);
        }
        on_step(&StepLog { step, loss, batch: digest, wait_s: wait, step_s });
        if let (Some(file), Some(indices)) = (index_log.as_mut(), indices) {
            let line = serde_json::json!({
                "rank": ddp.rank, "world": ddp.world_size, "epoch": epoch, "batch": index,
                "step": step, "indices": indices, "loss": loss,
            });
            // One write per line: ranks appending to one file do not mix.
            file.write_all(format!("{line}\n").as_bytes()).context("writing the index log")?;
        }
        let epoch_end = args.checkpoint_at_epoch_end && loader.state().next_batch == 0;
        if epoch_end || (args.checkpoint_every > 0 && step % args.checkpoint_every == 0) {
            save(&mut saver, &loader, &opt, step)?;
        }
        if args.crash_after == Some(step) {
            if let Some(saver) = saver.as_mut() {
                saver.wait()?; // this step's checkpoint, if any, is complete
            }
            eprintln!("crashing after step {step} (--crash-after)");
            std::process::exit(CRASH_STATUS);
        }
    }
    save(&mut saver, &loader, &opt, step)?;
    if let Some(saver) = saver.as_mut() {
        saver.wait()?; // the last checkpoint is durable before the summary
    }
    let wall = started.elapsed().as_secs_f64();
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    Ok(serde_json::json!({
                "steps": step - first_step,
                "first_step": first_step,
                "images_per_s": images as f64 / wall,
                "data_wait_share": waited / wall,
                "loss_first20": mean(&first_losses),
                "loss_last20": mean(&last_losses),
                "device": format!("{device:?}"),
                "rank": ddp.rank,
                "world": ddp.world_size,
                "loader_cores": loader.cores(),
                "time_to_first_batch_ms": loader.time_to_first_batch().map(|d| d.as_secs_f64() * 1e3),
    }))
}
