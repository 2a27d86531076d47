"""Item ids that follow the file: ``<path relative to the data folder>[#frame]@<content digest>``.

The teacher feature cache keys on an item's id, so an id must change when the file's pixels do
and stay the same across runs and machine layouts; the digest at the end of every id does both.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from ..errors import DataConfigError

__all__ = ["stable_id", "content_digest", "with_digest"]

#: the content digest that ends every id (see :func:`stable_id`)
_DIGEST_SUFFIX = re.compile(r"@[0-9a-f]{16}$")


def _digest_path(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def content_digest(path: Path, digests: dict[str, str] | None) -> str:
    """16 hex digits of the SHA-256 of ``path``'s content (a folder: its files' relative names and
    bytes), computed once per path in ``digests`` (the frames of one multi-frame file share it)."""
    if digests is None:
        return _digest_path(path)
    key = str(path)
    if key not in digests:
        digests[key] = _digest_path(path)
    return digests[key]


def stable_id(image: str | os.PathLike, root: str | os.PathLike | None = None, frame: int | None = None,
              digests: dict[str, str] | None = None) -> str:
    """``<path relative to root>[#frame]@<content digest>``: the same file gives the same id on
    every run and machine layout, a changed file a new one (the feature cache keys on it).

    ``digests`` memoises the content digest per path within one listing (pass the same dict for
    every frame of a file).

    Raises:
        DataConfigError: the image does not exist.
    """
    path = Path(image)
    if not path.exists():
        raise DataConfigError(f"image {path} not found")
    name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
    return f"{name}{'' if frame is None else f'#{int(frame)}'}@{content_digest(path, digests)}"


def with_digest(given: str, frame: int | None, digest: str) -> str:
    """A user-given id made honest: ``<id>[#frame]@<digest>``; a digest the id already ends with
    is replaced (a file changed since a normalised datalist was written gets a new id)."""
    name = _DIGEST_SUFFIX.sub("", given)
    if frame is not None and not name.endswith(f"#{int(frame)}"):
        name += f"#{int(frame)}"  # one file's frames are different images
    return f"{name}@{digest}"
