"""Token windows for language-model training."""

from __future__ import annotations

import json
import os
from typing import Any, Iterator, Optional, Union

from . import _ringfeed, _state
from ._loader import _choice
from .errors import ConfigError


class TokenBatch(tuple):
    """One batch of windows: unpacks as ``(x, y)``, int64 ``[B, T]`` each
    (``y`` is ``x`` shifted by one token).

    Also ``epoch``, ``batch_index`` (within the epoch), ``offsets`` (where each window starts in the
    corpus) and, for ``mode="packed"``, ``position_ids`` (int64 ``[B, T]``,
    restarting at every document), ``loss_mask`` (uint8 ``[B, T]``, 0 on
    padding) and ``cu_seqlens`` (int32, the boundaries variable-length
    attention takes); ``None`` in the other modes.
    """

    epoch: int
    batch_index: int
    offsets: list[int]
    position_ids: Any
    loss_mask: Any
    cu_seqlens: Any

    def __new__(cls, x: Any, y: Any, epoch: int, index: int, offsets: list[int], position_ids: Any,
                loss_mask: Any, cu_seqlens: Any) -> "TokenBatch":
        self = super().__new__(cls, (x, y))
        self.epoch, self.batch_index, self.offsets = epoch, index, offsets
        self.position_ids, self.loss_mask, self.cu_seqlens = position_ids, loss_mask, cu_seqlens
        return self

    @property
    def x(self) -> Any:
        """Inputs, int64 ``[B, T]``."""
        return self[0]

    @property
    def y(self) -> Any:
        """Targets, int64 ``[B, T]``."""
        return self[1]


class TokenLoader:
    """Batches of token windows from a tokenized corpus.

    ``path``: a ringfeed token dataset (``ringfeed tokenize``), a nanoGPT
    ``.bin`` (raw uint16 ids), a Megatron ``.bin`` + ``.idx`` pair, or a
    datatrove ``.ds`` file. Epochs are planned in runs of ``epochs`` and each
    ``iter()`` continues to the end of the run, as :class:`ringfeed.Loader`'s.

    Arguments (defaults in brackets): ``block_size`` T [1024],
    ``batch_size`` B [12]; ``mode``: ``"epoch"`` (every window once per
    epoch) [default], ``"random"`` (nanoGPT's random offsets, seeded) or
    ``"packed"`` (whole documents packed into windows, with position ids,
    loss mask and ``cu_seqlens``); ``shuffle`` of windows or documents
    [``"global"``]; ``seed`` [0]; ``rank`` / ``world_size`` [torchrun's];
    ``threads`` reading ahead [16]; ``prefetch`` batches [32];
    ``direct_io`` [False]; ``vocab_size``: ids at or above it are an error
    [the dataset's own]; ``dtype`` of a raw ``.bin`` [``"uint16"``]; ``eot``
    id where files do not record it [50256].
    """

    def __init__(self, path: Union[str, "os.PathLike[str]"], *, block_size: int = 1024, batch_size: int = 12,
                 mode: str = "epoch", shuffle: str = "global", seed: int = 0, epochs: int = 1,
                 rank: Optional[int] = None, world_size: Optional[int] = None, threads: Optional[int] = None,
                 prefetch: Optional[int] = None, direct_io: bool = False, vocab_size: Optional[int] = None,
                 dtype: Optional[str] = None, eot: Optional[int] = None) -> None:
        for name, value in (("block_size", block_size), ("batch_size", batch_size), ("epochs", epochs)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"{name}={value!r}: expected a positive integer")
        if rank is None and world_size is None and "WORLD_SIZE" in os.environ:
            try:
                rank, world_size = int(os.environ.get("RANK", "0")), int(os.environ["WORLD_SIZE"])
            except ValueError as e:
                raise ConfigError(f"torchrun's RANK / WORLD_SIZE: {e}") from None
        self._path = os.fspath(path)
        self._epochs = epochs
        self._args: dict[str, Any] = dict(
            block_size=block_size, batch_size=batch_size, mode=_choice("mode", mode, ("epoch", "random", "packed")),
            shuffle=_choice("shuffle", shuffle, ("global", "block", "sequential")), seed=seed, rank=rank,
            world_size=world_size, threads=threads, prefetch=prefetch, direct_io=direct_io,
            vocab_size=vocab_size, dtype=dtype, eot=eot)
        self._state: Optional[str] = None
        self._native: Optional[Any] = None
        self._batches: Optional[int] = None

    def __iter__(self) -> Iterator[TokenBatch]:
        first = _state.chunk_start(0, self._epochs, _state.position(self._state))
        native = _ringfeed._TokenLoader(self._path, epochs=first + self._epochs, state=self._state, **self._args)
        return self._run(native)

    def _run(self, native: Any) -> Iterator[TokenBatch]:
        import torch

        self.close()
        self._native = native
        self._batches = native.batches_per_epoch
        try:
            while True:
                got = native.next_batch()
                if got is None:
                    break
                epoch, index, x, y, offsets, pos, mask, cu = got
                self._state = native.state()
                packed = [None if t is None else torch.from_dlpack(t) for t in (pos, mask, cu)]
                yield TokenBatch(torch.from_dlpack(x), torch.from_dlpack(y), epoch, index, offsets, *packed)
        finally:
            native.close()
            if self._native is native:
                self._native = None

    def __len__(self) -> int:
        """Batches one ``iter()`` delivers from the start of an epoch (per rank)."""
        if self._batches is None:
            native = _ringfeed._TokenLoader(self._path, epochs=1, state=None, **self._args)
            self._batches = native.batches_per_epoch
            native.close()
        return self._batches * self._epochs

    @property
    def epoch(self) -> int:
        """The epoch of the next batch."""
        return _state.position(self._state) or 0

    def state_dict(self) -> dict[str, Any]:
        """``{"state": JSON}``: the position after the last batch delivered."""
        return _state.state_dict(self._state)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Continue from a :meth:`state_dict` at the next ``iter()``."""
        self.close()
        self._state = _state.loaded_state(state_dict)
        if self._state is not None and "batch" not in json.loads(self._state):
            raise ConfigError("not a token loader state (an image loader's?)")

    def close(self) -> None:
        """Stops a running iteration's reader threads."""
        if self._native is not None:
            self._native.close()
            self._native = None
