#!/usr/bin/env python3
"""FFCV peer side for benches/harness.py (see benches/peers/NOTES-ffcv.md).

  ffcv_side.py --write --folder DIR --beton OUT.beton [--limit N]   (not timed)
  ffcv_side.py --beton OUT.beton --pipeline train|val --batch 64 --threads 2

FFCV and its pinned numba/llvmlite/numpy live in a virtualenv made by
benches/peers/install_ffcv.sh ($FFCV_VENV, default
~/.cache/ringfeed-bench/ffcv-venv, --system-site-packages so torch comes from
the system). When started by another interpreter this script re-execs itself
with the venv's python (os.execv: same PID, so the harness's RSS/PSS sampling
and its process-group kill still cover it).

Timed: from creating the ffcv Loader to receiving the last batch of one epoch
that covers every image once (drop_last=False); first_batch_s from the same
start (it includes FFCV's numba JIT compile of the pipeline, which FFCV does
on the first epoch). Prints one JSON line.
"""
import argparse, json, os, sys, time

VENV = os.environ.get("FFCV_VENV", os.path.expanduser("~/.cache/ringfeed-bench/ffcv-venv"))


def reexec_in_venv():
    vpy = os.path.join(VENV, "bin", "python3")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(vpy):
        sys.exit(f"ffcv_side: no FFCV virtualenv at {VENV}; run: bash benches/peers/install_ffcv.sh")
    os.execv(vpy, [vpy, os.path.abspath(__file__)] + sys.argv[1:])


def arm_timeout(seconds, what):
    """A hang (e.g. FFCV's EpochIterator thread dying, which leaves the main
    thread blocked on its queue forever) fails in bounded time."""
    if seconds <= 0:
        return
    import faulthandler, signal
    def fire(*_):
        sys.stderr.write(f"ffcv_side: {what} did not finish in {seconds} s; thread stacks:\n")
        faulthandler.dump_traceback(all_threads=True)
        sys.stderr.flush()
        os._exit(3)
    signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    # Backstop if the main thread cannot run the handler (a C call holding the GIL).
    faulthandler.dump_traceback_later(seconds + 15, exit=True)


def guard_thread_errors():
    """FFCV runs the pipeline in a daemon thread (EpochIterator.run); an
    exception there (other than StopIteration) kills the thread and the main
    thread then waits on output_queue.get() forever. Fail fast instead."""
    import threading, traceback
    def hook(args):
        sys.stderr.write(f"ffcv_side: exception in FFCV thread {args.thread.name if args.thread else '?'}:\n")
        traceback.print_exception(args.exc_type, args.exc_value, args.exc_traceback, file=sys.stderr)
        sys.stderr.flush()
        os._exit(4)
    threading.excepthook = hook


def limited_folder(folder, limit):
    """N files evenly spaced over the sorted list, as class/file.jpg symlinks
    in a temp dir (the harness's file_set)."""
    import glob, tempfile
    files = sorted(glob.glob(os.path.join(folder, "*", "*.jpg")))
    if not files:
        sys.exit(f"ffcv_side: no */*.jpg under {folder}")
    if limit and limit < len(files):
        files = [files[i * len(files) // limit] for i in range(limit)]
    tmp = tempfile.mkdtemp(prefix="ffcv-side-")
    for f in files:
        d = os.path.join(tmp, os.path.basename(os.path.dirname(f)))
        os.makedirs(d, exist_ok=True)
        os.symlink(os.path.realpath(f), os.path.join(d, os.path.basename(f)))
    return tmp, len(files)


def write(a):
    import shutil
    from torchvision.datasets import ImageFolder
    from ffcv.writer import DatasetWriter
    from ffcv.fields import RGBImageField, IntField
    folder, tmp = a.folder, None
    if a.limit:
        tmp, _ = limited_folder(a.folder, a.limit)
        folder = tmp
    try:
        # ImageFolder's loader: PIL, converted to RGB (grayscale photos become 3 channels).
        ds = ImageFolder(folder)
        # FFCV's ImageNet example (examples/imagenet/write_imagenet.py) writes
        # RGBImageField(write_mode=..., max_resolution=..., jpeg_quality=90).
        # Here: every image as JPEG, not resized (max_resolution=None), so all
        # loaders start from the same pixels; FFCV always decodes and
        # re-encodes (cv2.imencode) -- quality 95 keeps that close to the source.
        writer = DatasetWriter(a.beton, {
            "image": RGBImageField(write_mode="jpg", max_resolution=a.max_resolution, jpeg_quality=a.jpeg_quality),
            "label": IntField(),
        }, num_workers=a.threads)
        t = time.perf_counter()
        writer.from_indexed_dataset(ds, chunksize=100)
        print(json.dumps({"written": len(ds), "beton": a.beton, "bytes": os.path.getsize(a.beton),
                          "seconds": time.perf_counter() - t, "jpeg_quality": a.jpeg_quality,
                          "max_resolution": a.max_resolution}), flush=True)
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


def load(a):
    import numpy as np
    import torch
    import numba, ffcv
    from importlib.metadata import version
    from ffcv.loader import Loader, OrderOption
    from ffcv.fields.decoders import IntDecoder, RandomResizedCropRGBImageDecoder, CenterCropRGBImageDecoder
    from ffcv.transforms import RandomHorizontalFlip, ToTensor, ToTorchImage, NormalizeImage, Squeeze

    # FFCV's ImageNet example (examples/imagenet/train_imagenet.py): means/stds
    # in 0-255 units, decoder -> flip -> ToTensor -> ToDevice -> ToTorchImage
    # -> NormalizeImage(float16) on the GPU. CPU equivalent: NormalizeImage
    # runs in its JIT (CPU) mode on the HWC uint8 array before ToTensor, with
    # float32 output; ToTorchImage(channels_last=False) then makes a
    # contiguous NCHW copy (the example's default channels_last=True would
    # hand out an NCHW-shaped channels_last view instead).
    mean = np.array([0.485, 0.456, 0.406]) * 255
    std = np.array([0.229, 0.224, 0.225]) * 255
    tail = [NormalizeImage(mean, std, np.float32), ToTensor(), ToTorchImage(channels_last=a.channels_last)]
    if a.normalize_last:
        # The example's order without ToDevice: on CPU NormalizeImage is a JIT
        # op after non-JIT ones, and ffcv 1.0.2's Graph.group_operations loops
        # forever inside Loader() (the hang; NOTES-ffcv.md). For reproducing only.
        tail = [ToTensor(), ToTorchImage(channels_last=a.channels_last), NormalizeImage(mean, std, np.float32)]
    if a.pipeline == "train":
        image = [RandomResizedCropRGBImageDecoder((224, 224)), RandomHorizontalFlip()] + tail
        order = OrderOption.RANDOM
    else:
        image = [CenterCropRGBImageDecoder((224, 224), ratio=224 / 256)] + tail
        order = OrderOption.SEQUENTIAL
    label = [IntDecoder(), ToTensor(), Squeeze()]
    config = (f"{a.pipeline}: {'RandomResizedCropRGBImageDecoder((224,224)) + RandomHorizontalFlip' if a.pipeline == 'train' else 'CenterCropRGBImageDecoder((224,224), ratio=224/256)'}"
              f" + NormalizeImage(f32, CPU JIT) + ToTensor + ToTorchImage(channels_last={a.channels_last}); "
              f"order={order.name}, num_workers={a.threads}, os_cache=True, batch={a.batch}, drop_last=False, "
              f"batches_ahead={a.batches_ahead}; numba threading layer {{layer}}")

    guard_thread_errors()
    arm_timeout(a.timeout, f"one {a.pipeline} epoch")
    images, first = 0, None
    t0 = time.perf_counter()
    loader = Loader(a.beton, batch_size=a.batch, num_workers=a.threads, order=order, os_cache=True,
                    drop_last=False, batches_ahead=a.batches_ahead, pipelines={"image": image, "label": label})
    expected = loader.reader.num_samples
    for x, y in loader:
        if first is None:
            first = time.perf_counter() - t0
            if a.check:
                assert x.dtype == torch.float32 and x.device.type == "cpu" and tuple(x.shape[1:]) == (3, 224, 224), (x.dtype, x.shape)
                assert x.is_contiguous() or a.channels_last, x.stride()
                assert y.dtype == torch.int64 and y.shape == (x.shape[0],), (y.dtype, y.shape)
                sys.stderr.write(f"first batch {tuple(x.shape)} {x.dtype} stride {x.stride()} mean {x.mean():.3f} std {x.std():.3f} labels {y[:8].tolist()}\n")
        images += x.shape[0]
        del x, y
    seconds = time.perf_counter() - t0
    import signal, faulthandler
    signal.alarm(0)
    faulthandler.cancel_dump_traceback_later()
    if images != expected:
        sys.exit(f"ffcv_side: epoch gave {images} images, the .beton holds {expected}")
    try:
        layer = numba.threading_layer()
    except Exception:
        layer = "n/a (no parallel region ran)"
    print(json.dumps({"images": images, "seconds": seconds, "first_batch_s": first,
                      "version": f"ffcv {version('ffcv')}, numba {numba.__version__}",
                      "config": config.format(layer=layer)}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="write the .beton from --folder (not timed)")
    ap.add_argument("--folder")
    ap.add_argument("--beton", required=True)
    ap.add_argument("--limit", type=int, default=0, help="--write only: N files evenly spaced over the sorted list")
    ap.add_argument("--jpeg-quality", type=int, default=95)
    ap.add_argument("--max-resolution", type=int, default=None)
    ap.add_argument("--pipeline", choices=["train", "val"], default="train")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches-ahead", type=int, default=3)
    ap.add_argument("--channels-last", action="store_true", help="hand out ToTorchImage's channels_last view (no copy)")
    ap.add_argument("--timeout", type=int, default=int(os.environ.get("FFCV_SIDE_TIMEOUT", "850")),
                    help="fail after this many seconds (0: never)")
    ap.add_argument("--normalize-last", action="store_true",
                    help="reproduce the hang: the ImageNet example's order (NormalizeImage after ToTorchImage) on CPU")
    ap.add_argument("--check", action="store_true", help="assert and print the first batch's dtype/shape")
    a = ap.parse_args()
    if a.write:
        if not a.folder:
            sys.exit("ffcv_side: --write needs --folder")
        arm_timeout(a.timeout * 2, "writing the .beton")
        write(a)
    else:
        if not os.path.exists(a.beton):
            sys.exit(f"ffcv_side: no .beton at {a.beton}; write it with --write --folder DIR --beton {a.beton}")
        load(a)


if __name__ == "__main__":
    reexec_in_venv()
    main()
