//! A small GPT (nanoGPT's architecture: token and position embeddings,
//! pre-norm transformer blocks with causal self-attention and a GELU MLP,
//! the output head tied to the token embedding) trained with tch on token
//! windows from ringfeed's [`TokenLoader`]: exact epochs, every window
//! once, globally shuffled. Prints the loss, tokens/s and the share of step
//! time spent waiting for data; checkpoints model, AdamW state and the
//! loader's state (`ringfeed-ckpt`, in the background) and resumes exactly.
//!
//! ```sh
//! scripts/install-libtorch.sh
//! ringfeed tokenize ~/.cache/ringfeed-bench/text target/tokens     # GPT-2 ids of the shared text set
//! cargo run --release -p ringfeed-examples --features tch --example train_gpt -- \
//!     --data target/tokens --steps 300 --checkpoint target/gpt-ckpt
//! # continue to step 600:
//! cargo run --release -p ringfeed-examples --features tch --example train_gpt -- \
//!     --data target/tokens --steps 600 --checkpoint target/gpt-ckpt --resume
//! ```
//!
//! `--data` is any token corpus: a token dataset, nanoGPT's `train.bin`,
//! a Megatron prefix. Each step prints one JSON line (`step`, `loss`,
//! `batch` = a digest of the windows' offsets, `wait_ms`, `step_ms`); the
//! run ends with a summary line.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Parser;
use ringfeed::tch::nn;
use ringfeed::tch::{self, Device, Kind, Tensor};
use ringfeed::{Shuffle, TokenCorpus, TokenCorpusOptions, TokenLoader, TokenState, WindowMode};

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
    /// Token corpus: a token dataset (`ringfeed tokenize`), a nanoGPT .bin, a Megatron prefix.
    #[arg(long, default_value = "target/tokens")]
    data: PathBuf,
    /// Train until this many steps have run in total (counting the steps
    /// before a resumed checkpoint).
    #[arg(long, default_value_t = 300)]
    steps: u64,
    /// Windows per batch.
    #[arg(long, default_value_t = 8)]
    batch: u64,
    /// Context length (tokens per window's input).
    #[arg(long, default_value_t = 64)]
    block: u64,
    /// Transformer blocks.
    #[arg(long, default_value_t = 2)]
    layers: i64,
    /// Attention heads.
    #[arg(long, default_value_t = 2)]
    heads: i64,
    /// Embedding width.
    #[arg(long, default_value_t = 64)]
    width: i64,
    /// Vocabulary size (GPT-2's by default).
    #[arg(long, default_value_t = 50_257)]
    vocab: i64,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 3e-3)]
    lr: f64,
    /// Threads libtorch may use for the model (0 = libtorch's default).
    #[arg(long, default_value_t = 0)]
    threads: i32,
    /// Seed of the loader's order and of the model init.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Checkpoint directory; written at the end of the run and every
    /// `--checkpoint-every` steps.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Steps between checkpoints (0 = only at the end).
    #[arg(long, default_value_t = 0)]
    checkpoint_every: u64,
    /// Continue from the checkpoint in `--checkpoint`.
    #[arg(long)]
    resume: bool,
}

/// nanoGPT's model, smaller.
struct Gpt {
    wte: nn::Embedding,
    wpe: nn::Embedding,
    blocks: Vec<Block>,
    ln_f: nn::LayerNorm,
    heads: i64,
}

struct Block {
    ln1: nn::LayerNorm,
    qkv: nn::Linear,
    proj: nn::Linear,
    ln2: nn::LayerNorm,
    fc: nn::Linear,
    out: nn::Linear,
}

impl Gpt {
    fn new(p: &nn::Path, a: &Args) -> Gpt {
        let c = a.width;
        let blocks = (0..a.layers)
            .map(|i| {
                let b = p / "h" / i;
                Block {
                    ln1: nn::layer_norm(&b / "ln_1", vec![c], Default::default()),
                    qkv: nn::linear(&b / "attn" / "c_attn", c, 3 * c, Default::default()),
                    proj: nn::linear(&b / "attn" / "c_proj", c, c, Default::default()),
                    ln2: nn::layer_norm(&b / "ln_2", vec![c], Default::default()),
                    fc: nn::linear(&b / "mlp" / "c_fc", c, 4 * c, Default::default()),
                    out: nn::linear(&b / "mlp" / "c_proj", 4 * c, c, Default::default()),
                }
            })
            .collect();
        let emb =
            nn::EmbeddingConfig { ws_init: nn::Init::Randn { mean: 0.0, stdev: 0.02 }, ..Default::default() };
        Gpt {
            wte: nn::embedding(p / "wte", a.vocab, c, emb),
            wpe: nn::embedding(p / "wpe", a.block as i64, c, emb),
            blocks,
            ln_f: nn::layer_norm(p / "ln_f", vec![c], Default::default()),
            heads: a.heads,
        }
    }

    /// Logits `[B, T, vocab]` of token ids `x` `[B, T]`.
    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, t) = (x.size()[0], x.size()[1]);
        let pos = Tensor::arange(t, (Kind::Int64, x.device()));
        let mut h = x.apply(&self.wte) + pos.apply(&self.wpe);
        let c = h.size()[2];
        let hd = c / self.heads;
        for blk in &self.blocks {
            let qkv = h.apply(&blk.ln1).apply(&blk.qkv).split(c, 2);
            let heads = |t: &Tensor| t.view([b, -1, self.heads, hd]).transpose(1, 2);
            let (q, k, v) = (heads(&qkv[0]), heads(&qkv[1]), heads(&qkv[2]));
            let y = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, true, None, false);
            h = &h + y.transpose(1, 2).contiguous().view([b, t, c]).apply(&blk.proj);
            h = &h + h.apply(&blk.ln2).apply(&blk.fc).gelu("tanh").apply(&blk.out);
        }
        // The head shares the token embedding's weights, as GPT-2's.
        h.apply(&self.ln_f).matmul(&self.wte.ws.tr())
    }
}

/// AdamW written out so that its state (two moments per parameter, by
/// name) can be checkpointed.
struct AdamW {
    lr: f64,
    steps: i64,
    params: Vec<(String, Tensor, Tensor, Tensor)>,
}

impl AdamW {
    fn new(vs: &nn::VarStore, lr: f64) -> AdamW {
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        let params = params.into_iter().map(|(n, p)| (n, p.zeros_like(), p.zeros_like(), p)).collect();
        AdamW { lr, steps: 0, params }
    }

    fn step(&mut self) {
        let (b1, b2, eps, wd): (f64, f64, f64, f64) = (0.9, 0.95, 1e-8, 0.1);
        self.steps += 1;
        let (c1, c2) = (1.0 - b1.powi(self.steps as i32), 1.0 - b2.powi(self.steps as i32));
        tch::no_grad(|| {
            for (name, m, v, p) in &mut self.params {
                let g = p.grad();
                let _ = m.g_mul_scalar_(b1).g_add_(&(&g * (1.0 - b1)));
                let _ = v.g_mul_scalar_(b2).g_add_(&(&g * &g * (1.0 - b2)));
                // Decay the weight matrices, not biases, norms or positions.
                if p.dim() >= 2 && !name.contains("wpe") {
                    let _ = p.g_mul_scalar_(1.0 - self.lr * wd);
                }
                let update = (&*m / c1) / ((&*v / c2).sqrt() + eps);
                let _ = p.g_sub_(&(update * self.lr));
            }
        });
    }

    fn zero_grad(&mut self) {
        for (_, _, _, p) in &mut self.params {
            let mut g = p.grad();
            if g.defined() {
                let _ = g.zero_();
            }
        }
    }

    /// The first and second moments by parameter name, and the step count.
    fn state(&self) -> Vec<(String, Tensor)> {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (n, m, v, _) in &self.params {
            out.push((format!("m.{n}"), m.shallow_clone()));
            out.push((format!("v.{n}"), v.shallow_clone()));
        }
        out.push(("steps".into(), Tensor::from(self.steps)));
        out
    }

    fn restore(&mut self, saved: &std::collections::BTreeMap<String, Tensor>) -> Result<()> {
        let get = |k: String| saved.get(&k).with_context(|| format!("{k} missing from the checkpoint"));
        for (n, m, v, _) in &mut self.params {
            let (sm, sv) = (get(format!("optim.m.{n}"))?, get(format!("optim.v.{n}"))?);
            tch::no_grad(|| {
                m.copy_(sm);
                v.copy_(sv);
            });
        }
        self.steps = get("optim.steps".into())?.int64_value(&[]);
        Ok(())
    }
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
    if args.heads <= 0 || args.width % args.heads != 0 {
        bail!("--width must be a multiple of --heads");
    }
    let device = Device::cuda_if_available();
    tch::manual_seed(args.seed as i64);
    let vs = nn::VarStore::new(device);
    let gpt = Gpt::new(&vs.root(), args);
    let mut opt = AdamW::new(&vs, args.lr);

    let (mut step, state) = match (&args.checkpoint, args.resume) {
        (Some(dir), true) => {
            let restored = ckpt::restore(dir)?;
            for (name, mut var) in vs.variables() {
                let t = restored
                    .tensors
                    .get(&format!("model.{name}"))
                    .with_context(|| format!("parameter {name} missing"))?;
                tch::no_grad(|| var.copy_(t));
            }
            opt.restore(&restored.tensors)?;
            (restored.step, Some(TokenState::from_json(&restored.loader)?))
        }
        (None, true) => bail!("--resume needs --checkpoint"),
        _ => (0, None),
    };
    let corpus = Arc::new(
        // Ids the embedding cannot take are the corpus's error, not a
        // libtorch crash in the middle of a step.
        TokenCorpus::open(
            &args.data,
            &TokenCorpusOptions { vocab_size: Some(args.vocab as u32), ..Default::default() },
        )
        .with_context(|| format!("opening {}", args.data.display()))?,
    );
    let mut builder = TokenLoader::builder(corpus)
        .block_size(args.block)
        .batch_size(args.batch)
        .mode(WindowMode::Epoch { shuffle: Shuffle::Global })
        .seed(args.seed)
        .epochs(u64::MAX);
    if let Some(state) = state {
        builder = builder.resume(state);
    }
    let mut loader = builder.build()?;

    let mut saver = args.checkpoint.as_deref().map(ckpt::Saver::new).transpose()?;
    let mut save = |loader: &TokenLoader, opt: &AdamW, step: u64| -> Result<()> {
        let Some(saver) = saver.as_mut() else { return Ok(()) };
        let mut params: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        params.sort_by(|a, b| a.0.cmp(&b.0));
        saver.save(&[("model.", &params), ("optim.", &opt.state())], &loader.state().to_json(), step)
    };

    let first_step = step;
    let started = Instant::now();
    let (mut waited, mut tokens, mut first_losses, mut last_losses) = (0f64, 0u64, Vec::new(), Vec::new());
    while step < args.steps {
        let t0 = Instant::now();
        let batch = loader.next().context("the loader ended early")??;
        let wait = t0.elapsed().as_secs_f64();
        let digest = batch_digest(&batch.offsets);
        tokens += (batch.len() * batch.block_size) as u64;
        let (x, y) = batch.into_tensors()?;
        let (x, y) = (x.to_device(device), y.to_device(device));
        let logits = gpt.forward(&x);
        let loss = logits.view([-1, args.vocab]).cross_entropy_for_logits(&y.view([-1]));
        opt.zero_grad();
        loss.backward();
        opt.step();
        let loss = loss.double_value(&[]);
        if !loss.is_finite() {
            bail!("the loss is {loss} at step {}", step + 1);
        }
        step += 1;
        waited += wait;
        if first_losses.len() < 10 {
            first_losses.push(loss);
        }
        last_losses.push(loss);
        if last_losses.len() > 10 {
            last_losses.remove(0);
        }
        on_step(&StepLog { step, loss, batch: digest, wait_s: wait, step_s: t0.elapsed().as_secs_f64() });
        if args.checkpoint_every > 0 && step % args.checkpoint_every == 0 && step < args.steps {
            save(&loader, &opt, step)?;
        }
    }
    save(&loader, &opt, step)?;
    if let Some(s) = saver.as_mut() {
        s.wait()?;
    }
    let secs = started.elapsed().as_secs_f64();
    let mean = |v: &[f64]| if v.is_empty() { f64::NAN } else { v.iter().sum::<f64>() / v.len() as f64 };
    Ok(serde_json::json!({
        "steps": step - first_step,
        "tokens_per_sec": tokens as f64 / secs,
        "data_wait_share": waited / secs,
        "first_loss": mean(&first_losses),
        "last_loss": mean(&last_losses),
        "device": format!("{device:?}"),
        "epoch": loader.state().epoch,
    }))
}
