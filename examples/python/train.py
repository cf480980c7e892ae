#!/usr/bin/env python3
"""Train torchvision's ResNet-18 on a ringfeed dataset, with exact resume.

The loader is ringfeed's (``ringfeed.Loader``: RandomResizedCrop + flip +
normalize on ringfeed's worker cores, batches handed to torch without a
copy); the rest is an ordinary PyTorch loop. A checkpoint holds the model,
the optimizer and the loader's state (a few integers): resumed, the run
sees exactly the batches the stopped run would have seen next, so N steps
straight and N/2 + resume + N/2 end with the same weights.

    python3 examples/python/train.py --data ~/.cache/ringfeed-bench/imagefolder/train \\
        --steps 100 --checkpoint target/ckpt-py
    # later, to step 200:
    python3 examples/python/train.py --data ... --steps 200 --checkpoint target/ckpt-py --resume

``--data`` is a pack (``ringfeed pack``) or an ImageFolder tree, packed
into ``<checkpoint>/data.rf`` on first use. ``--format dcp`` saves with
``torch.distributed.checkpoint`` (the loader is a ``Stateful``), ``torch``
(default) with ``torch.save``. Each step prints a JSON line (step, loss,
data wait); the last line is a summary. Runs on CUDA when torch has it.
"""

import argparse
import json
import os
import pathlib
import time

import torch
import torchvision

import ringfeed


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="pack dataset, or an ImageFolder tree to pack")
    ap.add_argument("--steps", type=int, default=100, help="train until this many steps in total")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=128, help="RandomResizedCrop side")
    ap.add_argument("--lr", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cores", type=int, default=None, help="loader cores (default: this process's share)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the model")
    ap.add_argument("--checkpoint", help="directory for checkpoints")
    ap.add_argument("--every", type=int, default=50, help="checkpoint every N steps (and at the end)")
    ap.add_argument("--format", choices=["torch", "dcp"], default="torch")
    ap.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    return ap.parse_args()


def dataset(args):
    data = pathlib.Path(args.data).expanduser()
    if (data / "manifest.json").exists():
        return data
    if not args.checkpoint:
        raise SystemExit("--data is not a pack: give --checkpoint, where it is packed")
    packed = pathlib.Path(args.checkpoint) / "data.rf"
    if not (packed / "manifest.json").exists():
        ringfeed.pack(data, packed)
    return packed


class Run:
    """Model, optimizer, loader and step count: what a checkpoint holds."""

    def __init__(self, args, device):
        torch.manual_seed(args.seed)
        self.loader = ringfeed.Loader(dataset(args), batch_size=args.batch, seed=args.seed, pipeline="train",
                                      size=args.size, cores=args.cores, epochs=1)
        self.model = torchvision.models.resnet18(num_classes=max(2, len(self.loader.classes))).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=args.lr, momentum=0.9, weight_decay=1e-4)
        self.step = 0

    def state_dict(self):
        return {"model": self.model.state_dict(), "optim": self.opt.state_dict(),
                "loader": self.loader.state_dict(), "step": self.step}

    def load_state_dict(self, sd):
        self.model.load_state_dict(sd["model"])
        self.opt.load_state_dict(sd["optim"])
        self.loader.load_state_dict(sd["loader"])
        self.step = int(sd["step"])


def save(run, args):
    path = pathlib.Path(args.checkpoint)
    path.mkdir(parents=True, exist_ok=True)
    if args.format == "torch":
        tmp = path / "ckpt.pt.tmp"
        torch.save(run.state_dict(), tmp)
        os.replace(tmp, path / "ckpt.pt")  # a crash leaves the previous checkpoint whole
    else:
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

        state = {"model": get_model_state_dict(run.model), "optim": get_optimizer_state_dict(run.model, run.opt),
                 "loader": run.loader, "step": run.step}
        dcp.save(state, checkpoint_id=str(path / f"dcp-{run.step}"))
        (path / "dcp-latest").write_text(str(run.step))


def load(run, args):
    path = pathlib.Path(args.checkpoint)
    if args.format == "torch":
        run.load_state_dict(torch.load(path / "ckpt.pt", weights_only=False))
        return
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (get_model_state_dict, get_optimizer_state_dict,
                                                         set_model_state_dict, set_optimizer_state_dict)

    step = int((path / "dcp-latest").read_text())
    state = {"model": get_model_state_dict(run.model), "optim": get_optimizer_state_dict(run.model, run.opt),
             "loader": run.loader, "step": 0}
    dcp.load(state, checkpoint_id=str(path / f"dcp-{step}"))  # the loader loads itself (Stateful)
    set_model_state_dict(run.model, state["model"])
    set_optimizer_state_dict(run.model, run.opt, state["optim"])
    run.step = int(state["step"])


def main():
    args = parse()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run = Run(args, device)
    if args.resume:
        load(run, args)
    run.model.train()
    loss_fn = torch.nn.CrossEntropyLoss()
    started, waited, images = time.perf_counter(), 0.0, 0
    while run.step < args.steps:
        it = iter(run.loader)  # one epoch; the next iter() is the next epoch
        while run.step < args.steps:
            t0 = time.perf_counter()
            batch = next(it, None)
            if batch is None:
                break
            x, y = batch
            t1 = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = loss_fn(run.model(x), y)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            run.opt.step()
            run.step += 1
            images += len(y)
            waited += t1 - t0
            print(json.dumps({"step": run.step, "epoch": batch.epoch, "loss": round(loss.item(), 6),
                              "wait_ms": round((t1 - t0) * 1e3, 2),
                              "step_ms": round((time.perf_counter() - t0) * 1e3, 2)}), flush=True)
            if args.checkpoint and (run.step % args.every == 0 or run.step == args.steps):
                save(run, args)
        del it
    secs = time.perf_counter() - started
    with torch.no_grad():
        digest = sum(float(p.double().sum()) for p in run.model.parameters())
    print(json.dumps({"done": run.step, "images_per_s": round(images / secs, 1) if secs else None,
                      "data_wait_share": round(waited / secs, 4) if secs else None, "param_sum": digest}),
          flush=True)


if __name__ == "__main__":
    main()
