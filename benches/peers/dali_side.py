#!/usr/bin/env python3
"""NVIDIA DALI (CPU only) peer side for the ringfeed loader benchmark.

usage: dali_side.py --folder DIR --pipeline train|val [--batch 64] [--threads 2] [--limit N]

Reads an ImageFolder tree (class/file.jpg, symlinks allowed; label = index of
the sorted class dir names, which is how fn.readers.file labels a file_root),
runs ONE epoch through a CPU-only DALI pipeline (device_id=None) and the
PyTorch plugin's DALIGenericIterator, and prints one JSON line:
  {"images", "seconds", "first_batch_s", "version", "config"}
seconds / first_batch_s are measured from pipeline creation to the last /
first batch received as torch tensors (float32 [B,3,224,224] NCHW normalized,
int64 labels [B], CPU). Pipeline as in DALI's ImageNet/ResNet-50 PyTorch
example (docs/examples/use_cases/pytorch/resnet50, --dali_cpu), with
torchvision's crop ranges instead of the example's [0.1,1] / [0.8,1.25]:
  train: readers.file(random_shuffle) -> decoders.image_random_crop (ROI decode,
         area [0.08,1], aspect [3/4,4/3]) -> resize 224x224 ->
         crop_mirror_normalize(mirror=coin_flip)
  val:   readers.file -> decoders.image -> resize(resize_shorter=256) ->
         crop_mirror_normalize(crop 224x224, centered)
--limit N (testing): N files evenly spaced over the sorted list, linked into a
temporary class/file.jpg tree.
"""
import faulthandler, json, time

import common
from common import jpeg_files


def fail(msg):
    common.fail("dali_side", msg)


def main():
    # DALI 2.4 CPU-only segfaults (rc 139) when a file fails to decode: at
    # least leave the Python stack on stderr.
    faulthandler.enable()
    a, folder, tmp = common.parse("dali_side", __doc__, "DALI seed (default: random)")
    expected = len(jpeg_files(folder))
    if expected == 0:
        fail(f"no *.jpg files under {folder}")

    try:
        import torch
        import nvidia.dali as dali
        import nvidia.dali.fn as fn
        import nvidia.dali.types as types
        from nvidia.dali.pipeline import pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy
    except ImportError as e:
        fail(f"cannot import DALI / torch ({e}); run: bash benches/peers/install.sh dali")

    # The consumer's own torch work (label cast) stays on one thread: DALI's
    # num_threads is the decoding budget.
    torch.set_num_threads(1)
    mean = [0.485 * 255, 0.456 * 255, 0.406 * 255]
    std = [0.229 * 255, 0.224 * 255, 0.225 * 255]
    train = a.pipeline == "train"

    @pipeline_def
    def imagenet_pipe():
        jpegs, labels = fn.readers.file(file_root=folder, random_shuffle=train, pad_last_batch=True, name="Reader")
        if train:
            images = fn.decoders.image_random_crop(jpegs, device="cpu", output_type=types.RGB,
                                                   random_area=[0.08, 1.0], random_aspect_ratio=[0.75, 4.0 / 3.0],
                                                   num_attempts=10)
            images = fn.resize(images, device="cpu", resize_x=224, resize_y=224, interp_type=types.INTERP_TRIANGULAR)
            mirror = fn.random.coin_flip(probability=0.5)
            images = fn.crop_mirror_normalize(images, device="cpu", dtype=types.FLOAT, output_layout="CHW",
                                              mean=mean, std=std, mirror=mirror)
        else:
            images = fn.decoders.image(jpegs, device="cpu", output_type=types.RGB)
            images = fn.resize(images, device="cpu", resize_shorter=256, interp_type=types.INTERP_TRIANGULAR)
            images = fn.crop_mirror_normalize(images, device="cpu", dtype=types.FLOAT, output_layout="CHW",
                                              crop=(224, 224), mean=mean, std=std)
        return images, labels

    config = (f"DALI {dali.__version__} CPU-only (device_id=None), num_threads={a.threads}, batch={a.batch}, "
              + ("readers.file(random_shuffle=True, pad_last_batch) + decoders.image_random_crop(cpu, ROI decode, "
                 "area [0.08,1], aspect [0.75,1.333]) + resize 224x224 INTERP_TRIANGULAR + "
                 "crop_mirror_normalize(mirror=coin_flip)" if train else
                 "readers.file(pad_last_batch) + decoders.image(cpu) + resize_shorter=256 INTERP_TRIANGULAR + "
                 "crop_mirror_normalize(center crop 224)")
              + ", DALIGenericIterator(LastBatchPolicy.PARTIAL, auto_reset=False), f32 NCHW + int64 labels")

    started = time.perf_counter()
    try:
        pipe = imagenet_pipe(batch_size=a.batch, num_threads=a.threads, device_id=None, seed=a.seed)
        pipe.build()
        it = DALIGenericIterator([pipe], ["data", "label"], reader_name="Reader",
                                 last_batch_policy=LastBatchPolicy.PARTIAL, auto_reset=False)
        first, n, batches = None, 0, 0
        for out in it:
            images = out[0]["data"]
            labels = out[0]["label"].reshape(-1).to(torch.int64)
            if first is None:
                first = time.perf_counter() - started
                if (images.dtype != torch.float32 or images.dim() != 4 or tuple(images.shape[1:]) != (3, 224, 224)
                        or images.device.type != "cpu" or labels.shape[0] != images.shape[0]):
                    fail(f"unexpected batch: {images.dtype} {tuple(images.shape)} {images.device}, labels {tuple(labels.shape)}")
                if a.dump:
                    torch.save((images.clone(), labels.clone()), a.dump)
            n += images.shape[0]
            batches += 1
            del images, labels, out
        seconds = time.perf_counter() - started
    except Exception as e:  # DALI raises RuntimeError for pipeline errors
        fail(f"pipeline failed: {type(e).__name__}: {e}")
    if n != expected:
        fail(f"one epoch delivered {n} images, the folder has {expected}")
    print(json.dumps({"images": n, "seconds": seconds, "first_batch_s": first,
                      "version": dali.__version__, "config": config}))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
