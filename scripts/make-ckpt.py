#!/usr/bin/env python3
"""Writes the checkpoint benchmark's test files: a 1.24B-parameter model laid
out like Llama-3.2-1B (16 layers, hidden 2048, MLP 8192, 8 KV heads, tied
128,256-token embedding), bf16 weights, f32 norms and RoPE frequencies, an
i64 step and a u8 mask: 149 tensors, 2.47 GB. Random values (torch.manual_seed(0));
nothing is downloaded.

usage: scripts/make-ckpt.py [--out DIR] [--layers 16] [--force]

Files: DIR/model.safetensors (safetensors.torch.save_file, metadata
format=pt) and DIR/model.pt (torch.save of the same dict), DIR defaulting to
$BENCH_DATA/ckpt or ~/.cache/ringfeed-bench/ckpt.
"""
import argparse, os, time
from pathlib import Path

ap = argparse.ArgumentParser()
ap.add_argument("--out", default=os.path.join(os.environ.get("BENCH_DATA", os.path.expanduser("~/.cache/ringfeed-bench")), "ckpt"))
ap.add_argument("--layers", type=int, default=16)
ap.add_argument("--force", action="store_true")
a = ap.parse_args()

import torch
from safetensors.torch import save_file

out = Path(a.out)
out.mkdir(parents=True, exist_ok=True)
st, pt = out / "model.safetensors", out / "model.pt"
if st.exists() and pt.exists() and not a.force:
    print(f"{st} and {pt} exist (--force to rewrite)")
    raise SystemExit(0)
torch.manual_seed(0)
started = time.time()
hidden, mlp, kv, vocab = 2048, 8192, 512, 128256
w = lambda *shape: torch.randn(*shape, dtype=torch.bfloat16)
tensors = {"model.embed_tokens.weight": w(vocab, hidden)}
for i in range(a.layers):
    p = f"model.layers.{i}."
    tensors.update({
        p + "self_attn.q_proj.weight": w(hidden, hidden),
        p + "self_attn.k_proj.weight": w(kv, hidden),
        p + "self_attn.v_proj.weight": w(kv, hidden),
        p + "self_attn.o_proj.weight": w(hidden, hidden),
        p + "mlp.gate_proj.weight": w(mlp, hidden),
        p + "mlp.up_proj.weight": w(mlp, hidden),
        p + "mlp.down_proj.weight": w(hidden, mlp),
        p + "input_layernorm.weight": torch.ones(hidden, dtype=torch.float32),
        p + "post_attention_layernorm.weight": torch.ones(hidden, dtype=torch.float32),
    })
tensors["model.norm.weight"] = torch.ones(hidden, dtype=torch.float32)
tensors["model.rotary_emb.inv_freq"] = 1.0 / (500000 ** (torch.arange(0, 64, 2, dtype=torch.float32) / 64))
tensors["train.step"] = torch.tensor(12345, dtype=torch.int64)
tensors["train.loss_mask"] = (torch.rand(4096) > 0.5).to(torch.uint8)
save_file(tensors, str(st), metadata={"format": "pt"})
torch.save(tensors, str(pt))
n = sum(t.numel() for t in tensors.values())
print(f"{st}: {len(tensors)} tensors, {n / 1e9:.2f}B parameters, {st.stat().st_size / 1e9:.2f} GB; "
      f"{pt}: {pt.stat().st_size / 1e9:.2f} GB; {time.time() - started:.0f} s")
