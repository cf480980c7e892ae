"""examples/python/train.py: N steps straight equal N/2, a checkpoint
(torch.save or torch.distributed.checkpoint), and N/2 resumed."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

EXAMPLE = REPO / "examples" / "python" / "train.py"


def train(data, ckpt, steps, fmt, resume=False):
    args = [sys.executable, str(EXAMPLE), "--data", str(data), "--steps", str(steps), "--batch", "8", "--size", "32",
            "--threads", "1", "--cores", "1", "--checkpoint", str(ckpt), "--every", "100", "--format", fmt]
    out = subprocess.run(args + (["--resume"] if resume else []), check=True, capture_output=True, text=True).stdout
    lines = [json.loads(l) for l in out.splitlines()]
    return [l for l in lines if "step" in l], lines[-1]


@pytest.mark.parametrize("fmt", ["torch", "dcp"])
def test_resume_equals_a_straight_run(image_pack, tmp_path, fmt):
    straight, end = train(image_pack, tmp_path / "a", 10, fmt)  # 7 batches an epoch: crosses an epoch
    assert [s["step"] for s in straight] == list(range(1, 11))
    first, _ = train(image_pack, tmp_path / "b", 4, fmt)
    rest, end_b = train(image_pack, tmp_path / "b", 10, fmt, resume=True)
    assert [s["step"] for s in first + rest] == list(range(1, 11))
    assert [s["loss"] for s in first + rest] == [s["loss"] for s in straight]
    assert [s["epoch"] for s in straight] == [0] * 7 + [1] * 3
    assert end_b["param_sum"] == end["param_sum"]
