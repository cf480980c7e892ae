import gc
import json
import os
import subprocess
import sys
import threading

import pytest
import torch

import ringfeed


def run(loader):
    """(epoch, index, indices, labels, images) of every batch of one iter()."""
    out = []
    for b in loader:
        images = b.images if isinstance(b.images, list) else b.images.clone()
        out.append((b.epoch, b.batch_index, list(b.indices), b.labels.tolist(), images))
    return out


def same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x[:4] == y[:4]
        if isinstance(x[4], list):
            assert x[4] == y[4]
        else:
            assert torch.equal(x[4], y[4])


def test_train_batches_are_tensors(image_pack):
    loader = ringfeed.Loader(image_pack, batch_size=16, pipeline="train", size=32, seed=3, cores=2)
    batches = list(loader)
    assert len(batches) == len(loader) == 4
    images, labels = batches[0]
    assert images.shape == (16, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (16,) and labels.dtype == torch.int64
    assert sorted(i for b in batches for i in b.indices)[:50] == list(range(50))
    u8 = next(iter(ringfeed.Loader(image_pack, batch_size=8, pipeline="val", size=24, dtype=torch.uint8)))
    assert u8.images.dtype == torch.uint8 and u8.images.shape == (8, 3, 24, 24)
    assert u8.indices == list(range(8))  # val: in order


@pytest.mark.parametrize("pipeline", ["train", "val", "raw"])
def test_digest_equals_the_cli(image_pack, cli, pipeline):
    """The same seed gives the same batches, bit for bit, as `ringfeed bench`."""
    loader = ringfeed.Loader(image_pack, batch_size=8, seed=11, epochs=2, pipeline=pipeline, size=32,
                             shuffle="global", cores=2, digest=True)
    for _ in loader:
        pass
    args = [cli, "bench", str(image_pack), "--json", "--batch", "8", "--seed", "11", "--epochs", "2",
            "--pipeline", pipeline, "--size", "32", "--dtype", "f32", "--cores", "1"]
    out = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout)
    assert loader.digest() == out["digest"]


def test_resume_is_exact(image_pack):
    kwargs = dict(batch_size=8, seed=5, epochs=3, pipeline="train", size=24, cores=2)
    straight = run(ringfeed.Loader(image_pack, **kwargs))
    assert len(straight) == 3 * 7
    for stop in (1, 6, 7, 13):  # inside an epoch, at its last batch, at a boundary
        first = ringfeed.Loader(image_pack, **kwargs)
        it = iter(first)
        head = []
        for _ in range(stop):
            b = next(it)
            head.append((b.epoch, b.batch_index, list(b.indices), b.labels.tolist(), b.images.clone()))
        saved = json.loads(json.dumps(first.state_dict()))  # through JSON, as a checkpoint would
        del it, first
        second = ringfeed.Loader(image_pack, **kwargs)
        second.load_state_dict(saved)
        tail = run(second)
        same(head + tail, straight)


def test_iterating_again_continues(text_pack):
    loader = ringfeed.Loader(text_pack, batch_size=10, seed=1, epochs=1)
    straight = run(ringfeed.Loader(text_pack, batch_size=10, seed=1, epochs=3))
    got = []
    for _ in range(3):  # the DataLoader idiom: one iter() per epoch
        for i, b in enumerate(loader):
            got.append((b.epoch, b.batch_index, list(b.indices), b.labels.tolist(), b.images))
            if i == 4 and len(got) < 10:
                break  # abandoned mid-epoch: the next iter() picks up after it
    got += run(loader)
    same(got, straight)
    assert [g[0] for g in got] == [0] * 10 + [1] * 10 + [2] * 10


def test_state_from_other_settings_is_refused(text_pack):
    a = ringfeed.Loader(text_pack, batch_size=10, seed=1)
    next(iter(a))
    b = ringfeed.Loader(text_pack, batch_size=10, seed=2)
    b.load_state_dict(a.state_dict())
    with pytest.raises(ringfeed.ConfigError, match="seed"):
        iter(b)
    with pytest.raises(ringfeed.ConfigError):
        b.load_state_dict({"state": "not json"})
    with pytest.raises(ringfeed.ConfigError):
        b.load_state_dict({"other": 1})


def test_fresh_state_dict_has_the_same_keys(text_pack):
    loader = ringfeed.Loader(text_pack, batch_size=10)
    assert loader.state_dict() == {"state": ""}
    loader.load_state_dict({"state": ""})
    assert len(run(loader)) == 10


def threads_and_fds():
    return len(os.listdir("/proc/self/task")), len(os.listdir("/proc/self/fd"))


def test_abandoned_iterator_releases_threads_and_fds(image_pack):
    gc.collect()
    before = threads_and_fds()
    loader = ringfeed.Loader(image_pack, batch_size=4, pipeline="train", size=32, cores=2, epochs=5)
    it = iter(loader)
    first = next(it)
    assert threads_and_fds()[0] > before[0]  # the workers run
    del it  # abandoned mid-epoch
    gc.collect()
    assert threads_and_fds() == before
    assert first.images.shape == (4, 3, 32, 32)  # still usable


def test_tensors_outlive_the_loader(image_pack):
    loader = ringfeed.Loader(image_pack, batch_size=8, pipeline="val", size=32, prefetch=2, cores=1)
    kept = [(b.images, b.images.clone()) for b in loader]
    del loader
    gc.collect()
    for images, copy in kept:
        assert torch.equal(images, copy)
        images.mul_(2)  # the memory is the caller's to write
        assert torch.equal(images, copy * 2)


def test_buffers_are_recycled_and_memory_stays_flat(image_pack):
    loader = ringfeed.Loader(image_pack, batch_size=16, pipeline="train", size=64, cores=2, epochs=1)
    loader_iter = iter(loader)
    ptrs = set()
    for _ in range(30):  # 30 epochs' worth of batches, each dropped at once
        for b in loader:
            ptrs.add(b.images.data_ptr())
    del loader_iter
    # Pooled buffers come back when torch frees a batch: a handful of
    # addresses, not one per batch.
    assert len(ptrs) < 30, len(ptrs)


def test_gil_is_released_while_waiting(image_pack):
    """With a huge switch interval, another thread runs only when the
    waiting one releases the GIL: it must find the batch not yet delivered."""
    loader = ringfeed.Loader(image_pack, batch_size=48, pipeline="train", size=128, cores=1)
    entered, done, seen = threading.Event(), threading.Event(), []

    def consume():
        it = iter(loader)
        entered.set()
        next(it)
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(100)
    try:
        t = threading.Thread(target=consume)
        t.start()
        entered.wait()
        seen.append(done.is_set())
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen == [False]


def test_ranks_split_each_epoch(text_pack):
    per_rank = []
    for rank in range(3):
        loader = ringfeed.Loader(text_pack, batch_size=8, seed=4, rank=rank, world_size=3, drop_last=True)
        per_rank.append([i for b in loader for i in b.indices])
    assert all(len(p) == len(per_rank[0]) for p in per_rank)
    flat = [i for p in per_rank for i in p]
    assert len(flat) == len(set(flat))


def test_ranks_from_torchrun_environment(text_pack, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    from_env = [i for b in ringfeed.Loader(text_pack, batch_size=10, seed=4) for i in b.indices]
    monkeypatch.delenv("RANK")
    monkeypatch.delenv("WORLD_SIZE")
    explicit = [i for b in ringfeed.Loader(text_pack, batch_size=10, seed=4, rank=1, world_size=2) for i in b.indices]
    assert from_env == explicit and len(explicit) == 50


def test_bad_arguments_are_config_errors(text_pack, tmp_path):
    for kwargs in (dict(pipeline="nope"), dict(batch_size=0), dict(shuffle="sideways"), dict(dtype="float16"),
                   dict(on_corrupt="ignore"), dict(rank=1), dict(rank=3, world_size=2), dict(io="mmap")):
        with pytest.raises(ringfeed.ConfigError) as e:
            iter(ringfeed.Loader(text_pack, **kwargs))
        assert isinstance(e.value, ValueError)
    with pytest.raises(ringfeed.RingfeedError):
        iter(ringfeed.Loader(tmp_path / "missing.rf"))


def test_pin_memory(image_pack):
    loader = ringfeed.Loader(image_pack, batch_size=8, pipeline="val", size=32, pin_memory=True)
    if torch.cuda.is_available():  # pinned copies, ready for non_blocking transfers
        batches = list(loader)
        assert all(b.images.is_pinned() for b in batches)
    else:  # nothing to pin for: a warning, as the DataLoader gives, and plain batches
        with pytest.warns(UserWarning, match="pin_memory"):
            batches = list(loader)
        assert not batches[0].images.is_pinned()
    assert sum(len(b.indices) for b in batches) == 50
