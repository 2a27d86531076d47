"""A teacher that is built only when its features are needed.

With a warm feature cache, training never runs the teacher, yet building it costs time and
memory (I3ResNet-152: about 680 MiB resident and several seconds to load its weights, more
than the whole student run needs). What the configs ask of a teacher *before* it runs, its
cache key, weights digest and feature shape, is remembered in a small JSON *teacher card*
next to the feature cache, written the first time the teacher is built. The card is trusted
only while every weight file it names has the same size and modification time as when the
card was written (the same rule ``make`` and ``git`` use for changed files); otherwise, and for
teachers without a weight file (random initialisation), the teacher is built.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..atomic import atomic_write_text
from .base import FrozenTeacher
from .feature_cache import warn_unwritable_cache

__all__ = ["LazyTeacher"]

logger = logging.getLogger(__name__)

_CARD_VERSION = 1


def _file_stat(path: str) -> list[Any]:
    st = os.stat(path)
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


class LazyTeacher(nn.Module):
    """Stands in for ``create_teacher(name, **kwargs)`` and builds it on first use.

    Answers ``cache_key``, ``weights_digest``, ``contract`` and ``feature_shape(size)`` from
    the teacher card in ``card_dir`` when the card is valid, so a run whose features all come
    from the cache never builds the teacher. Calling it (``forward``), :meth:`materialize` or
    any other teacher attribute builds the teacher, which is then moved to wherever ``.to()``
    last moved this module.

    The built teacher is kept out of this module's parameters and state dict: it is frozen, so
    no optimizer or checkpoint has anything to take from it.

    Args:
        name: a teacher name of :func:`~rd_components.foundation.create_teacher`.
        card_dir: folder of the teacher card (the bundles pass the feature cache folder);
            ``None`` keeps no card, so every question builds the teacher.
        kwargs: passed to ``create_teacher``.

    Shapes:
        as the teacher: ``(B, C, *spatial)`` -> ``(B, C_T, *spatial')``.
    """

    def __init__(self, name: str, card_dir: str | os.PathLike | None = None, **kwargs: Any) -> None:
        from .registry import check_teacher_name

        check_teacher_name(name)  # a typo fails here, in one line, not at the first cache miss
        super().__init__()
        self.teacher_name = str(name)
        self.teacher_kwargs = dict(kwargs)
        # zero-size buffer: follows .to()/.cuda(), so the teacher built later lands on the same device
        self.register_buffer("_device_probe", torch.zeros(0), persistent=False)
        identity = json.dumps({"name": self.teacher_name, "kwargs": self.teacher_kwargs}, sort_keys=True, default=str)
        card_name = f"teacher_card_{hashlib.sha256(identity.encode()).hexdigest()[:16]}.json"
        self.card_path = None if card_dir is None else Path(card_dir) / card_name
        self._card: dict[str, Any] | None = self._read_card()
        self._built: FrozenTeacher | None = None

    # ----------------------------------------------------------------- card
    def _read_card(self) -> dict[str, Any] | None:
        if self.card_path is None or not self.card_path.is_file():
            return None
        try:
            card = json.loads(self.card_path.read_text())
            files = card["weight_files"]
            if card.get("version") != _CARD_VERSION or not files:
                return None
            if any(_file_stat(f[0]) != f for f in files):
                logger.info("teacher %s: a weight file changed since its card was written; the teacher is built",
                            self.teacher_name)
                return None
            return card
        except (OSError, ValueError, KeyError, TypeError):
            return None  # unreadable or stale card: building the teacher answers every question

    def _write_card(self) -> None:
        teacher = self._built
        if self.card_path is None or teacher is None or not teacher.weight_files:
            return
        shapes = dict(self._card["feature_shapes"]) if self._card else {}
        card = {
            "version": _CARD_VERSION,
            "name": self.teacher_name,
            "kwargs": json.loads(json.dumps(self.teacher_kwargs, default=str)),
            "weight_files": [_file_stat(f) for f in teacher.weight_files],
            "weights_digest": teacher.weights_digest,
            "cache_key": teacher.cache_key,
            "contract": teacher.contract,
            "stage_channels": list(teacher.stage_channels),
            "feature_shapes": shapes,
        }
        self._card = card
        try:
            self._save_card(card)
        except OSError as error:  # the card, like the cache beside it, is only a speed-up
            warn_unwritable_cache(self.card_path.parent, error)

    def _save_card(self, card: dict[str, Any]) -> None:
        assert self.card_path is not None
        # atomic: concurrent cells may write the same card; each write is complete
        atomic_write_text(self.card_path, json.dumps(card, indent=1, sort_keys=True))

    # ----------------------------------------------------------------- building
    @property
    def is_built(self) -> bool:
        """Whether the teacher has been built in this process."""
        return self._built is not None

    def materialize(self) -> FrozenTeacher:
        """The real frozen teacher, built on the first call (and its card written)."""
        if self._built is None:
            logger.info("building teacher %s (its features are not all in the cache)", self.teacher_name)
            from .registry import create_teacher

            teacher = create_teacher(self.teacher_name, **self.teacher_kwargs)
            object.__setattr__(self, "_built", teacher.to(self._device_probe.device))
            self._write_card()
        return self._built

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> LazyTeacher:
        super()._apply(fn, *args, **kwargs)
        if self._built is not None:
            self._built._apply(fn, *args, **kwargs)
        return self

    # ----------------------------------------------------------------- answered from the card
    @property
    def cache_key(self) -> str:
        """See :attr:`FrozenTeacher.cache_key`."""
        return self._card["cache_key"] if self._built is None and self._card else self.materialize().cache_key

    @property
    def weights_digest(self) -> str:
        """See :attr:`FrozenTeacher.weights_digest`."""
        return self._card["weights_digest"] if self._built is None and self._card else self.materialize().weights_digest

    @property
    def contract(self) -> dict[str, Any]:
        """See :attr:`FrozenTeacher.contract`."""
        return self._card["contract"] if self._built is None and self._card else self.materialize().contract

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """See :attr:`FrozenTeacher.stage_channels`."""
        if self._built is None and self._card and "stage_channels" in self._card:
            return tuple(self._card["stage_channels"])
        return tuple(self.materialize().stage_channels)

    def feature_shape(self, spatial_size: Sequence[int]) -> tuple[int, ...]:
        """See :meth:`FrozenTeacher.feature_shape`; remembered in the card per input size."""
        key = "x".join(str(int(s)) for s in spatial_size)
        if self._built is None and self._card and key in self._card["feature_shapes"]:
            return tuple(self._card["feature_shapes"][key])
        shape = tuple(int(v) for v in self.materialize().feature_shape(spatial_size))
        if self._card is not None:
            self._card["feature_shapes"][key] = list(shape)
            self._write_card()
        return shape

    # ----------------------------------------------------------------- everything else builds
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Teacher features of ``x``; builds the teacher on the first call."""
        return self.materialize()(x)

    def train(self, mode: bool = True) -> LazyTeacher:
        # frozen teacher: always eval, built or not
        return super().train(False)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name.startswith("_") or name in ("teacher_name", "teacher_kwargs", "card_path"):
                raise
            return getattr(self.materialize(), name)

    def extra_repr(self) -> str:
        return f"{self.teacher_name!r}, built={self.is_built}, card={'valid' if self._card else 'none'}"
