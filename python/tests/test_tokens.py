import json

import numpy as np
import pytest
import torch

import ringfeed


@pytest.fixture
def train_bin(tmp_path):
    """A nanoGPT-style train.bin: 20,000 uint16 ids, documents ended by 50256."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50000, size=20_000, dtype=np.uint16)
    ids[::97] = 50256
    path = tmp_path / "train.bin"
    ids.tofile(path)
    return path, ids


def test_windows_are_shifted_slices(train_bin):
    path, ids = train_bin
    loader = ringfeed.TokenLoader(path, block_size=64, batch_size=4, seed=2)
    n = 0
    for b in loader:
        x, y = b
        assert x.shape == y.shape == (4, 64) and x.dtype == torch.int64
        for row, off in enumerate(b.offsets):
            assert x[row].tolist() == ids[off:off + 64].tolist()
            assert y[row].tolist() == ids[off + 1:off + 65].tolist()
        n += 1
        assert b.position_ids is None
    assert n == len(loader) == (20_000 - 1) // 64 // 4


@pytest.mark.parametrize("mode", ["epoch", "random", "packed"])
def test_resume_is_exact(train_bin, mode):
    path, _ = train_bin
    kw = dict(block_size=32, batch_size=8, seed=9, epochs=2, mode=mode, shuffle="global")
    straight = [(b.epoch, b.batch_index, b.x.clone(), b.y.clone()) for b in ringfeed.TokenLoader(path, **kw)]
    first = ringfeed.TokenLoader(path, **kw)
    it = iter(first)
    head = [(b.epoch, b.batch_index, b.x.clone(), b.y.clone()) for b in (next(it) for _ in range(len(straight) // 2 + 3))]
    state = json.loads(json.dumps(first.state_dict()))
    del it
    second = ringfeed.TokenLoader(path, **kw)
    second.load_state_dict(state)
    got = head + [(b.epoch, b.batch_index, b.x.clone(), b.y.clone()) for b in second]
    assert len(got) == len(straight)
    for a, b in zip(got, straight):
        assert a[:2] == b[:2] and torch.equal(a[2], b[2]) and torch.equal(a[3], b[3])


def test_packed_windows_carry_document_structure(train_bin):
    path, _ = train_bin
    b = next(iter(ringfeed.TokenLoader(path, block_size=128, batch_size=2, mode="packed", seed=1)))
    assert b.position_ids.shape == (2, 128) and b.loss_mask.shape == (2, 128)
    assert b.cu_seqlens.dtype == torch.int32
    assert b.cu_seqlens[0] == 0 and b.cu_seqlens[-1] == 2 * 128
    assert (b.position_ids[:, 0] == 0).all()


def test_vocabulary_is_enforced(train_bin):
    path, _ = train_bin
    with pytest.raises(ringfeed.CorruptDataError, match="vocab"):
        for _ in ringfeed.TokenLoader(path, block_size=64, batch_size=4, vocab_size=1000):
            pass


def test_bad_arguments(train_bin, tmp_path):
    path, _ = train_bin
    with pytest.raises(ringfeed.ConfigError):
        iter(ringfeed.TokenLoader(path, mode="sideways"))
    with pytest.raises(ringfeed.ConfigError):
        iter(ringfeed.TokenLoader(path, block_size=100_000))
    with pytest.raises(ringfeed.RingfeedError):
        iter(ringfeed.TokenLoader(tmp_path / "missing.bin"))
