"""Atomic file writes: a temporary file in the destination's folder, then one ``os.replace``.

A reader, or a run killed while writing, then sees the previous file or the complete new one,
never a half-written one. The one helper every output writer of the project goes through
(models, exports, reports, label maps, CSV files); the training checkpoints (best model, resume)
are ignite ``Checkpoint`` files written by its ``DiskSaver(atomic=True)``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["atomic_write", "atomic_write_text", "atomic_torch_save"]


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any], prefix: str = ".tmp-") -> Path:
    """Create ``path`` by ``write(temporary path)`` and an atomic rename onto ``path``.

    The temporary file sits in the same folder (a rename across file systems is not atomic), is
    hidden (``.`` prefix: input scans skip it) and ends with ``path``'s own name, so writers that
    choose the format from the extension (nibabel's ``.nii.gz``, matplotlib's ``.png``) write the
    right one. It is created by ``write`` itself, so it gets the usual permissions (umask), unlike
    ``tempfile.mkstemp``'s owner-only ones. On any failure it is removed and ``path`` is untouched.

    Args:
        path: destination file; its folder is created if needed.
        write: writes the complete file at the path it is given.
        prefix: name prefix of the temporary file (``<prefix><8 hex>-<name>``).

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{prefix}{uuid.uuid4().hex[:8]}-{path.name}")
    try:
        write(tmp)
        os.replace(tmp, path)  # atomic on POSIX and Windows: readers see the old or the new file
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def atomic_write_text(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    """``Path(path).write_text(text)``, atomically (see :func:`atomic_write`)."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def atomic_torch_save(obj: Any, path: str | os.PathLike, prefix: str = ".tmp-") -> Path:
    """``torch.save(obj, path)``, atomically (see :func:`atomic_write`)."""
    import torch

    return atomic_write(path, lambda tmp: torch.save(obj, tmp), prefix=prefix)
