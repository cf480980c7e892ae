#!/usr/bin/env python3
"""Data-parallel training under torchrun, each rank fed by its own ringfeed loader.

    torchrun --standalone --nproc_per_node 2 examples/python/ddp_train.py --data DS.rf --epochs 2 \\
        --checkpoint target/ddp-ckpt --step-log target/ddp-log

torch.distributed runs with the gloo backend (CPU, loopback). Each rank's
``ringfeed.Loader`` takes its rank and world size from torchrun's ``RANK``
and ``WORLD_SIZE`` and its worker cores from its share of the CPUs
(``LOCAL_RANK`` of ``LOCAL_WORLD_SIZE``): nothing rank-specific is passed.
The model is deliberately tiny (a linear layer on each record's length, in
``DistributedDataParallel``): the point is the data, every rank's batches
meeting at each step's all-reduce.

``--step-log DIR``: each rank appends one JSON line per step to
``DIR/rank<R>.jsonl`` (epoch, batch index, record indices), which the test
compares across ranks and with ``ringfeed order``. ``--checkpoint DIR``:
every ``--every`` steps each rank saves model, optimizer and its loader's
state to ``DIR/rank<R>.pt`` (written to a temporary name and renamed);
``--resume`` continues from them, exactly; with another number of ranks
only from a checkpoint at an epoch boundary (any shuffle: an epoch's order
depends on the seed and the epoch, the world size only splits it), which
``--every`` equal to the batches per epoch gives. ``--crash-after N`` makes every
rank exit abruptly after step N (after that step's checkpoint), as a
killed job would.
"""

import argparse
import json
import os
import pathlib

import torch
import torch.distributed as dist

import ringfeed


def parse():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="pack dataset")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--checkpoint", help="directory for per-rank checkpoints")
    ap.add_argument("--every", type=int, default=3, help="checkpoint every N steps")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--step-log", help="directory for per-rank step logs")
    ap.add_argument("--crash-after", type=int, default=None, help="exit abruptly after this step")
    return ap.parse_args()


def main():
    args = parse()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(args.seed)
    model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    step, start_epoch, loader_state = 0, 0, None
    ckpt = pathlib.Path(args.checkpoint) / f"rank{rank}.pt" if args.checkpoint else None
    if args.resume and ckpt is not None:
        # Model and optimizer are the same on every rank (DDP); the loader's
        # state is this rank's part of the epoch, valid for the same world
        # size only. Another world size can take over at an epoch boundary:
        # the epoch's order does not depend on the world, only its split.
        state = torch.load(ckpt.with_name("rank0.pt"), weights_only=False)
        saved_world = state["world"]
        if saved_world == world:
            state = torch.load(ckpt, weights_only=False)
            loader_state = state["loader"]
        else:
            at = json.loads(state["loader"]["state"])
            if at["next_batch"] != 0:
                raise SystemExit(f"rank {rank}: the checkpoint was taken by {saved_world} ranks in the middle of "
                                 f"epoch {at['epoch']}; resume with {saved_world} ranks, or from a checkpoint "
                                 f"at an epoch boundary to change the world size")
            start_epoch = at["epoch"]
        model.module.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step = state["step"]
    # Epochs 0..args.epochs in all: a run taken over at an epoch boundary
    # plans the rest from there.
    loader = ringfeed.Loader(args.data, batch_size=args.batch, seed=args.seed, epochs=args.epochs - start_epoch,
                             start_epoch=start_epoch, drop_last=True)
    if loader_state is not None:
        loader.load_state_dict(loader_state)
    log = None
    if args.step_log:
        pathlib.Path(args.step_log).mkdir(parents=True, exist_ok=True)
        log = open(pathlib.Path(args.step_log) / f"rank{rank}.jsonl", "a")
    for batch in loader:
        payloads, labels = batch
        x = torch.tensor([[len(p) / 100.0] for p in payloads])
        loss = torch.nn.functional.mse_loss(model(x), labels.float().unsqueeze(1))
        opt.zero_grad()
        loss.backward()  # the all-reduce: every rank must bring a batch
        opt.step()
        step += 1
        if log:
            log.write(json.dumps({"step": step, "epoch": batch.epoch, "batch": batch.batch_index,
                                  "indices": batch.indices, "world": world}) + "\n")
            log.flush()
        if ckpt is not None and step % args.every == 0:
            ckpt.parent.mkdir(parents=True, exist_ok=True)
            tmp = ckpt.with_suffix(".tmp")
            torch.save({"model": model.module.state_dict(), "optim": opt.state_dict(),
                        "loader": loader.state_dict(), "step": step, "world": world}, tmp)
            os.replace(tmp, ckpt)
        if args.crash_after is not None and step == args.crash_after:
            os._exit(17)  # killed: no cleanup, no barrier
    print(json.dumps({"rank": rank, "world": world, "steps": step}), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
