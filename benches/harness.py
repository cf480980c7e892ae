#!/usr/bin/env python3
"""ringfeed against the loaders people use, side by side, in one run.

usage: benches/harness.py [--limit N] [--batch 64] [--caches warm,cold] [--pipelines train,val] [--data DIR]
                          [--peers dali,spdl,ffcv,dataloader-rs] [--dataloader full|best]
       benches/harness.py --plot-only      (redraw the plot from target/bench/harness.json)

Sides: ringfeed through Rust (the CLI, below) and through Python (the
`ringfeed` package, `pip install ./python`: `ringfeed.Loader`, batches as
torch tensors through DLPack); NVIDIA DALI's CPU pipeline, SPDL, FFCV
(benches/peers/*_side.py, installed by benches/peers/install*.sh),
dataloader-rs (benches/dataloader-rs, a Rust binary); PyTorch's DataLoader.
Each peer is configured the way its documentation recommends for CPU, with
equivalent transforms (benches/peers/NOTES*.md, benches/dataloader-rs/NOTES.md
say how and what each does differently); a peer that cannot be installed is
reported with the reason, not silently dropped.

Same photos, same transforms, same batch size, same number of cores.
The file set: N photos (--limit, default all 5,000) taken evenly spaced from
the sorted shared ImageFolder set ($BENCH_DATA or ~/.cache/ringfeed-bench,
imagefolder/train), linked into target/bench/harness-N/imagefolder
(class/file.jpg symlinks) and packed from there into
target/bench/harness-N/images.rf: the DataLoader side reads that folder,
ringfeed the pack of it, and the images each side reports are asserted
equal to N. Sides:
  PyTorch DataLoader + PIL + torchvision transforms (v1, ToTensor + Normalize),
  PyTorch DataLoader + torchvision.io.decode_jpeg + transforms v2 on uint8 tensors,
    each with num_workers 0, 1, 2 (and persistent_workers for 1 and 2),
    shuffle=True, torch.set_num_threads(1);
  ringfeed with 1 and 2 cores, the path a tch user gets: the CLI built with
    `--features tch` (copied to target/bench/ringfeed-tch), `ringfeed bench --pipeline train|val --dtype f32
    --tensors --io auto --no-digest`, i.e. each batch decoded on the worker
    cores into a libtorch tensor, handed out by Batch::into_tensors() and
    dropped by the consumer, as the DataLoader side drops its batches
    (`--io auto` picks buffered I/O when the set is under a quarter of RAM).
Train = RandomResizedCrop(224) + RandomHorizontalFlip; val = Resize(256) +
CenterCrop(224); both normalized f32 [B, 3, 224, 224].
ringfeed decodes only each crop's region, at a reduced DCT scale (1/2-1/8)
when the crop is large, so its pixels differ from a full decode: the run
measures that difference with benches/decode_vs_pil.py on the same files
(mean absolute difference in levels of 255 against Pillow's full decode +
the same box + the same resize).
Warm cache: the side's files (photos or shards) read just before; cold:
`echo 3 > /proc/sys/vm/drop_caches` before each run (root).
Reports img/s, time to first batch, and the peaks of summed RSS and summed
PSS (/proc/PID/smaps_rollup; a page shared by k processes counts 1/k in each,
so the DataLoader's forked workers are not counted twice for what they share)
over all processes of a run: RSS sampled every 20 ms, PSS in the same loop
but at most every 10x its own read cost (smaps_rollup walks page tables),
which keeps the sampler under ~10% of one core.
Calibration, in the same run, so readers can compare machines:
torchvision.io.decode_jpeg on one thread pinned to CPU 0 (taskset), full RGB
decode of the same N files from RAM, and fio on a 1 GiB file in target/bench
(direct=1, io_uring, QD32, 5 s each): 4k random-read IOPS and 128k
random-read MB/s.
Writes target/bench/harness.{json,md,png} and copies the plot to
docs/harness.png. Installs torch 2.13.0, torchvision 0.28.0, pillow,
matplotlib (pip), fio (apt-get) and libtorch (scripts/install-libtorch.sh)
if missing.
"""
import argparse, json, os, platform, shutil, subprocess, sys, threading, time
from pathlib import Path

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--limit", type=int, default=5000)
ap.add_argument("--batch", type=int, default=64)
ap.add_argument("--caches", default="warm,cold")
ap.add_argument("--pipelines", default="train,val")
ap.add_argument("--data", default=os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")))
ap.add_argument("--mad-images", type=int, default=500, help="photos (one random box each) for the pixel difference")
ap.add_argument("--fio-seconds", type=int, default=5)
# Development only: a CLI without the tch feature (rows are labelled so).
ap.add_argument("--without-tch", action="store_true", help=argparse.SUPPRESS)
ap.add_argument("--peers", default="dali,spdl,ffcv,dataloader-rs", help="peer loaders besides the DataLoader ('' for none)")
ap.add_argument("--dataloader", choices=["full", "best"], default="full",
                help="every DataLoader configuration (decoders x 0-2 workers x persistent), or only 2 persistent workers of each decoder")
ap.add_argument("--ringfeed-py-side", nargs=3, metavar=("PACK", "PIPELINE", "CORES"), help=argparse.SUPPRESS)
ap.add_argument("--torch-side", nargs=5, metavar=("FOLDER", "LOADER", "PIPELINE", "WORKERS", "PERSISTENT"), help=argparse.SUPPRESS)
ap.add_argument("--calibrate-decode", metavar="FOLDER", help=argparse.SUPPRESS)
ap.add_argument("--plot-only", action="store_true", help="redraw the plot from target/bench/harness.json")
a = ap.parse_args()

def jpegs(folder):
    """The photos of an ImageFolder tree, sorted by path (symlinks followed)."""
    return sorted(p for p in Path(folder).rglob("*.jpg"))

if a.torch_side:
    # One DataLoader configuration, timed from creation to the last batch.
    import torch, torchvision
    from torch.utils.data import DataLoader, Dataset
    from PIL import Image
    from torchvision import transforms as v1
    from torchvision.transforms import v2
    from torchvision.io import decode_jpeg, ImageReadMode
    folder, loader_kind, pipeline, workers, persistent = a.torch_side[0], a.torch_side[1], a.torch_side[2], int(a.torch_side[3]), a.torch_side[4] == "1"
    torch.set_num_threads(1)
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    files = jpegs(folder)
    classes = sorted({p.parent.name for p in files})
    if loader_kind == "pil":
        tf = v1.Compose(([v1.RandomResizedCrop(224), v1.RandomHorizontalFlip()] if pipeline == "train" else [v1.Resize(256), v1.CenterCrop(224)]) + [v1.ToTensor(), v1.Normalize(mean, std)])
        load = lambda p: tf(Image.open(p).convert("RGB"))
    else:
        tf = v2.Compose(([v2.RandomResizedCrop(224, antialias=True), v2.RandomHorizontalFlip()] if pipeline == "train" else [v2.Resize(256, antialias=True), v2.CenterCrop(224)]) + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])
        load = lambda p: tf(decode_jpeg(torchvision.io.read_file(str(p)), mode=ImageReadMode.RGB))

    class Folder(Dataset):
        def __len__(self):
            return len(files)
        def __getitem__(self, i):
            return load(files[i]), classes.index(files[i].parent.name)

    started = time.perf_counter()
    dl = DataLoader(Folder(), batch_size=a.batch, shuffle=True, num_workers=workers,
                    persistent_workers=persistent and workers > 0)
    first, n = None, 0
    for images, labels in dl:
        if first is None:
            first = time.perf_counter() - started
        n += images.shape[0]
    print(json.dumps({"images": n, "seconds": time.perf_counter() - started, "first_batch_s": first}))
    sys.exit(0)

if a.ringfeed_py_side:
    # ringfeed through its Python package, timed from creation to the last
    # batch, as the DataLoader side: each batch a torch tensor, dropped.
    import torch  # noqa: F401  (imported before the clock starts, as on the DataLoader side)
    import ringfeed
    pack, pipeline, cores = a.ringfeed_py_side[0], a.ringfeed_py_side[1], int(a.ringfeed_py_side[2])
    started = time.perf_counter()
    loader = ringfeed.Loader(pack, batch_size=a.batch, pipeline=pipeline, size=224, dtype="float32", cores=cores,
                             io="auto", shuffle="global", pin_memory=False)
    first, n = None, 0
    for images, labels in loader:
        if first is None:
            first = time.perf_counter() - started
        assert images.dtype.is_floating_point and tuple(images.shape[1:]) == (3, 224, 224)
        n += images.shape[0]
    print(json.dumps({"images": n, "seconds": time.perf_counter() - started, "first_batch_s": first,
                      "version": f"ringfeed {ringfeed.__version__}"}))
    sys.exit(0)

if a.calibrate_decode:
    # Full RGB decode of every photo with torchvision.io.decode_jpeg, one
    # thread (the caller pins the process to one CPU), all bytes in RAM.
    import torch, torchvision
    from torchvision.io import decode_jpeg, ImageReadMode
    torch.set_num_threads(1)
    blobs = [torchvision.io.read_file(str(p)) for p in jpegs(a.calibrate_decode)]
    for b in blobs[:8]:
        decode_jpeg(b, mode=ImageReadMode.RGB)
    pixels, started = 0, time.perf_counter()
    for b in blobs:
        img = decode_jpeg(b, mode=ImageReadMode.RGB)
        pixels += img.shape[1] * img.shape[2]
    secs = time.perf_counter() - started
    print(json.dumps({"images": len(blobs), "seconds": secs, "img_s": len(blobs) / secs, "mp_s": pixels / 1e6 / secs,
                      "torch": torch.__version__, "torchvision": torchvision.__version__}))
    sys.exit(0)

def ensure_deps():
    try:
        import torch, torchvision, PIL, matplotlib  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "torch==2.13.0", "torchvision==0.28.0", "pillow", "matplotlib"], check=True)
    if shutil.which("fio") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "fio"], check=True, stdout=subprocess.DEVNULL)

def tree_pids(pid):
    """A process and all its descendants (children of every thread)."""
    out, stack = [], [pid]
    while stack:
        p = stack.pop()
        out.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    stack.extend(int(c) for c in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
    return out

def summed_kb(pids, path, field):
    """A `field:` line in /proc/PID/`path` (kB), summed over `pids`."""
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/{path}") as f:
                total += next((int(l.split()[1]) for l in f if l.startswith(field)), 0)
        except (FileNotFoundError, ProcessLookupError):
            pass
    return total

def measured(cmd, env=None, allow_fail=False, timeout=None):
    """Runs `cmd`; returns its JSON output and the peaks of the summed RSS
    (VmRSS) and summed PSS (smaps_rollup Pss) of its process tree, in MB,
    and how PSS was sampled. RSS is sampled every 20 ms. PSS is sampled in
    the same loop, but reading smaps_rollup walks the page tables (~25 ms
    for a DataLoader with 2 workers on a busy 2-core VM), so a PSS sample is
    taken only once 10x the last one's cost has passed: the sampler then
    spends at most ~10% of one core and PSS is sampled every 20 ms to
    ~0.3 s."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    peak, pss_samples, started = [0, 0], [0], time.monotonic()
    def sample():
        next_pss = 0.0
        while proc.poll() is None:
            pids = tree_pids(proc.pid)
            peak[0] = max(peak[0], summed_kb(pids, "status", "VmRSS:"))
            now = time.monotonic()
            if now >= next_pss:
                peak[1] = max(peak[1], summed_kb(pids, "smaps_rollup", "Pss:"))
                pss_samples[0] += 1
                cost = time.monotonic() - now
                next_pss = now + max(0.02, 10 * cost)
            time.sleep(0.02)
    t = threading.Thread(target=sample)
    t.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)  # the whole session: a peer's worker processes too
        out, err = proc.communicate()
        err = f"timed out after {timeout} s; {err}"
        proc.returncode = -9
    t.join()
    if proc.returncode != 0:
        if allow_fail:
            return None, err.strip().splitlines()[-3:]
        sys.exit(f"{cmd}: {err}")
    secs = time.monotonic() - started
    return json.loads(out), peak[0] / 1024, peak[1] / 1024, {"pss_samples": pss_samples[0], "pss_interval_s": secs / max(1, pss_samples[0])}

def drop_caches():
    subprocess.run(["sync"], check=True)
    Path("/proc/sys/vm/drop_caches").write_text("3\n")

def file_set(all_files, n):
    """N photos evenly spaced over the sorted set (all of them when N >= the set)."""
    if n >= len(all_files):
        return list(all_files)
    return [all_files[i * len(all_files) // n] for i in range(n)]

def link_and_pack(rf, chosen, env):
    """target/bench/harness-N/imagefolder (symlinks, class/file.jpg) and its
    pack images.rf, rebuilt when the chosen files differ from the last run."""
    base = root / f"target/bench/harness-{len(chosen)}"
    folder, packed, listing = base / "imagefolder", base / "images.rf", base / "files.txt"
    names = "\n".join(str(p) for p in chosen) + "\n"
    if not (listing.exists() and listing.read_text() == names and (packed / "manifest.json").exists()):
        shutil.rmtree(base, ignore_errors=True)
        for p in chosen:
            (folder / p.parent.name).mkdir(parents=True, exist_ok=True)
            (folder / p.parent.name / p.name).symlink_to(p.resolve())
        subprocess.run([rf, "pack", "-q", str(folder), str(packed)], check=True, env=env)
        listing.write_text(names)
    info = json.loads(subprocess.run([rf, "inspect", "--json", str(packed)], check=True, capture_output=True, text=True, env=env).stdout)
    assert info["records"] == len(chosen) == len(jpegs(folder)), (info["records"], len(chosen))
    return folder, packed

def fio_randread(path, bs):
    r = subprocess.run(["fio", "--name=calibration", f"--filename={path}", "--size=1G", "--rw=randread", f"--bs={bs}",
                        "--iodepth=32", "--direct=1", "--ioengine=io_uring", f"--runtime={a.fio_seconds}", "--time_based",
                        "--output-format=json"], check=True, capture_output=True, text=True)
    read = json.loads(r.stdout[r.stdout.index("{"):])["jobs"][0]["read"]
    return {"iops": read["iops"], "mb_s": read["bw_bytes"] / 1e6}

def cpu_model():
    try:
        return next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()

def family(r):
    """Which loader a row is, whatever its configuration."""
    name = r["loader"]
    if name.startswith("ringfeed"):
        return "ringfeed (Python)" if "(Python)" in name else "ringfeed (Rust)"
    if name.startswith("DataLoader"):
        return "PyTorch DataLoader"
    return name.split(",")[0]

def plot(result):
    """target/bench/harness.png from a run's result, copied to docs/harness.png."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
        rows, cal = result["rows"], result["calibration"]
        cases = list(dict.fromkeys((r["cache"], r["pipeline"]) for r in rows))
        fig, axes = plt.subplots(2, len(cases), figsize=(max(10, 4.2 * len(cases) + 2), 8.5), squeeze=False)
        for col, (cache, pipeline) in enumerate(cases):
            sel = [r for r in rows if r["cache"] == cache and r["pipeline"] == pipeline]
            labels = [r["loader"].replace("DataLoader + ", "DL ").replace("num_workers=", "w=").replace(" (no tch: Batch::images)", "")
                      for r in sel]
            palette = {"ringfeed (Rust)": "tab:orange", "ringfeed (Python)": "tab:red", "PyTorch DataLoader": "tab:blue",
                       "DALI CPU pipeline": "tab:green", "SPDL": "tab:purple", "FFCV": "tab:brown", "dataloader-rs": "tab:gray"}
            colors = [palette.get(family(r), "tab:cyan") for r in sel]
            ax = axes[0][col]
            ax.barh(labels, [r["img_s"] for r in sel], color=colors)
            ax.set_title(f"{pipeline}, {cache} cache")
            ax.set_xlabel("images/s (higher is better)")
            ax.invert_yaxis()
            ax = axes[1][col]
            ax.barh(labels, [r["peak_rss_mb"] for r in sel], color="lightgray")
            ax.barh(labels, [r["peak_pss_mb"] for r in sel], color=colors, height=0.5)
            ax.set_xlabel("peak MB, summed over processes (lower is better)")
            ax.invert_yaxis()
            if col == len(cases) - 1:
                ax.legend(handles=[Patch(color="lightgray", label="RSS"), Patch(color="dimgray", label="PSS (narrow bars)")],
                          loc="lower right", fontsize="small")
        for row in axes:
            for ax in row[1:]:
                ax.set_yticklabels([])
        side = "ringfeed (tch tensors)" if "--tensors" in result["ringfeed_args"] else "ringfeed (no tch)"
        dec, f4, f128 = cal["decode_jpeg_1core"], cal["fio_4k_randread_qd32"], cal["fio_128k_randread_qd32"]
        fig.suptitle(f"{side} and ringfeed (Python) vs DALI, SPDL, FFCV, dataloader-rs, DataLoader: the same {result['photos']} photos, batch {result['batch']}, {cal['cpus']} CPUs\n"
                     f"calibration: decode_jpeg {dec['img_s']:.0f} img/s on 1 core; "
                     f"fio randread QD32 4k {f4['iops']:,.0f} IOPS, 128k {f128['mb_s']:,.0f} MB/s")
        fig.tight_layout()
        out = root / "target/bench/harness.png"
        fig.savefig(out, dpi=80)
        shutil.copy2(out, root / "docs/harness.png")
    except Exception as e:  # the plot is a convenience; the tables are the result
        print(f"plot skipped: {e}")

if a.plot_only:
    plot(json.loads((root / "target/bench/harness.json").read_text()))
    sys.exit(0)

ensure_deps()
src = Path(a.data) / "imagefolder/train"
all_files = jpegs(src)
if not all_files:
    sys.exit(f"no photos under {src}: build the shared set with ../shared/datasets/make.sh")
out_dir = root / "target/bench"
out_dir.mkdir(parents=True, exist_ok=True)

# The ringfeed CLI as a tch user builds it, copied so that other builds of
# target/release/ringfeed during the run cannot swap it.
env = dict(os.environ)
features = []
if not a.without_tch:
    subprocess.run([str(root / "scripts/install-libtorch.sh")], check=True)
    features = ["--features", "tch"]
    lib = str(root / ".libtorch/lib")
    env["LD_LIBRARY_PATH"] = lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-cli"] + features, cwd=root, check=True)
rf = str(out_dir / ("ringfeed-tch" if features else "ringfeed-plain"))
shutil.copy2(root / "target/release/ringfeed", rf)
tensor_args = []
if not a.without_tch:
    usage = subprocess.run([rf, "bench", "--help"], check=True, capture_output=True, text=True, env=env).stdout
    if "--tensors" not in usage:
        sys.exit("this ringfeed has no `bench --tensors` (the tch hand-off); the harness needs it")
    tensor_args = ["--tensors"]
rf_name = "ringfeed" + ("" if tensor_args else " (no tch: Batch::images)")

chosen = file_set(all_files, a.limit)
n_images = len(chosen)
folder, packed = link_and_pack(rf, chosen, env)
print(f"{n_images} photos of {len(all_files)}: {folder} (DataLoader) and {packed} (ringfeed)", flush=True)

# Calibration: one core's JPEG decoding and the disk, on this machine, now.
decode = json.loads(subprocess.run(["taskset", "-c", "0", sys.executable, __file__, "--calibrate-decode", str(folder)],
                                   check=True, capture_output=True, text=True).stdout)
fio_file = out_dir / "fio-calibration"
fio4k, fio128k = fio_randread(fio_file, "4k"), fio_randread(fio_file, "128k")
calibration = {
    "decode_jpeg_1core": decode,
    "fio_4k_randread_qd32": fio4k,
    "fio_128k_randread_qd32": fio128k,
    "cpu": cpu_model(),
    "cpus": os.cpu_count(),
}
print(f"calibration: decode_jpeg, 1 thread on CPU 0: {decode['img_s']:.0f} img/s ({decode['mp_s']:.0f} MP/s); "
      f"fio randread QD32 direct: 4k {fio4k['iops']:,.0f} IOPS, 128k {fio128k['mb_s']:,.0f} MB/s", flush=True)

# How far ringfeed's region + DCT-scaled decoding is from a full decode.
mad_n = min(a.mad_images, n_images)
mad_cmd = ["benches/decode_vs_pil.py", "--limit", str(mad_n), "--src", str(folder.relative_to(root)), "--json"]
pixels = json.loads(subprocess.run([sys.executable] + mad_cmd, cwd=root, check=True, capture_output=True, text=True).stdout)
pixels["command"] = " ".join(mad_cmd)
print(f"pixels vs full decode (Pillow) + same box + resize: MAD {pixels['all']['mean']:.2f} levels over {pixels['all']['n']} boxes, "
      f"{pixels['dct_scaled']['mean']:.2f} over the {pixels['dct_scaled']['n']} DCT-scaled ones", flush=True)

# The Python package, built from this checkout as a user installs it.
subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                "--root-user-action=ignore", str(root / "python")], check=True)
py_version = subprocess.run([sys.executable, "-c", "import ringfeed; print(ringfeed.__version__)"], check=True,
                            capture_output=True, text=True, cwd="/").stdout.strip()

# Peers: installed (pinned) and prepared before anything is timed; one that
# cannot be is reported, with the reason.
peers, unavailable = {}, {}
threads = os.cpu_count()
for peer in [x for x in a.peers.split(",") if x]:
    try:
        if peer in ("dali", "spdl"):
            subprocess.run(["bash", str(root / "benches/peers/install.sh"), peer], check=True, capture_output=True, text=True)
            script = str(root / f"benches/peers/{peer}_side.py")
            peers[peer] = lambda pipeline, script=script: [sys.executable, script, "--folder", str(folder), "--pipeline", pipeline,
                                                           "--batch", str(a.batch), "--threads", str(threads)]
        elif peer == "ffcv":
            subprocess.run(["bash", str(root / "benches/peers/install_ffcv.sh")], check=True, capture_output=True, text=True)
            beton = folder.parent / "images.beton"
            if not beton.exists() or beton.stat().st_mtime < (folder.parent / "files.txt").stat().st_mtime:
                subprocess.run([sys.executable, str(root / "benches/peers/ffcv_side.py"), "--write", "--folder", str(folder),
                                "--beton", str(beton)], check=True, capture_output=True, text=True)
            peers[peer] = lambda pipeline, beton=beton: [sys.executable, str(root / "benches/peers/ffcv_side.py"), "--beton",
                                                         str(beton), "--pipeline", pipeline, "--batch", str(a.batch),
                                                         "--threads", str(threads)]
        elif peer == "dataloader-rs":
            target = root / "target/dataloader-rs"
            subprocess.run(["cargo", "build", "--release", "--locked", "-q", "--manifest-path",
                            str(root / "benches/dataloader-rs/Cargo.toml")], check=True, capture_output=True, text=True,
                           env=dict(os.environ, CARGO_TARGET_DIR=str(target)))
            binary = str(target / "release/dataloader-rs-peer")
            peers[peer] = lambda pipeline, binary=binary: [binary, "--folder", str(folder), "--pipeline", pipeline,
                                                           "--batch", str(a.batch), "--workers", str(threads)]
        else:
            sys.exit(f"unknown peer {peer}")
    except subprocess.CalledProcessError as e:
        unavailable[peer] = f"setup failed: {(e.stderr or '').strip()[-400:]}"
        print(f"{peer}: {unavailable[peer]}", flush=True)
PEER_NAMES = {"dali": "DALI CPU pipeline", "spdl": "SPDL", "ffcv": "FFCV", "dataloader-rs": "dataloader-rs"}

rows, failures = [], []
for cache in a.caches.split(","):
    for pipeline in a.pipelines.split(","):
        configs = [(kind, cores, False) for kind in ("ringfeed", "ringfeed-py") for cores in (1, 2)]
        sweep = ((0, False), (1, False), (1, True), (2, False), (2, True)) if a.dataloader == "full" else ((2, True),)
        configs += [(kind, w, p) for kind in ("pil", "v2") for w, p in sweep]
        configs += [(peer, threads, False) for peer in peers]
        for kind, n, persistent in configs:
            if cache == "cold":
                drop_caches()
            else:  # warm: the files this side reads were just read
                if kind.startswith("ringfeed"):
                    inputs = [str(x) for x in packed.glob("*.rfp")]
                elif kind == "ffcv":
                    inputs = [str(folder.parent / "images.beton")]
                else:
                    inputs = [str(x) for x in jpegs(folder)]
                subprocess.run(["cat"] + inputs, stdout=subprocess.DEVNULL, check=True)
            if kind in peers:
                got = measured(peers[kind](pipeline), allow_fail=True, timeout=900)
                if got[0] is None:
                    failures.append({"loader": PEER_NAMES[kind], "cache": cache, "pipeline": pipeline, "error": got[1]})
                    print(f"{cache:4} {pipeline:5} {PEER_NAMES[kind]:55} failed: {got[1]}", flush=True)
                    continue
                out, rss, pss, sampling = got
                row = {"loader": f"{PEER_NAMES[kind]}, {n} threads", "images": out["images"],
                       "img_s": out["images"] / out["seconds"], "first_batch_s": out["first_batch_s"],
                       "version": out.get("version"), "config": out.get("config")}
            elif kind == "ringfeed-py":
                out, rss, pss, sampling = measured([sys.executable, __file__, "--batch", str(a.batch),
                                                    "--ringfeed-py-side", str(packed), pipeline, str(n)])
                row = {"loader": f"ringfeed (Python), {n} core{'s' if n > 1 else ''}", "images": out["images"],
                       "img_s": out["images"] / out["seconds"], "first_batch_s": out["first_batch_s"]}
            elif kind == "ringfeed":
                out, rss, pss, sampling = measured([rf, "bench", str(packed), "--json", "--pipeline", pipeline, "--dtype", "f32", "--no-digest",
                                          "--batch", str(a.batch), "--cores", str(n), "--io", "auto"] + tensor_args, env=env)
                row = {"loader": f"{rf_name} (Rust), {n} core{'s' if n > 1 else ''}", "images": out["samples"], "img_s": out["samples_per_sec"],
                       "first_batch_s": out["first_batch_ms"] / 1e3, "io": out["io"], "limit": out["limiting_stage"],
                       "batch_memory": out.get("batch_memory"), "worker_cpus": out.get("worker_cpus")}
                if tensor_args and out.get("batch_memory") != "tensor":
                    sys.exit(f"ringfeed bench --tensors did not hand out tensors: {out.get('batch_memory')}")
            else:
                out, rss, pss, sampling = measured([sys.executable, __file__, "--batch", str(a.batch),
                                          "--torch-side", str(folder), kind, pipeline, str(n), "1" if persistent else "0"])
                name = "DataLoader + PIL + torchvision" if kind == "pil" else "DataLoader + decode_jpeg + v2"
                row = {"loader": f"{name}, num_workers={n}{', persistent' if persistent else ''}", "images": out["images"],
                       "img_s": out["images"] / out["seconds"], "first_batch_s": out["first_batch_s"]}
            if row["images"] != n_images:
                if kind in peers:  # reported, not compared: it did other work
                    failures.append({"loader": row["loader"], "cache": cache, "pipeline": pipeline,
                                     "error": f"delivered {row['images']} images, expected {n_images}"})
                    continue
                sys.exit(f"{row['loader']} delivered {row['images']} images, expected {n_images}")
            row.update({"cache": cache, "pipeline": pipeline, "peak_rss_mb": rss, "peak_pss_mb": pss, **sampling})
            rows.append(row)
            print(f"{cache:4} {pipeline:5} {row['loader']:55} {row['img_s']:7.0f} img/s  first {row['first_batch_s']:.3f} s  "
                  f"RSS {rss:.0f} MB  PSS {pss:.0f} MB", flush=True)

result = {"photos": n_images, "of": len(all_files), "files": str(folder), "pack": str(packed), "batch": a.batch,
          "ringfeed_build": "cargo build --release --locked -p ringfeed-cli" + (" --features tch" if features else ""),
          "ringfeed_args": ["--pipeline", "train|val", "--dtype", "f32", "--no-digest", "--io", "auto"] + tensor_args,
          "calibration": calibration, "pixels": pixels, "rows": rows, "failures": failures,
          "unavailable": unavailable, "python_package": py_version}
(out_dir / "harness.json").write_text(json.dumps(result, indent=2))

scaled = pixels["dct_scaled"]
lines = [
    f"{n_images} photos (the same files on both sides), batch {a.batch}, {os.cpu_count()} CPUs ({calibration['cpu']}). "
    f"ringfeed: `{result['ringfeed_build']}`, `ringfeed bench {' '.join(result['ringfeed_args'])}`. "
    "Peak RSS and peak PSS are each summed over all processes of a run (RSS sampled every 20 ms, PSS every 20 ms "
    "or 10x its read cost, whichever is longer: `pss_interval_s` in the JSON); PSS counts a page shared by k processes 1/k in each.\n",
    "| calibration (this machine, this run) | figure |", "|---|---|",
    f"| `torchvision.io.decode_jpeg`, full RGB decode, 1 thread on CPU 0, same {decode['images']} files from RAM | "
    f"{decode['img_s']:.0f} img/s ({decode['mp_s']:.0f} MP/s) |",
    f"| fio randread 4k, QD32, direct, io_uring, {a.fio_seconds} s | {fio4k['iops']:,.0f} IOPS |",
    f"| fio randread 128k, QD32, direct, io_uring, {a.fio_seconds} s | {fio128k['mb_s']:,.0f} MB/s |",
    "",
    "| cache | pipeline | loader | images | img/s | first batch (s) | peak RSS (MB) | peak PSS (MB) |", "|---|---|---|---|---|---|---|---|"]
for r in rows:
    lines.append(f"| {r['cache']} | {r['pipeline']} | {r['loader']} | {r['images']} | {r['img_s']:.0f} | {r['first_batch_s']:.3f} | "
                 f"{r['peak_rss_mb']:.0f} | {r['peak_pss_mb']:.0f} |")
lines += ["", "ringfeed decodes only the crop's region, at a reduced DCT scale (1/2–1/8) when the crop is large enough, "
          f"so its pixels are not a full decode's: mean absolute difference of its u8 output against Pillow's full decode + the same box + "
          f"antialiased bilinear resize to 224×224: **{pixels['all']['mean']:.2f} levels** (of 255) over {pixels['all']['n']} random "
          f"RandomResizedCrop-like boxes (p99 {pixels['all']['p99']:.2f}), {scaled['mean']:.2f} over the {scaled['n']} DCT-scaled ones "
          f"(p99 {scaled['p99']:.2f}, max {scaled['max']:.2f}); `{pixels['command']}`.", ""]
summary, goals = [], []
# The README's table: per case, each loader's fastest configuration, and
# ringfeed through Python against each.
readme = ["| case | loader (fastest configuration) | img/s | ringfeed (Python) is | first batch (s) | peak PSS (MB) | peak RSS (MB) |",
          "|---|---|---|---|---|---|---|"]
for cache in a.caches.split(","):
    for pipeline in a.pipelines.split(","):
        sel = [r for r in rows if r["cache"] == cache and r["pipeline"] == pipeline]
        best = {}
        for r in sel:
            if family(r) not in best or r["img_s"] > best[family(r)]["img_s"]:
                best[family(r)] = r
        py = best.get("ringfeed (Python)")
        for fam, r in sorted(best.items(), key=lambda kv: -kv[1]["img_s"]):
            ratio = "—" if py is None or r is py else f"**{py['img_s'] / r['img_s']:.2f}×**"
            readme.append(f"| {cache}, {pipeline} | {fam} ({r['loader'].split(', ', 1)[-1] if ', ' in r['loader'] else ''}) | "
                          f"{r['img_s']:,.0f} | {ratio} | {r['first_batch_s']:.3f} | {r['peak_pss_mb']:,.0f} | {r['peak_rss_mb']:,.0f} |")
        if py is None:
            continue
        rust = best.get("ringfeed (Rust)")
        others = [r for f, r in best.items() if not f.startswith("ringfeed")]
        peer_best = max(others, key=lambda r: r["img_s"]) if others else None
        dl = best.get("PyTorch DataLoader")
        best_pss = peer_best["peak_pss_mb"] if peer_best else None
        summary.append(f"- {cache}, {pipeline}: ringfeed (Python) {py['img_s']:.0f} img/s"
                       + (f" = {py['img_s'] / rust['img_s']:.2f}× ringfeed (Rust) {rust['img_s']:.0f}" if rust else "")
                       + (f"; {py['img_s'] / peer_best['img_s']:.2f}× the best peer ({family(peer_best)}, {peer_best['img_s']:.0f})" if peer_best else "")
                       + (f"; {py['img_s'] / dl['img_s']:.2f}× the best DataLoader ({dl['img_s']:.0f})" if dl else "")
                       + f"; PSS {py['peak_pss_mb']:.0f} MB" + (f" (that peer's {best_pss:.0f} MB)" if best_pss else "")
                       + f"; first batch {py['first_batch_s']:.3f} s")
        if rust:
            goals.append((f"{cache} {pipeline}: Python ≥ 0.95× Rust", py["img_s"] / rust["img_s"], 0.95))
        if peer_best:
            goals.append((f"{cache} {pipeline}: Python ≥ {1.8 if pipeline == 'train' else 2.0}× best peer ({family(peer_best)})",
                          py["img_s"] / peer_best["img_s"], 1.8 if pipeline == "train" else 2.0))
            goals.append((f"{cache} {pipeline}: PSS ≤ ½ the best peer's ({family(peer_best)})", best_pss / py["peak_pss_mb"], 2.0))
        if dl:
            goals.append((f"{cache} {pipeline}: Python ≥ 2.5× DataLoader", py["img_s"] / dl["img_s"], 2.5))
        goals.append((f"{cache} {pipeline}: first batch ≤ 0.1 s", 0.1 / max(py["first_batch_s"], 1e-9), 1.0))
goal_lines = ["", "Goals (issue #18), this run:", ""] + [f"- {'met' if v >= need else 'NOT met'}: {name} ({v:.2f} vs {need})"
                                                         for name, v, need in goals]
notes = [f"- {p}: unavailable ({why})" for p, why in unavailable.items()] + \
        [f"- {f['loader']} {f['cache']} {f['pipeline']}: failed ({f['error']})" for f in failures]
(out_dir / "harness.md").write_text("\n".join(lines + summary + goal_lines + notes + ["", "For the README:", ""] + readme) + "\n")
print("\n".join([""] + summary + goal_lines + notes))
plot(result)
