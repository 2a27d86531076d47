"""A dataset folder built atomically: files plus ``datalist.json``, then a manifest of the
build's parameters, in a hidden temporary folder renamed into place under a lock.

Used by every builder of patch folders: the embedded datasets (:mod:`rd_components.embedded`)
and the patches cut from a user's segmentation volumes (:mod:`.segmentation.datalist`). A
matching manifest means nothing is rewritten; a build killed halfway leaves the previous
complete build (or nothing) in place; the lock serialises concurrent builders such as the
ranks of a ``torchrun`` job.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .sampling import SPLITS

__all__ = ["MANIFEST", "DATALIST", "build_atomically", "is_current", "default_data_dir"]

T = TypeVar("T")

MANIFEST = "manifest.json"
DATALIST = "datalist.json"
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> str:
    """Where the embedded datasets are built: ``$RD_DATA_DIR``; in a source checkout
    ``<repository>/data``; for an installed package ``~/.cache/rd_components/data``."""
    if "RD_DATA_DIR" in os.environ:
        return os.environ["RD_DATA_DIR"]
    if (_REPO_ROOT / "bundles").is_dir() and (_REPO_ROOT / "rd_components").is_dir():
        return str(_REPO_ROOT / "data")
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rd_components" / "data")


def is_current(folder: Path, params: dict) -> bool:
    """True when ``folder`` holds a complete build with exactly these parameters (every listed file present)."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        datalist = json.loads((folder / DATALIST).read_text())
    except (OSError, ValueError):
        return False
    if manifest != params:
        return False
    return all((folder / item[key]).exists() for split in SPLITS for item in datalist.get(split, [])
               for key in ("image", "label") if isinstance(item.get(key), str))


@contextmanager
def _lock(path: Path):
    try:
        import fcntl
    except ImportError:  # no advisory locks (Windows): concurrent builders fall back on the atomic rename
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def build_atomically(root: Path, name: str, params: dict, write: Callable[[Path], T], force: bool = False) -> T | None:
    """Build ``root/name`` with ``write(folder)`` unless a build with exactly ``params`` is there.

    ``write`` fills a hidden temporary folder (files and ``datalist.json``); the manifest of
    ``params`` is written last, then the folder replaces ``root/name`` by a rename. A lock file
    serialises concurrent builders (the ranks of a ``torchrun`` job), so a build killed halfway
    leaves the previous complete build (or nothing) in place, never a mix of two builds.

    Returns:
        what ``write`` returned, or ``None`` when a current build was already there.

    Raises:
        FileExistsError: ``root/name`` holds files but no manifest (not built here).
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    with _lock(root / f".{name}.lock"):
        if not force and is_current(final, params):
            return None
        if final.exists() and not (final / MANIFEST).exists() and any(final.iterdir()):
            raise FileExistsError(f"{final} exists but was not built by rd_components; move it away first")
        tmp = root / f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            result = write(tmp)
            (tmp / MANIFEST).write_text(json.dumps(params, indent=1) + "\n")  # last: marks the build complete
            if final.exists():
                old = root / f".{name}.old-{uuid.uuid4().hex[:8]}"
                final.rename(old)
                shutil.rmtree(old)
            tmp.rename(final)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp)
    return result
