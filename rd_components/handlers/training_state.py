"""Pieces of the training state a resume checkpoint holds, and how it is written.

Plain functions used by :class:`~rd_components.handlers.ResumableCheckpoint`: capture and
restore of every random number generator a training run draws from, a fingerprint of the run's
parameters, and an atomic ``torch.save``. What they return is stored in the checkpoint as is, so
changing their output changes the checkpoint format (``resume.FORMAT_VERSION``).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_torch_save  # the project's one atomic writer; re-exported here for resume.py

__all__ = ["atomic_torch_save", "capture_rng_state", "config_fingerprint", "restore_rng_state"]


def _pack_numpy_state(state: tuple) -> tuple:
    # torch.load(weights_only=True) refuses numpy arrays: the uint32 key array is kept as an int64 tensor
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)


def _unpack_numpy_state(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def _randomizables(transform: Any) -> list:
    """MONAI ``Randomizable`` transforms inside ``transform`` (a Compose, a transform or ``None``), in order."""
    from monai.transforms import Compose, Randomizable

    if transform is None:
        return []
    if isinstance(transform, Compose):
        return [r for t in transform.transforms for r in _randomizables(t)]
    return [transform] if isinstance(transform, Randomizable) else []


def capture_rng_state(random_transforms: Any = None) -> dict[str, Any]:
    """The current states of every random number generator a training run draws from.

    Args:
        random_transforms: the training dataset's random transform(s) (a MONAI ``Compose``, a
            transform or ``None``); the state of each ``Randomizable`` inside is captured, in order.

    Returns:
        ``{"torch": ByteTensor, "cuda": [ByteTensor per device] (empty without CUDA),
        "numpy": numpy's global state, "python": ``random.getstate()``, "transforms": [numpy
        state per random transform]}``; numpy states are tuples whose key array is an int64
        tensor, so the dict loads with ``torch.load(weights_only=True)``.
    """
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": _pack_numpy_state(np.random.get_state()),
        "python": random.getstate(),
        "transforms": [_pack_numpy_state(t.R.get_state()) for t in _randomizables(random_transforms)],
    }


def restore_rng_state(rng: Mapping[str, Any], random_transforms: Any = None) -> bool:
    """Set every random number generator to ``rng`` (from :func:`capture_rng_state`).

    The CUDA states are restored only when the number of visible devices matches; the random
    transforms' states only when ``random_transforms`` holds as many ``Randomizable`` as were
    captured.

    Returns:
        ``True`` when the random transforms' states were restored, ``False`` when their number
        changed (augmentation then does not replay exactly; the caller says so).
    """
    torch.set_rng_state(rng["torch"])
    if torch.cuda.is_available() and len(rng["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(rng["cuda"])
    np.random.set_state(_unpack_numpy_state(rng["numpy"]))
    random.setstate(rng["python"])
    transforms = _randomizables(random_transforms)
    if len(transforms) != len(rng["transforms"]):
        return False
    for transform, saved_state in zip(transforms, rng["transforms"]):
        transform.R.set_state(_unpack_numpy_state(saved_state))
    return True


def config_fingerprint(config: Any) -> tuple[str, dict]:
    """SHA-256 fingerprint of a run's parameters and their JSON-normalised form.

    Args:
        config: JSON-able parameters (values that are not JSON types are compared as ``str``),
            or ``None`` for none.

    Returns:
        ``(hex digest of the sorted JSON, the parameters as a plain dict)``; the dict is kept
        next to the digest so that a mismatch can name the parameters that differ.
    """
    flat = json.loads(json.dumps(config, sort_keys=True, default=str)) if config is not None else {}
    return hashlib.sha256(json.dumps(flat, sort_keys=True).encode()).hexdigest(), flat
