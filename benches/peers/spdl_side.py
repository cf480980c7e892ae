#!/usr/bin/env python3
"""Meta SPDL (CPU) peer side for the ringfeed loader benchmark.

usage: spdl_side.py --folder DIR --pipeline train|val [--batch 64] [--threads 2] [--limit N]

Reads an ImageFolder tree (class/file.jpg, symlinks allowed; label = index of
the sorted class dir names), runs ONE epoch through an spdl.pipeline
Pipeline and prints one JSON line:
  {"images", "seconds", "first_batch_s", "version", "config"}
seconds / first_batch_s are measured from pipeline creation to the last /
first batch received as torch tensors (float32 [B,3,224,224] NCHW normalized,
int64 labels [B], CPU).

Pipeline, after SPDL's own CPU recipe (spdl.dataloader.DataLoader docstring:
per-image demux_image + decode_packets(filter_desc) as the preprocessor with
concurrency = num_threads, aggregate, convert_frames as the batcher; built
with PipelineBuilder(...).build(num_threads) as in examples/image_dataloading.py
and examples/imagenet_classification.py):
  source (path, label), shuffled for train
  -> pipe(decode one image, concurrency=threads): spdl.io.demux_image, then
     spdl.io.decode_packets with an FFmpeg filter graph
       train: crop=W:H:X:Y,scale=224:224:flags=bilinear[,hflip],format=rgb24
              (box drawn per image in Python with torchvision's
              RandomResizedCrop.get_params semantics, flip with p=0.5: SPDL
              has no random crop op of its own)
       val:   spdl.io.get_video_filter_desc(scale 256x256, scale_mode="crop",
              i.e. shorter side -> 256 then center 256x256, crop 224x224,
              bilinear, rgb24)
  -> aggregate(batch, drop_last=False)
  -> pipe(batchify): spdl.io.convert_frames -> spdl.io.to_torch (uint8 NHWC)
     -> float32 NCHW, (x - mean*255) / (std*255); labels int64
  -> sink(3); thread pool of --threads threads (decoders single-threaded, as
     SPDL configures them by default).
--limit N (testing): N files evenly spaced over the sorted list, linked into a
temporary class/file.jpg tree.
"""
import json, math, random, time

import common
from common import jpeg_files


def fail(msg):
    common.fail("spdl_side", msg)


def rrc_params(rng, width, height, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision.transforms.RandomResizedCrop.get_params, with Python's
    random: (top, left, h, w)."""
    area = height * width
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect_ratio = math.exp(rng.uniform(log_ratio[0], log_ratio[1]))
        w = int(round(math.sqrt(target_area * aspect_ratio)))
        h = int(round(math.sqrt(target_area / aspect_ratio)))
        if 0 < w <= width and 0 < h <= height:
            i = rng.randint(0, height - h)
            j = rng.randint(0, width - w)
            return i, j, h, w
    # Fallback to central crop
    in_ratio = float(width) / float(height)
    if in_ratio < min(ratio):
        w = width
        h = int(round(w / min(ratio)))
    elif in_ratio > max(ratio):
        h = height
        w = int(round(h * max(ratio)))
    else:
        w = width
        h = height
    i = (height - h) // 2
    j = (width - w) // 2
    return i, j, h, w


def main():
    a, folder, tmp = common.parse("spdl_side", __doc__, "shuffle / crop seed (default: random)")
    files = jpeg_files(folder)
    if not files:
        fail(f"no *.jpg files under {folder}")
    classes = sorted({p.parent.name for p in files})
    index = {c: i for i, c in enumerate(classes)}
    items = [(str(p), index[p.parent.name]) for p in files]

    try:
        from importlib.metadata import version
        import torch
        import spdl.io
        from spdl.pipeline import PipelineBuilder
        spdl.io.ImageFrames  # loads libspdl, i.e. finds FFmpeg's shared libraries
        if isinstance(spdl.io.ImageFrames, type) and spdl.io.ImageFrames.__name__ == "_placeholder":
            raise ImportError("libspdl could not load FFmpeg's shared libraries")
        spdl_version = version("spdl")
    except (ImportError, RuntimeError) as e:
        fail(f"cannot load SPDL / torch ({e}); run: bash benches/peers/install.sh spdl")

    # The batcher's torch ops run on the pipeline's own threads: no intra-op pool.
    torch.set_num_threads(1)
    train = a.pipeline == "train"
    rng = random.Random(a.seed)
    mean = torch.tensor([0.485 * 255, 0.456 * 255, 0.406 * 255]).view(1, 3, 1, 1)
    inv_std = 1.0 / torch.tensor([0.229 * 255, 0.224 * 255, 0.225 * 255]).view(1, 3, 1, 1)
    val_filter = spdl.io.get_video_filter_desc(scale_width=256, scale_height=256, scale_algo="bilinear",
                                               scale_mode="crop", crop_width=224, crop_height=224, pix_fmt="rgb24")

    def decode(item):
        path, label = item
        packets = spdl.io.demux_image(path)
        if packets.width <= 0 or packets.height <= 0:
            raise ValueError(f"{path}: not a decodable image (size {packets.width}x{packets.height})")
        if train:
            # Per-image random draws in the worker thread: random.Random's
            # methods are safe to call from several threads (GIL held).
            top, left, h, w = rrc_params(rng, packets.width, packets.height)
            flip = ",hflip" if rng.random() < 0.5 else ""
            desc = f"crop={w}:{h}:{left}:{top}:exact=1,scale=224:224:flags=bilinear{flip},format=pix_fmts=rgb24"
        else:
            desc = val_filter
        return spdl.io.decode_packets(packets, filter_desc=desc), label

    def batchify(batch):
        frames = [f for f, _ in batch]
        nhwc = spdl.io.to_torch(spdl.io.convert_frames(frames))  # uint8 [B, 224, 224, 3]
        images = torch.empty((nhwc.shape[0], 3, nhwc.shape[1], nhwc.shape[2]), dtype=torch.float32)
        images.copy_(nhwc.permute(0, 3, 1, 2))
        images.sub_(mean).mul_(inv_std)
        labels = torch.tensor([l for _, l in batch], dtype=torch.int64)
        return images, labels

    if train:
        rng.shuffle(items)
    config = (f"SPDL {spdl_version} (spdl.io {version('spdl_io')}, FFmpeg 5 libs) CPU, "
              f"PipelineBuilder: pipe(demux_image+decode_packets, concurrency={a.threads}) -> aggregate({a.batch}) -> "
              f"pipe(convert_frames+to_torch+normalize) -> sink(3), build(num_threads={a.threads}); "
              + ("train: Python-drawn RandomResizedCrop box (torchvision get_params) + p=0.5 flip as FFmpeg filter "
                 "crop,scale=224:224:flags=bilinear[,hflip],format=rgb24 (full decode, then crop)"
                 if train else
                 "val: FFmpeg filter scale shorter side to 256 (bilinear) + center crop 224, rgb24")
              + "; f32 NCHW + int64 labels")

    started = time.perf_counter()
    try:
        pipeline = (
            PipelineBuilder()
            .add_source(items)
            .pipe(decode, concurrency=a.threads)
            .aggregate(a.batch, drop_last=False)
            .pipe(batchify)
            .add_sink(3)
            .build(num_threads=a.threads, max_failures=0)
        )
        first, n = None, 0
        with pipeline.auto_stop():
            for images, labels in pipeline.get_iterator():
                if first is None:
                    first = time.perf_counter() - started
                    if (images.dtype != torch.float32 or tuple(images.shape[1:]) != (3, 224, 224)
                            or labels.dtype != torch.int64 or labels.shape[0] != images.shape[0]):
                        fail(f"unexpected batch: {images.dtype} {tuple(images.shape)}, labels {labels.dtype} {tuple(labels.shape)}")
                    if a.dump:
                        torch.save((images.clone(), labels.clone()), a.dump)
                n += images.shape[0]
                del images, labels
        seconds = time.perf_counter() - started
    except Exception as e:
        fail(f"pipeline failed: {type(e).__name__}: {e}")
    if n != len(items):
        fail(f"one epoch delivered {n} images, the folder has {len(items)}")
    print(json.dumps({"images": n, "seconds": seconds, "first_batch_s": first,
                      "version": spdl_version, "config": config}))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
