#!/usr/bin/env python3
"""Pixel agreement with Pillow on the shared photo set: for random crop boxes
(RandomResizedCrop-like: area 8-100%, aspect 3/4-4/3), Pillow's antialiased
bilinear resize of the box to 224x224 (what torchvision does on PIL images)
against ringfeed-decode's output for the same box, which decodes only the
box's region and at a reduced DCT scale when the box is large.

usage: benches/decode_vs_pil.py [--limit N] [--src DIR] [--json]
Prints the mean absolute difference (levels of 255) over all boxes and over
the DCT-scaled ones (with --json, one object: {"all": {n, mean, p99, max},
"dct_scaled": {...}, "pillow": version}; benches/harness.py reads it).
"""
import argparse, json, math, os, random, subprocess, sys, tempfile
from pathlib import Path

from PIL import Image

root = Path(__file__).resolve().parent.parent
ap = argparse.ArgumentParser()
ap.add_argument("--limit", type=int, default=500)
ap.add_argument("--json", action="store_true")
ap.add_argument("--src", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "imagefolder/train"))
a = ap.parse_args()
paths = sorted(str(p) for p in Path(a.src).rglob("*.jpg"))
rng = random.Random(0)
paths = rng.sample(paths, min(a.limit, len(paths)))
subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "ringfeed-examples", "--example", "decode_mad"], cwd=root, check=True)
with tempfile.TemporaryDirectory() as tmp:
    cases = []
    for i, p in enumerate(paths):
        im = Image.open(p).convert("RGB")
        W, H = im.size
        area = W * H * rng.uniform(0.08, 1.0)
        ar = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
        w, h = min(W, round(math.sqrt(area * ar))), min(H, round(math.sqrt(area / ar)))
        l, t = rng.randint(0, W - w), rng.randint(0, H - h)
        ref = os.path.join(tmp, f"{i}.rgb")
        Path(ref).write_bytes(im.resize((224, 224), Image.BILINEAR, box=(l, t, l + w, t + h)).tobytes())
        cases.append({"image": p, "box": [l, t, w, h], "size": 224, "reference": ref})
    Path(tmp, "cases.json").write_text(json.dumps(cases))
    r = subprocess.run([str(root / "target/release/examples/decode_mad"), os.path.join(tmp, "cases.json")],
                       check=True, capture_output=True, text=True)
res = json.loads(r.stdout)
if a.json:
    print(json.dumps(dict(res, pillow=Image.__version__)))
    sys.exit(0)
print(f"{len(paths)} photos, one random box each, 224x224, Pillow {Image.__version__}:")
for k, v in res.items():
    print(f"  {k}: {v['n']} boxes, mean absolute difference {v['mean']:.3f} levels (p99 {v['p99']:.3f}, max {v['max']:.3f})")
