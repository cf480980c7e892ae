import pytest
import torch

import ringfeed


def tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "w": torch.randn(33, 17, generator=g),
        "b16": torch.randn(5, 7, generator=g).to(torch.bfloat16),
        "h": torch.randn(3, generator=g).to(torch.float16),
        "i": torch.arange(10, dtype=torch.int64).reshape(2, 5),
        "mask": torch.tensor([True, False, True]),
        "step": torch.tensor(7, dtype=torch.int32),
        "empty": torch.zeros(0, 4),
        "odd": torch.arange(3, dtype=torch.uint8),
        "f64": torch.randn(4, generator=g, dtype=torch.float64),
    }


def test_round_trip(tmp_path):
    path = tmp_path / "m.safetensors"
    src = tensors()
    size = ringfeed.save_checkpoint(path, src, metadata={"format": "pt"})
    assert size == path.stat().st_size
    back = ringfeed.load_checkpoint(path)
    assert list(back) == list(src)
    for k in src:
        assert back[k].dtype == src[k].dtype and back[k].shape == src[k].shape, k
        assert torch.equal(back[k], src[k]), k
    back["w"].add_(1)  # writable
    assert torch.equal(back["w"], src["w"] + 1)
    only = ringfeed.load_checkpoint(path, names=["i"])
    assert list(only) == ["i"]
    with pytest.raises(ringfeed.ConfigError):
        ringfeed.load_checkpoint(path, names=["nope"])


def test_interop_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    src = tensors()
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    ringfeed.save_checkpoint(ours, src)
    read = st.load_file(ours)
    assert all(torch.equal(read[k], src[k]) for k in src)
    st.save_file(src, theirs)
    back = ringfeed.load_checkpoint(theirs)
    assert all(torch.equal(back[k], src[k]) for k in src)


def test_corruption_is_caught(tmp_path):
    path = tmp_path / "m.safetensors"
    ringfeed.save_checkpoint(path, {"w": torch.ones(1000)})
    data = bytearray(path.read_bytes())
    data[-10] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(ringfeed.CorruptDataError, match="w"):
        ringfeed.load_checkpoint(path)
    assert ringfeed.load_checkpoint(path, verify=False)["w"].shape == (1000,)
    path.write_bytes(b"\xff" * 8 + b"{}")
    with pytest.raises(ringfeed.CorruptDataError):
        ringfeed.load_checkpoint(path)


def test_tensors_outlive_each_other(tmp_path):
    path = tmp_path / "m.safetensors"
    ringfeed.save_checkpoint(path, {"a": torch.arange(100.0), "b": torch.arange(50.0)})
    loaded = ringfeed.load_checkpoint(path)
    b = loaded.pop("b")
    del loaded  # "a" freed; "b" shares its buffer and stays valid
    import gc
    gc.collect()
    assert torch.equal(b, torch.arange(50.0))


def test_save_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(ringfeed.ConfigError):
        ringfeed.save_checkpoint(tmp_path / "x.safetensors", {"a": [1, 2, 3]})
    with pytest.raises(ringfeed.IoError):
        ringfeed.save_checkpoint(tmp_path / "no" / "such" / "dir.safetensors", {"a": torch.ones(2)})


def test_misaligned_tensors_are_copied_aligned(tmp_path):
    """The format allows any offset: a float32 tensor at byte 1 of the data
    is handed over as an aligned copy, the others as views."""
    import json
    import struct

    header = json.dumps({"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},
                         "b": {"dtype": "F32", "shape": [2], "data_offsets": [1, 9]}}).encode()
    header += b" " * (-len(header) % 8)
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes([7]) + struct.pack("<2f", 1.5, -2.0))
    loaded = ringfeed.load_checkpoint(path)
    assert loaded["a"].tolist() == [7]
    assert loaded["b"].tolist() == [1.5, -2.0]
    assert loaded["b"].data_ptr() % 4 == 0
