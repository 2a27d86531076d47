"""Teacher feature cache: storage for frozen-teacher outputs, so the teacher runs once per (sample, view)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..atomic import atomic_write

__all__ = ["TeacherFeatureCache", "warn_unwritable_cache"]

logger = logging.getLogger(__name__)
_UNWRITABLE_WARNED: set[str] = set()


def warn_unwritable_cache(folder: str | os.PathLike, error: OSError) -> None:
    """Say once per folder and process, in one line, that a cache folder cannot be written.

    The cache (and the teacher card beside it) is only a speed-up: a full disk or a read-only
    folder must not stop a training run, but a run that silently stops caching is a mystery.
    """
    folder = str(folder)
    if folder in _UNWRITABLE_WARNED:
        return
    _UNWRITABLE_WARNED.add(folder)
    reason = " ".join(str(error.strerror or error).split())
    logger.warning("Teacher feature cache folder %s cannot be written (%s); going on without writing to it "
                   "(the teacher's features are recomputed where they are not cached).", folder, reason)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


Entry = "torch.Tensor | list[torch.Tensor]"


class TeacherFeatureCache:
    """In-memory and optional on-disk store of teacher features ``(C_T, *spatial')`` per sample.

    An entry is one map, or a list of maps (a teacher's stage features for dense distillation,
    stored as ``stage_0``, ``stage_1``, ... in the same file).

    Because the teacher is frozen and the reprogrammer sits after it, its output depends only on
    its input, that is on the sample, the augmentation view and the preprocessing. Entries are
    keyed by ``(sample id, view)`` inside a *namespace* that hashes the teacher's name, its
    weights digest and a description of the preprocessing: changing any of them selects a new
    namespace, so stale features are never served. Disk entries are ``safetensors`` files
    (no pickle) written atomically (temporary file + rename), so concurrent ranks and killed
    runs never leave a half-written entry. A folder that cannot be written (read-only, disk
    full) is said once (:func:`warn_unwritable_cache`); the run goes on with what it can read
    and its in-memory entries.

    Args:
        teacher_name: teacher registry name.
        weights_digest: stable digest of the teacher weights; pass ``FrozenTeacher.cache_key``,
            which also covers the teacher's input contract (input size, channels, range).
        preprocessing: anything JSON-serialisable that determines the teacher's input
            (patch size, intensity mapping, transform settings, view count).
        cache_dir: folder for the disk cache; ``None`` keeps it in memory only.
        in_memory: also keep entries in RAM (fast path for later epochs).
    """

    def __init__(
        self,
        teacher_name: str,
        weights_digest: str,
        preprocessing: Any = None,
        cache_dir: str | os.PathLike | None = None,
        in_memory: bool = True,
    ) -> None:
        description = {"teacher": teacher_name, "weights": weights_digest, "preprocessing": preprocessing}
        self.namespace = _digest(json.dumps(description, sort_keys=True, default=str))[:16]
        self.in_memory = in_memory
        self._memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0
        self.directory: Path | None = None
        self.writable = cache_dir is not None
        if cache_dir is not None:
            self.directory = Path(cache_dir) / self.namespace
            meta = self.directory / "namespace.json"
            try:
                self.directory.mkdir(parents=True, exist_ok=True)
                if not meta.exists():
                    meta.write_text(json.dumps(description, sort_keys=True, indent=2, default=str))
            except OSError as error:
                self._stop_writing(error)

    def _stop_writing(self, error: OSError) -> None:
        """No more disk writes this run (entries already there are still read)."""
        self.writable = False
        assert self.directory is not None
        warn_unwritable_cache(self.directory.parent, error)

    @staticmethod
    def entry_key(sample_id: str, view: int = 0) -> str:
        """Stable key of one (sample, view) pair."""
        return _digest(f"{sample_id}\x00{int(view)}")[:32]

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / key[:2] / f"{key}.safetensors"

    def get(self, key: str) -> torch.Tensor | list[torch.Tensor] | None:
        """Cached features ``(C_T, *spatial')`` (or the list of stage maps) on CPU, or ``None``."""
        if key in self._memory:
            return self._memory[key]
        if self.directory is not None:
            path = self._path(key)
            if path.exists():
                try:
                    stored = load_file(str(path))
                    tensor = stored["features"] if "features" in stored else [stored[f"stage_{i}"] for i in range(len(stored))]
                except Exception as error:  # a damaged entry is recomputed, never served
                    logger.warning("Feature cache entry %s unreadable (%s); recomputing.", path.name, error)
                    return None
                if self.in_memory:
                    self._memory[key] = tensor
                return tensor
        return None

    def put(self, key: str, features: torch.Tensor | Sequence[torch.Tensor]) -> None:
        """Store features ``(C_T, *spatial')``, or a list of stage maps (moved to CPU, contiguous)."""
        if isinstance(features, torch.Tensor):
            tensor: Any = features.detach().to("cpu").contiguous()
            stored = {"features": tensor}
        else:
            tensor = [f.detach().to("cpu").contiguous() for f in features]
            stored = {f"stage_{i}": t for i, t in enumerate(tensor)}
        if self.in_memory:
            self._memory[key] = tensor
        if self.directory is not None and self.writable:
            try:
                self._write(self._path(key), stored)
            except OSError as error:
                self._stop_writing(error)

    @staticmethod
    def _write(path: Path, stored: dict[str, torch.Tensor]) -> None:
        # atomic: concurrent ranks and cells may write the same entry; each write is complete
        atomic_write(path, lambda tmp: save_file(stored, str(tmp)))

    def lookup_batch(self, sample_ids: Sequence[str], views: Sequence[int]) -> tuple[list[str], list[Any]]:
        """Keys and cached features (``None`` for misses) of a batch."""
        keys = [self.entry_key(str(i), int(v)) for i, v in zip(sample_ids, views)]
        found = [self.get(k) for k in keys]
        hits = sum(f is not None for f in found)
        self.hits += hits
        self.misses += len(keys) - hits
        return keys, found

    def stats(self) -> Mapping[str, int]:
        """Hit and miss counts since creation."""
        return {"hits": self.hits, "misses": self.misses, "entries_in_memory": len(self._memory)}

    def __len__(self) -> int:
        return len(self._memory)
