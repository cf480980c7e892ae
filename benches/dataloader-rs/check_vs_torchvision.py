#!/usr/bin/env python3
"""Checks dataloader-rs-peer's items against Pillow + torchvision (v1).

usage: check_vs_torchvision.py DUMP_DIR
  where DUMP_DIR was written by `dataloader-rs-peer ... --dump-dir DUMP_DIR`.
For every dumped item: the same file decoded by Pillow, converted to RGB,
then (train) the same crop box resized to 224 with bilinear + the same flip,
or (val) Resize(256) + CenterCrop(224), ToTensor + Normalize; prints the
mean / max absolute difference in levels of 255 (the decoders differ:
zune-jpeg against Pillow's libjpeg-turbo, so ~0.5-1.5 levels is expected),
and checks that the val resized size and center-crop offsets agree.
"""
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import transforms as v1
from torchvision.transforms import functional as F

mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
norm = v1.Compose([v1.ToTensor(), v1.Normalize(mean, std)])
std_t = torch.tensor(std).view(3, 1, 1)
diffs, worst, n = [], 0.0, 0
for txt in sorted(Path(sys.argv[1]).glob("*.txt"), key=lambda p: int(p.stem)):
    path, label, size, rec = txt.read_text().split("\n")[:4]
    img = Image.open(path).convert("RGB")
    assert tuple(map(int, size.split())) == img.size, (path, size, img.size)
    kind, *v = rec.split()
    v = list(map(int, v))
    if kind == "train":
        top, left, h, w, flip = v
        out = F.resized_crop(img, top, left, h, w, [224, 224], interpolation=v1.InterpolationMode.BILINEAR)
        if flip:
            out = F.hflip(out)
    else:
        rw, rh, top, left = v
        resized = v1.Resize(256)(img)
        assert resized.size == (rw, rh), (path, resized.size, (rw, rh))
        out = v1.CenterCrop(224)(resized)
        # torchvision's own center-crop offsets
        assert (int(round((rh - 224) / 2.0)), int(round((rw - 224) / 2.0))) == (top, left)
    ref = norm(out)
    ours = torch.from_numpy(np.fromfile(txt.with_suffix(".f32"), dtype="<f4").reshape(3, 224, 224))
    d = ((ours - ref) * std_t * 255).abs()
    diffs.append(d.mean().item())
    worst = max(worst, d.max().item())
    n += 1
print(f"{n} items: mean |diff| {np.mean(diffs):.3f} levels (per-item max of means {np.max(diffs):.3f}), max {worst:.1f} levels")
