"""What the loaders share: the ``Stateful`` protocol's bookkeeping."""

from __future__ import annotations

import json
from typing import Any, Optional

from .errors import ConfigError


def state_dict(state: Optional[str]) -> dict[str, Any]:
    """``{"state": JSON}`` (``""`` before the first batch): the same keys
    at every point, as ``torch.distributed.checkpoint`` needs to load in
    place."""
    return {"state": state or ""}


def loaded_state(state_dict: dict[str, Any]) -> Optional[str]:
    """The state in a ``state_dict``, checked to be a loader state's JSON."""
    if not isinstance(state_dict, dict) or "state" not in state_dict:
        raise ConfigError(f"not a ringfeed loader state_dict (no 'state' key): {state_dict!r}")
    state = state_dict["state"]
    if isinstance(state, bytes):
        state = state.decode()
    if state in ("", None):
        return None
    if not isinstance(state, str):
        raise ConfigError(f"a ringfeed loader state is a JSON string, not {type(state).__name__}")
    try:
        if not isinstance(json.loads(state), dict):
            raise ValueError("not an object")
    except ValueError as e:
        raise ConfigError(f"invalid ringfeed loader state: {e}") from None
    return state


def position(state: Optional[str]) -> Optional[int]:
    """The epoch of the next batch, from a state's JSON."""
    return None if state is None else int(json.loads(state)["epoch"])


def chunk_start(start_epoch: int, epochs: int, epoch: Optional[int]) -> int:
    """The first epoch of the run of ``epochs`` epochs (counted from
    ``start_epoch``) that holds ``epoch``, the position's."""
    if epoch is None:
        return start_epoch
    return start_epoch + (epoch - start_epoch) // epochs * epochs
