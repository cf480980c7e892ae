"""The DLPack hand-off itself: consumed by torch or NumPy, taken once,
freed when nobody consumes it, read-write, valid after the loader."""

import gc
import os

import numpy as np
import pytest
import torch

import ringfeed
from ringfeed import _ringfeed


def native_batch(pack, **kw):
    loader = _ringfeed._Loader(os.fspath(pack), batch_size=8, seed=0, epochs=1, start_epoch=0, pipeline="val",
                               size=32, resize=None, dtype="float32", shuffle=None, on_corrupt="fail", cores=1,
                               prefetch=2, drop_last=None, rank=None, world_size=None, io="auto", state=None,
                               digest=False, **kw)
    return loader, loader.next_batch()


def test_numpy_and_torch_consume_the_same_memory(image_pack):
    loader, (_, _, images, labels, _payloads, indices, *_rest) = native_batch(image_pack)
    ds = ringfeed.Dataset(image_pack)
    assert images.shape == [8, 3, 32, 32] and images.__dlpack_device__() == (1, 0)
    arr = np.from_dlpack(images)
    assert arr.dtype == np.float32 and arr.shape == (8, 3, 32, 32)
    with pytest.raises(BufferError):
        torch.from_dlpack(images)  # taken once
    t = torch.from_dlpack(labels)
    assert t.dtype == torch.int64 and t.tolist() == [ds[i].label for i in indices]
    loader.close()
    arr[:] = 1.5  # the consumer owns the memory: writable, after the loader is gone
    assert float(arr.sum()) == 1.5 * arr.size


def test_unconsumed_capsules_and_buffers_are_freed(image_pack):
    loader, (_, _, images, labels, *_rest) = native_batch(image_pack)
    capsule = images.__dlpack__()  # made, never consumed
    del capsule, images, labels  # the capsule's destructor frees the export
    gc.collect()
    # Both batch buffers went back: a run of 30 more batches needs no more memory.
    loader.close()
    for _ in range(3):
        for _ in ringfeed.Loader(image_pack, batch_size=8, pipeline="val", size=32, prefetch=2, cores=1):
            pass


def test_refuses_copies_and_devices(image_pack):
    loader, (_, _, images, *_rest) = native_batch(image_pack)
    with pytest.raises(BufferError):
        images.__dlpack__(copy=True)
    with pytest.raises(BufferError):
        images.__dlpack__(dl_device=(2, 0))
    torch.from_dlpack(images)  # still exportable after the refusals
    loader.close()


@pytest.mark.parametrize("max_version", [None, (0, 8), (1, 0), (1, 3)])
def test_both_capsule_versions_are_consumed(image_pack, max_version):
    loader, (_, _, images, labels, *_rest) = native_batch(image_pack)
    kwargs = {} if max_version is None else {"max_version": max_version}
    capsule = images.__dlpack__(**kwargs)
    t = torch.utils.dlpack.from_dlpack(capsule)
    assert t.shape == (8, 3, 32, 32) and t.dtype == torch.float32
    t.fill_(2.0)
    del capsule  # consumed: the capsule's destructor must leave it to torch
    gc.collect()
    assert float(t.sum()) == 2.0 * t.numel()
    loader.close()
