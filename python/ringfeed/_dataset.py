"""Pack datasets: packing, verifying, and reading records by index."""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, Optional, Union

from . import _ringfeed

PathLike = Union[str, "os.PathLike[str]"]


class Record(NamedTuple):
    """One record: its payload (CRC checked), class label (0 without labels) and key."""

    payload: bytes
    label: int
    key: str


def pack(src: PathLike, out: PathLike, *, format: Optional[str] = None, shard_size: Optional[int] = None,
         threads: Optional[int] = None) -> dict[str, Any]:
    """Packs ``src`` into a dataset directory ``out``; returns its manifest.

    ``src``: an ImageFolder tree (``class/file.jpg``), a directory of files,
    WebDataset ``.tar`` shards, TFRecord or FFRecord files, or JSON lines.
    ``format``: ``"imagefolder"``, ``"files"``, ``"tar"``, ``"tfrecord"``,
    ``"ffrecord"`` or ``"jsonl"``; default: detected. ``shard_size``: bytes
    per shard file (default 1 GiB); ``threads``: packing threads (default:
    the CPUs). The manifest is written last, so an interrupted pack leaves
    nothing that opens.
    """
    return json.loads(_ringfeed.pack(os.fspath(src), os.fspath(out), format, shard_size, threads))


def verify(path: PathLike) -> dict[str, Any]:
    """Reads every record of the dataset at ``path`` and checks it.

    Returns the report: ``shards``, ``records``, ``bytes`` and ``problems``
    (each with ``shard``, ``record``, ``offset`` and ``reason``; empty when
    the dataset is clean). Raises only when the dataset cannot be opened.
    """
    return json.loads(_ringfeed.verify(os.fspath(path)))


class Dataset:
    """Random access to the records of a pack dataset.

    ``len(ds)`` records; ``ds[i]`` is a :class:`Record` (negative indices
    count from the end; a record that fails its checksum raises
    :class:`ringfeed.CorruptDataError`). Usable as a map-style dataset of
    ``torch.utils.data.DataLoader``.
    """

    def __init__(self, path: PathLike) -> None:
        self._inner = _ringfeed._Dataset(os.fspath(path))
        self._manifest: Optional[dict[str, Any]] = None

    def __len__(self) -> int:
        return len(self._inner)

    def __getitem__(self, index: int) -> Record:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]  # type: ignore[return-value]
        return Record(*self._inner.record(index))

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    @property
    def manifest(self) -> dict[str, Any]:
        """The dataset's manifest (schema, classes, shards, counts)."""
        if self._manifest is None:
            self._manifest = json.loads(self._inner.manifest_json())
        return self._manifest

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by label (empty when the dataset has no labels)."""
        return list(self.manifest.get("classes", []))

    @property
    def path(self) -> str:
        """The dataset's directory."""
        return os.fspath(self._inner.path)

    def __repr__(self) -> str:
        return f"ringfeed.Dataset({self.path!r}, records={len(self)})"
