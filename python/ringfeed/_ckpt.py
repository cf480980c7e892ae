"""safetensors checkpoints at disk speed, saved crash-safe."""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping, Optional, Union

from . import _ringfeed
from .errors import ConfigError

# safetensors dtype names <-> torch dtypes (those this torch has).
_NAMES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "I32": "int32",
    "U32": "uint32", "I64": "int64", "U64": "uint64", "F16": "float16", "BF16": "bfloat16", "F32": "float32",
    "F64": "float64", "C64": "complex64", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
}


def _torch_dtype(torch: Any, name: str) -> Any:
    attr = _NAMES.get(name)
    dtype = getattr(torch, attr, None) if attr else None
    if dtype is None:
        raise ConfigError(f"safetensors dtype {name} has no torch dtype in torch {torch.__version__}")
    return dtype


def load_checkpoint(path: Union[str, "os.PathLike[str]"], names: Optional[Iterable[str]] = None, *,
                    direct_io: bool = True, verify: bool = True) -> dict[str, Any]:
    """Loads a safetensors checkpoint into CPU torch tensors, ``{name: tensor}``.

    ``path``: a ``.safetensors`` file, or a sharded set's
    ``model.safetensors.index.json`` (or its directory). The data is read
    with direct I/O (8 MiB requests, four in flight) into one buffer per
    file that the tensors share without a copy (freed when the last of
    them is); ringfeed's per-tensor CRC32Cs are checked (``verify``).
    ``names``: only these tensors. Bad files raise
    :class:`ringfeed.CorruptDataError` naming the file and tensor; every
    header is validated before anything is allocated.
    """
    import torch

    loaded = _ringfeed.load_checkpoint(os.fspath(path), None if names is None else list(names), direct_io, verify)
    out = {}
    for name, dtype, shape, buf in loaded:
        flat = torch.from_dlpack(buf)
        out[name] = flat.view(_torch_dtype(torch, dtype)).reshape(shape)
    return out


def save_checkpoint(path: Union[str, "os.PathLike[str]"], tensors: Mapping[str, Any], *,
                    metadata: Optional[Mapping[str, str]] = None, checksums: bool = True,
                    direct_io: bool = True) -> int:
    """Saves ``{name: tensor}`` as a safetensors file, crash-safe.

    The file is written next to ``path`` under a temporary name with direct
    I/O, synced, renamed over ``path`` and the directory synced: a crash
    leaves the old file or the new one, never a torn one. Tensors on a GPU
    are copied to the CPU first. With ``checksums`` a CRC32C per tensor goes
    into the metadata (other readers ignore it). Readable by the
    ``safetensors`` package. Returns the file's size.
    """
    import torch

    reverse = {getattr(torch, v): k for k, v in _NAMES.items() if getattr(torch, v, None) is not None}
    items = []
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ConfigError(f"tensor {name!r} is a {type(t).__name__}, not a torch.Tensor")
        dtype = reverse.get(t.dtype)
        if dtype is None:
            raise ConfigError(f"tensor {name!r}: {t.dtype} has no safetensors dtype")
        t = t.detach().to("cpu").contiguous()
        data = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        items.append((name, dtype, list(t.shape), data))
    meta = [(str(k), str(v)) for k, v in (metadata or {}).items()]
    return _ringfeed.save_checkpoint(os.fspath(path), items, meta, checksums, direct_io)
