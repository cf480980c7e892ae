"""examples/python/ddp_train.py under torchrun: every record once per epoch
across ranks, equal batch counts, `ringfeed order`'s global order, and an
exact resume after every rank was killed mid-epoch."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "python" / "ddp_train.py"


def torchrun(n, *args, check=True):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}", str(EXAMPLE), *args]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cmd, capture_output=True, text=True, check=check, env=env)


def steps(log, world):
    return [[json.loads(l) for l in (log / f"rank{r}.jsonl").read_text().splitlines()] for r in range(world)]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_cover_each_epoch_in_the_global_order(text_pack, cli, tmp_path, world):
    log = tmp_path / "log"
    torchrun(world, "--data", str(text_pack), "--epochs", "2", "--batch", "4", "--seed", "3", "--step-log", str(log))
    per_rank = steps(log, world)
    assert len({len(s) for s in per_rank}) == 1, "a rank had more batches: it would wait at the all-reduce"
    for epoch in (0, 1):
        seen = [i for s in per_rank for row in s if row["epoch"] == epoch for i in row["indices"]]
        assert len(seen) == len(set(seen)), "a record twice in one epoch"
        assert len(seen) == 100 // (4 * world) * 4 * world  # drop_last: the same whole batches on every rank
        for r in range(world):
            out = subprocess.run([cli, "order", str(text_pack), "--epoch", str(epoch), "--seed", "3", "--batch", "4",
                                  "--rank", str(r), "--world", str(world), "--drop-last"],
                                 check=True, capture_output=True, text=True).stdout
            want = [json.loads(l)["indices"] for l in out.splitlines()]
            assert [row["indices"] for row in per_rank[r] if row["epoch"] == epoch] == want


def test_killed_job_resumes_exactly(text_pack, tmp_path):
    straight = tmp_path / "straight"
    torchrun(2, "--data", str(text_pack), "--epochs", "2", "--batch", "4", "--seed", "5", "--step-log", str(straight))
    crashed, ckpt = tmp_path / "crashed", tmp_path / "ckpt"
    common = ["--data", str(text_pack), "--epochs", "2", "--batch", "4", "--seed", "5", "--step-log", str(crashed),
              "--checkpoint", str(ckpt), "--every", "3"]
    run = torchrun(2, *common, "--crash-after", "15", check=False)  # mid-epoch 1 (12 batches an epoch)
    assert run.returncode != 0
    torchrun(2, *common, "--resume")
    for a, b in zip(steps(crashed, 2), steps(straight, 2)):
        assert [(r["step"], r["epoch"], r["batch"], r["indices"]) for r in a] == \
               [(r["step"], r["epoch"], r["batch"], r["indices"]) for r in b]


def test_another_world_size_takes_over_at_an_epoch_boundary(text_pack, tmp_path):
    """2 ranks train epoch 0 (12 batches of 4 each) and are killed; 3 ranks
    train epoch 1 from the boundary checkpoint: together every record of
    each epoch once, epoch 1 in the order 3 ranks would have read it. A
    mid-epoch checkpoint is refused with another world size."""
    ckpt, log2, log3 = tmp_path / "ckpt", tmp_path / "two", tmp_path / "three"
    common = ["--data", str(text_pack), "--epochs", "2", "--batch", "4", "--seed", "7", "--checkpoint", str(ckpt)]
    run = torchrun(2, *common, "--every", "12", "--crash-after", "14", "--step-log", str(log2), check=False)
    assert run.returncode != 0
    torchrun(3, *common, "--every", "12", "--resume", "--step-log", str(log3))
    three = steps(log3, 3)
    assert {r["epoch"] for s in three for r in s} == {1}
    assert [r["step"] for r in three[0]] == list(range(13, 13 + 8))  # 100 // 12 = 8 batches of 4 per rank
    seen = [i for s in three for r in s for i in r["indices"]]
    assert len(seen) == len(set(seen)) == 96

    mid = tmp_path / "mid"
    run = torchrun(2, "--data", str(text_pack), "--epochs", "2", "--batch", "4", "--checkpoint", str(mid),
                   "--every", "5", "--crash-after", "5", check=False)
    assert run.returncode != 0
    run = torchrun(3, "--data", str(text_pack), "--epochs", "2", "--batch", "4", "--checkpoint", str(mid), "--resume",
                   check=False)
    assert run.returncode != 0 and "middle of epoch 0" in run.stderr
