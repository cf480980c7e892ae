//! Peer benchmark: one epoch of an ImageFolder tree through the crates.io
//! crate `dataloader-rs` 0.2.0, configured as its README and module guides
//! show (`DataLoader::builder(dataset).batch_size(..).sampler(RandomSampler)
//! .num_workers(..).build()`, `DefaultCollator` with its `ndarray` feature).
//!
//! usage: dataloader-rs-peer --folder DIR --pipeline train|val [--batch 64]
//!        [--workers 2] [--limit N] [--seed S] [--prefetch-depth 2]
//!        [--items-in-parallel 1]
//!
//! Each item: read the file, decode the whole JPEG to RGB8 with the `image`
//! crate (zune-jpeg), then
//!   train: RandomResizedCrop(224, scale=(0.08, 1), ratio=(3/4, 4/3)) with
//!          torchvision's sampling rule + horizontal flip p=0.5,
//!   val:   resize the shorter side to 256 + center crop 224,
//! resizing with fast_image_resize (convolution, bilinear filter, kernel
//! widened when downscaling: Pillow's / torchvision's antialiased bilinear),
//! then f32 CHW normalized with the ImageNet mean / std. Batches: the crate's
//! `DefaultCollator` on `(Array3<f32>, i64)` items, i.e. a contiguous
//! `Array4<f32>` [B, 3, 224, 224] (standard layout) and a `Vec<i64>` of labels.
//!
//! Timing: from creating the loader to receiving the last batch of one
//! epoch; the consumer drops each batch. Prints one JSON line on stdout.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use dataloader_rs::{
    DataLoader, Dataset, RandomSampler, collator::DefaultCollator,
    error::Result as DlResult,
};
use fast_image_resize as fir;
use ndarray::{Array3, Array4};

const SIDE: u32 = 224;
const VAL_RESIZE: u32 = 256;
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

type AnyError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pipeline {
    Train,
    Val,
}

struct Args {
    folder: PathBuf,
    pipeline: Pipeline,
    batch: usize,
    workers: usize,
    limit: Option<usize>,
    seed: u64,
    prefetch_depth: usize,
    items_in_parallel: usize,
    dump_dir: Option<PathBuf>,
}

const USAGE: &str = "usage: dataloader-rs-peer --folder DIR --pipeline train|val [--batch 64] \
[--workers 2] [--limit N] [--seed 0] [--prefetch-depth 2] [--items-in-parallel 1] \
[--dump-dir DIR (debugging: writes each item's f32 CHW and crop box; slows the run)]";

fn parse_args() -> Result<Args, AnyError> {
    let mut folder = None;
    let mut pipeline = None;
    let mut batch = 64usize;
    let mut workers = 2usize;
    let mut limit = None;
    let mut seed = 0u64;
    // The crate's defaults (README, "Configuration").
    let mut prefetch_depth = 2usize;
    let mut items_in_parallel = 1usize;
    let mut dump_dir = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            println!("{USAGE}");
            std::process::exit(0);
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let num = |v: &str| -> Result<usize, AnyError> {
            v.parse::<usize>()
                .map_err(|e| format!("{flag} {v}: {e}").into())
        };
        match flag.as_str() {
            "--folder" => folder = Some(PathBuf::from(value)),
            "--pipeline" => {
                pipeline = Some(match value.as_str() {
                    "train" => Pipeline::Train,
                    "val" => Pipeline::Val,
                    other => return Err(format!("--pipeline {other}: expected train or val").into()),
                })
            }
            "--batch" => batch = num(&value)?,
            "--workers" => workers = num(&value)?,
            "--limit" => limit = Some(num(&value)?),
            "--seed" => seed = value.parse().map_err(|e| format!("--seed {value}: {e}"))?,
            "--prefetch-depth" => prefetch_depth = num(&value)?,
            "--items-in-parallel" => items_in_parallel = num(&value)?,
            "--dump-dir" => dump_dir = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other}\n{USAGE}").into()),
        }
    }
    let folder = folder.ok_or_else(|| format!("--folder is required\n{USAGE}"))?;
    let pipeline = pipeline.ok_or_else(|| format!("--pipeline is required\n{USAGE}"))?;
    if batch == 0 || prefetch_depth == 0 || items_in_parallel == 0 {
        return Err("--batch, --prefetch-depth and --items-in-parallel must be > 0".into());
    }
    if limit == Some(0) {
        return Err("--limit must be > 0".into());
    }
    Ok(Args {
        folder,
        pipeline,
        batch,
        workers,
        limit,
        seed,
        prefetch_depth,
        items_in_parallel,
        dump_dir,
    })
}

// ── The file list (torchvision ImageFolder's rule) ───────────────────────────

fn is_jpeg(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("jpg") || e.eq_ignore_ascii_case("jpeg"))
}

/// Files under `dir`, recursively, following symlinks.
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), AnyError> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if meta.is_dir() {
            walk(&path, out)?;
        } else if meta.is_file() && is_jpeg(&path) {
            out.push(path);
        }
    }
    Ok(())
}

/// (path, label) of every JPEG of an ImageFolder tree, sorted by path; the
/// label is the index of the class directory among the sorted class names.
fn image_folder(root: &Path) -> Result<Vec<(PathBuf, i64)>, AnyError> {
    let mut classes = Vec::new();
    for entry in std::fs::read_dir(root).map_err(|e| format!("{}: {e}", root.display()))? {
        let path = entry?.path();
        if std::fs::metadata(&path)?.is_dir() {
            classes.push(path);
        }
    }
    classes.sort();
    if classes.is_empty() {
        return Err(format!("{}: no class directories", root.display()).into());
    }
    let mut files = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let mut found = Vec::new();
        walk(class, &mut found)?;
        files.extend(found.into_iter().map(|p| (p, label as i64)));
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("{}: no .jpg files under the class directories", root.display()).into());
    }
    Ok(files)
}

/// `n` files evenly spaced over the sorted list (all when `n` >= its length),
/// the harness's `file_set` rule.
fn evenly_spaced<T: Clone>(all: &[T], n: usize) -> Vec<T> {
    if n >= all.len() {
        return all.to_vec();
    }
    (0..n).map(|i| all[i * all.len() / n].clone()).collect()
}

// ── Transforms ───────────────────────────────────────────────────────────────

/// torchvision.transforms.RandomResizedCrop.get_params with scale (0.08, 1)
/// and ratio (3/4, 4/3): (top, left, height, width) of the crop box.
fn random_resized_crop_box(rng: &mut fastrand::Rng, width: u32, height: u32) -> (u32, u32, u32, u32) {
    let (scale_lo, scale_hi) = (0.08f64, 1.0f64);
    let (ratio_lo, ratio_hi) = (3.0f64 / 4.0, 4.0f64 / 3.0);
    let area = width as f64 * height as f64;
    let (log_lo, log_hi) = (ratio_lo.ln(), ratio_hi.ln());
    for _ in 0..10 {
        let target_area = area * (scale_lo + rng.f64() * (scale_hi - scale_lo));
        let aspect = (log_lo + rng.f64() * (log_hi - log_lo)).exp();
        // Python's round(): half to even.
        let w = (target_area * aspect).sqrt().round_ties_even() as i64;
        let h = (target_area / aspect).sqrt().round_ties_even() as i64;
        if 0 < w && w <= width as i64 && 0 < h && h <= height as i64 {
            let (w, h) = (w as u32, h as u32);
            let top = rng.u32(0..=height - h);
            let left = rng.u32(0..=width - w);
            return (top, left, h, w);
        }
    }
    // Fallback: a center crop at the nearest allowed aspect ratio.
    let in_ratio = width as f64 / height as f64;
    let (w, h) = if in_ratio < ratio_lo {
        (width, ((width as f64 / ratio_lo).round_ties_even() as u32).clamp(1, height))
    } else if in_ratio > ratio_hi {
        (((height as f64 * ratio_hi).round_ties_even() as u32).clamp(1, width), height)
    } else {
        (width, height)
    };
    ((height - h) / 2, (width - w) / 2, h, w)
}

/// torchvision Resize(256) output size: shorter side 256, the longer one
/// `int(256 * long / short)`.
fn val_resized_size(width: u32, height: u32) -> (u32, u32) {
    if width <= height {
        let long = (VAL_RESIZE as f64 * height as f64 / width as f64) as u32;
        (VAL_RESIZE, long)
    } else {
        let long = (VAL_RESIZE as f64 * width as f64 / height as f64) as u32;
        (long, VAL_RESIZE)
    }
}

thread_local! {
    /// One resizer per worker thread (it keeps its scratch buffers).
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

fn resize(src: &impl fir::IntoImageView, dst: &mut fir::images::Image<'_>) -> Result<(), AnyError> {
    let options =
        fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Bilinear));
    RESIZER.with_borrow_mut(|r| r.resize(src, dst, &options))?;
    Ok(())
}

/// The 224 x 224 window at (left, top) of an RGB8 image `stride_px` pixels
/// wide, optionally mirrored, as f32 CHW: (v / 255 - mean) / std.
fn to_normalized_chw(rgb: &[u8], stride_px: usize, left: usize, top: usize, flip: bool) -> Vec<f32> {
    let side = SIDE as usize;
    let plane = side * side;
    let mut out = vec![0f32; 3 * plane];
    let (r_out, rest) = out.split_at_mut(plane);
    let (g_out, b_out) = rest.split_at_mut(plane);
    for y in 0..side {
        let row_start = ((top + y) * stride_px + left) * 3;
        let row = &rgb[row_start..row_start + side * 3];
        for x in 0..side {
            let sx = if flip { side - 1 - x } else { x };
            let px = &row[sx * 3..sx * 3 + 3];
            let o = y * side + x;
            r_out[o] = (px[0] as f32 / 255.0 - MEAN[0]) / STD[0];
            g_out[o] = (px[1] as f32 / 255.0 - MEAN[1]) / STD[1];
            b_out[o] = (px[2] as f32 / 255.0 - MEAN[2]) / STD[2];
        }
    }
    out
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

// ── The dataset ──────────────────────────────────────────────────────────────

struct ImageFolder {
    files: Vec<(PathBuf, i64)>,
    pipeline: Pipeline,
    seed: u64,
    /// How many times each index was fetched (checked after the epoch).
    fetched: Vec<AtomicU32>,
    /// Debugging only (--dump-dir): `<index>.f32` (the item's CHW floats)
    /// and `<index>.txt` (path, label, box, flip) for each item.
    dump_dir: Option<PathBuf>,
}

impl ImageFolder {
    fn load(&self, index: usize) -> Result<(Array3<f32>, i64), AnyError> {
        let (path, label) = self
            .files
            .get(index)
            .ok_or_else(|| format!("index {index} out of range ({} files)", self.files.len()))?;
        let bytes = std::fs::read(path)?;
        // Full decode (no ROI, no DCT scaling) to RGB8; grayscale/CMYK
        // JPEGs are converted like PIL's .convert("RGB").
        let rgb = image::load_from_memory(&bytes)?.into_rgb8();
        let (width, height) = rgb.dimensions();
        let src = fir::images::Image::from_vec_u8(width, height, rgb.into_raw(), fir::PixelType::U8x3)?;
        let mut record = String::new();
        let chw = match self.pipeline {
            Pipeline::Train => {
                let mut rng = fastrand::Rng::with_seed(splitmix64(self.seed ^ splitmix64(index as u64)));
                let (top, left, h, w) = random_resized_crop_box(&mut rng, width, height);
                // Crop first, then resize the crop alone (torchvision's
                // resized_crop): no pixel outside the box is sampled.
                let crop = fir::images::CroppedImage::new(&src, left, top, w, h)?;
                let mut dst = fir::images::Image::new(SIDE, SIDE, fir::PixelType::U8x3);
                resize(&crop, &mut dst)?;
                let flip = rng.bool();
                if self.dump_dir.is_some() {
                    record = format!("train {top} {left} {h} {w} {}", flip as u8);
                }
                to_normalized_chw(dst.buffer(), SIDE as usize, 0, 0, flip)
            }
            Pipeline::Val => {
                let (rw, rh) = val_resized_size(width, height);
                let mut dst = fir::images::Image::new(rw, rh, fir::PixelType::U8x3);
                resize(&src, &mut dst)?;
                // CenterCrop: int(round((size - 224) / 2.0)).
                let top = ((rh - SIDE) as f64 / 2.0).round_ties_even() as usize;
                let left = ((rw - SIDE) as f64 / 2.0).round_ties_even() as usize;
                if self.dump_dir.is_some() {
                    record = format!("val {rw} {rh} {top} {left}");
                }
                to_normalized_chw(dst.buffer(), rw as usize, left, top, false)
            }
        };
        if let Some(dir) = &self.dump_dir {
            let floats: Vec<u8> = chw.iter().flat_map(|v| v.to_le_bytes()).collect();
            std::fs::write(dir.join(format!("{index}.f32")), floats)?;
            std::fs::write(
                dir.join(format!("{index}.txt")),
                format!("{}\n{label}\n{width} {height}\n{record}\n", path.display()),
            )?;
        }
        let array = Array3::from_shape_vec((3, SIDE as usize, SIDE as usize), chw)?;
        self.fetched[index].fetch_add(1, Ordering::Relaxed);
        Ok((array, *label))
    }
}

impl Dataset for ImageFolder {
    type Item = (Array3<f32>, i64);

    fn get(&self, index: usize) -> DlResult<Self::Item> {
        self.load(index).map_err(|e| {
            let path = self.files.get(index).map(|(p, _)| p.display().to_string()).unwrap_or_default();
            format!("{path}: {e}").into()
        })
    }

    fn len(&self) -> usize {
        self.files.len()
    }
}

// ── The epoch ────────────────────────────────────────────────────────────────

struct Epoch {
    images: usize,
    seconds: f64,
    first_batch_s: f64,
}

/// Drains one epoch: checks each batch's shape and drops it.
fn drain<I>(batches: I, started: Instant, batch: usize) -> Result<Epoch, AnyError>
where
    I: Iterator<Item = DlResult<(Array4<f32>, Vec<i64>)>>,
{
    let mut images = 0usize;
    let mut first = None;
    let mut n_batches = 0usize;
    for result in batches {
        let (pixels, labels) = result?;
        first.get_or_insert_with(|| started.elapsed().as_secs_f64());
        let b = labels.len();
        if pixels.shape() != [b, 3, SIDE as usize, SIDE as usize] || !pixels.is_standard_layout() {
            return Err(format!("batch {n_batches}: unexpected pixels {:?} for {b} labels", pixels.shape()).into());
        }
        if b == 0 || b > batch {
            return Err(format!("batch {n_batches}: {b} samples for batch size {batch}").into());
        }
        images += b;
        n_batches += 1;
        drop((pixels, labels));
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Epoch {
        images,
        seconds,
        first_batch_s: first.ok_or("the epoch yielded no batch")?,
    })
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn run() -> Result<(), AnyError> {
    let args = parse_args()?;
    let all = image_folder(&args.folder)?;
    let files = match args.limit {
        Some(n) => evenly_spaced(&all, n),
        None => all,
    };
    let n_files = files.len();
    let dataset = ImageFolder {
        fetched: (0..n_files).map(|_| AtomicU32::new(0)).collect(),
        files,
        pipeline: args.pipeline,
        seed: args.seed,
        dump_dir: args.dump_dir.clone(),
    };
    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }

    // Timed: creating the loader (its rayon pool) to the last batch.
    let started = Instant::now();
    let builder = DataLoader::builder(dataset)
        .batch_size(args.batch)
        .drop_last(false)
        .num_workers(args.workers)
        .items_in_parallel(args.items_in_parallel)
        .prefetch_depth(args.prefetch_depth)
        .collator(DefaultCollator);
    // shuffle=True for both pipelines, as the harness's torch DataLoader
    // side does (for val the order does not change the work): a uniform
    // permutation, reproducible from the seed.
    let mut loader = builder.sampler(RandomSampler::new(args.seed)).build();
    let epoch = drain(loader.iter(), started, args.batch)?;
    let dataset_check = check_once(loader.dataset());
    dataset_check?;
    if epoch.images != n_files {
        return Err(format!("{} images delivered for {n_files} files", epoch.images).into());
    }

    let version = format!(
        "dataloader-rs {}, image {}, fast_image_resize {}, zune-jpeg {}, ndarray {}",
        env!("DLRS_VERSION"),
        env!("IMAGE_VERSION"),
        env!("FIR_VERSION"),
        env!("ZUNE_JPEG_VERSION"),
        env!("NDARRAY_VERSION"),
    );
    let pipeline = match args.pipeline {
        Pipeline::Train => "train: RandomResizedCrop(224, scale=(0.08,1), ratio=(3/4,4/3)) + hflip(0.5)",
        Pipeline::Val => "val: Resize(256) + CenterCrop(224)",
    };
    let config = format!(
        "DataLoader num_workers={} (rayon pool of {} threads), items_in_parallel={}, prefetch_depth={}, \
         batch_size={}, drop_last=false, RandomSampler(seed={}), DefaultCollator -> (Array4<f32> [B,3,224,224], Vec<i64>); \
         item: std::fs::read + image::load_from_memory (zune-jpeg, full decode) -> RGB8, {pipeline} with \
         fast_image_resize Convolution(Bilinear) on u8, f32 CHW ImageNet-normalized; {} files{}",
        args.workers,
        args.workers.max(1) * args.items_in_parallel,
        args.items_in_parallel,
        args.prefetch_depth,
        args.batch,
        args.seed,
        n_files,
        args.limit.map(|n| format!(" (--limit {n}, evenly spaced)")).unwrap_or_default()
            + if args.dump_dir.is_some() { "; --dump-dir set: timing not meaningful" } else { "" },
    );
    println!(
        "{{\"images\": {}, \"seconds\": {:.6}, \"first_batch_s\": {:.6}, \"version\": {}, \"config\": {}}}",
        epoch.images,
        epoch.seconds,
        epoch.first_batch_s,
        json_str(&version),
        json_str(&config),
    );
    Ok(())
}

/// Every file fetched exactly once in the epoch.
fn check_once(dataset: &ImageFolder) -> Result<(), AnyError> {
    for (i, n) in dataset.fetched.iter().enumerate() {
        let n = n.load(Ordering::Relaxed);
        if n != 1 {
            return Err(format!("{}: fetched {n} times in the epoch", dataset.files[i].0.display()).into());
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dataloader-rs-peer: error: {e}");
            ExitCode::FAILURE
        }
    }
}
