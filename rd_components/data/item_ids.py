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

__all__ = ["stable_id", "content_digest", "file_digest", "with_digest"]

#: the content digest that ends every id (see :func:`stable_id`)
_DIGEST_SUFFIX = re.compile(r"@[0-9a-f]{16}$")


#: file digests of this process, by (path, size, mtime, ctime, inode): each file is read once per run
_FILE_DIGESTS: dict[tuple[str, int, int, int, int], str] = {}


def _one_file_digest(path: str) -> str:
    st = os.stat(path)
    key = (path, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    digest = _FILE_DIGESTS.get(key)
    if digest is None:
        with open(path, "rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _FILE_DIGESTS[key] = digest
    return digest


def file_digest(path: str | os.PathLike) -> str | None:
    """SHA-256 of a file's bytes, or of a folder's files (a DICOM series: relative names and contents,
    sorted); ``None`` when ``path`` is neither (an in-memory image's placeholder name).

    Memoised per process by each file's path, size, modification and change times and inode, so a
    file is read once per run unless it changes. The one content digest of the project: item ids
    and the teacher feature cache's keys both end in it.
    """
    path = os.fspath(path)
    if os.path.isfile(path):
        return _one_file_digest(path)
    if not os.path.isdir(path):
        return None
    digest = hashlib.sha256()
    files = sorted(os.path.join(top, name) for top, _, names in os.walk(path) for name in names)
    for file in files:
        digest.update(f"{os.path.relpath(file, path)}\x00{_one_file_digest(file)}\x00".encode())
    return digest.hexdigest()


def content_digest(path: Path, digests: dict[str, str] | None = None) -> str:
    """16 hex digits of :func:`file_digest` (the id suffix), kept in ``digests`` when given."""
    key = str(path)
    if digests is not None and key in digests:
        return digests[key]
    value = (file_digest(path) or "")[:16]
    if digests is not None:
        digests[key] = value
    return value


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
