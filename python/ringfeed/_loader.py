"""The image / record loader, as PyTorch users iterate a DataLoader."""

from __future__ import annotations

import os
import warnings
from typing import Any, Iterator, Optional, Union

from . import _ringfeed, _state
from .errors import ConfigError


class Batch(tuple):
    """One batch: unpacks as ``(images, labels)``.

    ``images``: a ``[B, 3, size, size]`` tensor (float32 normalized, or
    uint8) for the image pipelines, or for ``pipeline="raw"`` a list of the
    records' payloads (``bytes``). ``labels``: int64 ``[B]``. Also:
    ``epoch``, ``batch_index`` (within the epoch, for this rank), ``indices``
    (dataset index of each sample), ``skipped`` and ``replaced`` (corrupt
    records left out or substituted under ``on_corrupt``).
    """

    epoch: int
    batch_index: int
    indices: list[int]
    skipped: list[int]
    replaced: list[tuple[int, int]]

    def __new__(cls, images: Any, labels: Any, epoch: int, index: int, indices: list[int],
                skipped: list[int], replaced: list[tuple[int, int]]) -> "Batch":
        self = super().__new__(cls, (images, labels))
        self.epoch, self.batch_index, self.indices, self.skipped, self.replaced = epoch, index, indices, skipped, replaced
        return self

    @property
    def images(self) -> Any:
        """The images tensor (or payloads for ``pipeline="raw"``)."""
        return self[0]

    @property
    def labels(self) -> Any:
        """The labels tensor."""
        return self[1]


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r}: expected one of {', '.join(map(repr, allowed))}")
    return value


class Loader:
    """Batches of a pack dataset, read and decoded by ringfeed's workers.

    ``for images, labels in Loader(path, ...)`` yields :class:`Batch`
    tuples. The epochs are planned in runs of ``epochs`` from
    ``start_epoch``, and each ``iter()`` continues after the last batch
    delivered to the end of its run: with ``epochs=90`` one loop trains all
    90 (and after a resume, the rest of them); with ``epochs=1``, ``for
    epoch in range(90): for batch in loader`` goes through epochs 0..89,
    each shuffled by its own epoch number. Breaking out of a loop and
    iterating again continues with the next batch, exactly. Abandoning an
    iterator stops its workers and frees their memory; tensors already
    handed out stay valid.

    Arguments (defaults in brackets):

    - ``batch_size`` [64], ``seed`` [0], ``epochs`` [1] per ``iter()``,
      ``start_epoch`` [0]: the first epoch of a fresh loader.
    - ``pipeline``: ``"raw"`` (payload bytes) [default], ``"train"``
      (RandomResizedCrop(size) + RandomHorizontalFlip + normalize) or
      ``"val"`` (Resize(resize) + CenterCrop(size) + normalize; every
      record once, in order, not split between ranks unless ``rank`` is
      given). ``size`` [224], ``resize`` [⌈size × 8 / 7⌉: 256 for 224].
    - ``dtype``: ``"float32"`` (ImageNet-normalized) [default] or
      ``"uint8"`` (raw pixels, a quarter of the memory); ``torch.float32``
      and ``torch.uint8`` are accepted too.
    - ``shuffle``: ``"global"`` [train and raw], ``"block"`` (runs of
      neighbouring records: few large reads, for small records),
      ``"sequential"`` [val]; ``True`` / ``False`` mean global / sequential.
    - ``on_corrupt``: ``"fail"`` [default] raises
      :class:`ringfeed.CorruptDataError` naming the file, record and byte;
      ``"skip"`` leaves the record out; ``"replace"`` substitutes another,
      chosen from ``(seed, epoch, index)``, so batch shapes stay fixed.
    - ``cores``: worker executors [this process's share of the CPUs: its
      affinity mask, split between torchrun's ``LOCAL_WORLD_SIZE``
      processes]. ``prefetch``: batches read ahead [8].
    - ``rank``, ``world_size``: this process's part of each epoch [torchrun's
      ``RANK`` and ``WORLD_SIZE``, else 0 of 1]; ``drop_last`` [False: the
      tail is padded as ``DistributedSampler`` does].
    - ``io``: ``"auto"`` [buffered when the dataset is under a quarter of
      RAM, else O_DIRECT], ``"direct"``, ``"buffered"``.
    - ``pin_memory``: copy images into pinned memory for fast, async
      host-to-GPU copies [True when torch has CUDA]; without it the images
      are ringfeed's own buffers (no copy).
    - ``digest``: keep the digest of the batches delivered, as ``ringfeed
      bench`` prints it (:meth:`digest`) [False].

    ``state_dict()`` / ``load_state_dict()`` follow the ``Stateful``
    protocol of ``torch.distributed.checkpoint`` and StatefulDataLoader:
    the state after the last batch delivered, a few integers; a loader
    built with the same arguments and given it continues exactly there
    (another seed, batch size, world size or pipeline is refused with
    :class:`ringfeed.ConfigError` when iteration starts).
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, batch_size: int = 64, seed: int = 0,
                 epochs: int = 1, start_epoch: int = 0, pipeline: str = "raw", size: int = 224,
                 resize: Optional[int] = None, dtype: Any = "float32", shuffle: Union[str, bool, None] = None,
                 on_corrupt: str = "fail", cores: Optional[int] = None, prefetch: Optional[int] = None,
                 drop_last: Optional[bool] = None, rank: Optional[int] = None, world_size: Optional[int] = None,
                 io: str = "auto", pin_memory: Optional[bool] = None, digest: bool = False) -> None:
        if not isinstance(dtype, str):
            dtype = str(dtype).replace("torch.", "")  # torch.float32 -> "float32"
        if shuffle is True:
            shuffle = "global"
        elif shuffle is False:
            shuffle = "sequential"
        for name, value in (("batch_size", batch_size), ("epochs", epochs), ("size", size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r}: expected a positive integer")
        for name, value in (("seed", seed), ("start_epoch", start_epoch)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{name}={value!r}: expected a non-negative integer")
        self._args: dict[str, Any] = dict(
            batch_size=batch_size, seed=seed, pipeline=_choice("pipeline", pipeline, ("raw", "train", "val")),
            size=size, resize=resize, dtype=_choice("dtype", dtype, ("float32", "uint8")),
            shuffle=None if shuffle is None else _choice("shuffle", shuffle, ("global", "block", "sequential")),
            on_corrupt=_choice("on_corrupt", on_corrupt, ("fail", "skip", "replace")), cores=cores,
            prefetch=prefetch, drop_last=drop_last, rank=rank, world_size=world_size,
            io=_choice("io", io, ("auto", "direct", "buffered")), digest=digest)
        self._path = os.fspath(path)
        self._epochs = epochs
        self._start_epoch = start_epoch
        self._pin_memory = pin_memory
        self._state: Optional[str] = None
        self._native: Optional[Any] = None
        self._digest: Optional[str] = None
        self._info: Optional[tuple[int, list[str]]] = None

    def _build(self, start_epoch: int, state: Optional[str]) -> Any:
        return _ringfeed._Loader(self._path, epochs=self._epochs, start_epoch=start_epoch, state=state, **self._args)

    def __iter__(self) -> Iterator[Batch]:
        epoch = _state.position(self._state)
        native = self._build(_state.chunk_start(self._start_epoch, self._epochs, epoch), self._state)
        return self._run(native)

    def _run(self, native: Any) -> Iterator[Batch]:
        import torch

        self.close()
        self._native = native
        self._info = (native.batches_per_epoch, native.classes)
        pin = torch.cuda.is_available() if self._pin_memory is None else self._pin_memory
        if pin and not torch.cuda.is_available():
            # As the DataLoader does: there is nothing to pin for.
            warnings.warn("pin_memory=True but torch has no CUDA device: batches are not pinned", stacklevel=2)
            pin = False
        try:
            while True:
                got = native.next_batch()
                if got is None:
                    break
                epoch, index, images, labels, payloads, indices, skipped, replaced = got
                self._state = native.state()
                labels = torch.from_dlpack(labels)
                if images is not None:
                    images = torch.from_dlpack(images)
                    if pin:
                        images = images.pin_memory()
                else:
                    images = payloads
                yield Batch(images, labels, epoch, index, indices, skipped, replaced)
        finally:
            self._digest = native.digest()
            native.close()
            if self._native is native:
                self._native = None

    def __len__(self) -> int:
        """Batches one ``iter()`` delivers from the start of an epoch (per rank)."""
        return self._batches_per_epoch() * self._epochs

    def _batches_per_epoch(self) -> int:
        if self._info is None:
            native = self._build(self._start_epoch, None)
            self._info = (native.batches_per_epoch, native.classes)
            native.close()
        return self._info[0]

    @property
    def classes(self) -> list[str]:
        """Class names, indexed by label."""
        self._batches_per_epoch()
        assert self._info is not None
        return list(self._info[1])

    @property
    def epoch(self) -> int:
        """The epoch of the next batch."""
        epoch = _state.position(self._state)
        return self._start_epoch if epoch is None else epoch

    def digest(self) -> Optional[str]:
        """The digest of the batches the last (or current) ``iter()``
        delivered, 16 hex digits, equal to ``ringfeed bench``'s for the
        same dataset, seed and settings; ``None`` unless ``digest=True``."""
        return self._native.digest() if self._native is not None else self._digest

    def state_dict(self) -> dict[str, Any]:
        """Where the loader stands: ``{"state": JSON}`` (the Rust
        ``LoaderState``; ``""`` before the first batch)."""
        return _state.state_dict(self._state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict`: the next ``iter()`` starts at
        the batch after the one the state was taken at."""
        self.close()
        self._state = _state.loaded_state(state_dict)

    def close(self) -> None:
        """Stops a running iteration's workers (the iterator then ends)."""
        if self._native is not None:
            self._native.close()
            self._native = None

    def __repr__(self) -> str:
        return f"ringfeed.Loader({self._path!r}, epoch={self.epoch}, {self._args})"
