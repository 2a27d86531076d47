"""What may leave the machine in logs and MLflow records: no absolute input path, no credential.

Folders of PACS exports are often named after the patient (``/exports/DOE^JANE/CT``), and an
MLflow tracking URI may carry a user name and password. MLflow parameters, artifacts and
printed lines are shared far more widely than the data, so paths are logged relative to a folder
the record already implies (the data folder, the bundle) or as a digest, and URIs with their
credentials masked. A digest still tells two runs on the same folder from runs on another one.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["path_digest", "loggable_path", "redact_paths", "mask_credentials", "mask_logged_credentials"]

#: query-string keys whose values are secrets (``?token=...``)
_SECRET_KEYS = re.compile(r"token|secret|password|passwd|pwd|key|signature|sig|credential", re.IGNORECASE)


def path_digest(path: str | os.PathLike) -> str:
    """``path-<12 hex>``: a digest of the absolute path, the same for the same folder on one machine."""
    absolute = os.path.abspath(os.path.expanduser(str(path)))
    return "path-" + hashlib.sha256(absolute.encode("utf-8")).hexdigest()[:12]


def _inside(path: Path, root: str | os.PathLike) -> str | None:
    root_path = Path(os.path.abspath(os.path.expanduser(str(root))))
    try:
        relative = path.relative_to(root_path)
    except ValueError:
        return None
    return relative.as_posix() if str(relative) != "." else "."


def loggable_path(path: str | os.PathLike | None, roots: Sequence[str | os.PathLike | None] | str | os.PathLike | None = None) -> str | None:
    """``path`` as it may be logged: relative to the first of ``roots`` that holds it, else a digest.

    ``None`` and ``""`` stay as they are; so does a URI (``s3://...``: its credentials masked) and a
    path that is already relative (the user chose it).
    """
    if path is None or str(path) == "":
        return None if path is None else ""
    text = str(path)
    if "://" in text:
        return mask_credentials(text)
    if not os.path.isabs(os.path.expanduser(text)):
        return Path(os.path.normpath(text)).as_posix()  # the user chose it; ./models/x and models/x alike
    absolute = Path(os.path.abspath(os.path.expanduser(text)))
    if isinstance(roots, (str, os.PathLike)):
        roots = [roots]
    for root in roots or ():
        if root:
            inside = _inside(absolute, root)
            if inside is not None:
                return inside
    return path_digest(absolute)


def _looks_like_absolute_path(text: str) -> bool:
    return os.path.isabs(text) and not text.startswith("//") and "\n" not in text and len(text) < 4096


def redact_paths(value: Any, roots: Sequence[str | os.PathLike | None] = ()) -> Any:
    """A copy of a config-like structure with every absolute path made loggable and every URI masked.

    Strings that are absolute paths become :func:`loggable_path` (relative to ``roots`` or a
    digest); URIs inside strings get their credentials masked. Config expressions (``$...``) are
    code and stay as written: the paths a user gives arrive as plain command-line values.
    """
    if isinstance(value, dict):
        return {key: redact_paths(item, roots) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_paths(item, roots) for item in value)
    if not isinstance(value, str):
        return value
    if "://" in value:
        value = re.sub(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+", lambda m: mask_credentials(m.group(0)), value)
    return loggable_path(value, roots) if _looks_like_absolute_path(value) else value


def mask_credentials(uri: str) -> str:
    """``uri`` with its user name, password and secret query values replaced by ``***``.

    ``http://alice:pw@host:5000/path?token=x`` -> ``http://***:***@host:5000/path?token=***``;
    a URI without credentials comes back unchanged.
    """
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = ("***:***" if ":" in userinfo else "***") + "@" + host
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_KEYS.search(k) for k, _ in pairs):
            query = urlencode([(k, "***" if _SECRET_KEYS.search(k) else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return uri
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"]+")


class _CredentialFilter(logging.Filter):
    """Masks the credentials of every URI in a log record's message (see :func:`mask_credentials`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "://" in message and "@" in message:
            record.msg, record.args = _URI.sub(lambda m: mask_credentials(m.group(0)), message), ()
        return True


def mask_logged_credentials(logger_names: Sequence[str] = ("monai.bundle.scripts",)) -> None:
    """Mask URI credentials in what MONAI's bundle command prints (its input summary lists every
    command-line value, ``--tracking_uri http://user:password@host`` included) and in every record
    the root logger's handlers print. For a bundle config's ``initialize`` list: MONAI prints its
    summary after ``initialize``; idempotent."""
    targets = [logging.getLogger(name) for name in logger_names]
    targets += [handler for handler in logging.getLogger().handlers]
    for target in targets:
        if not any(isinstance(f, _CredentialFilter) for f in target.filters):
            target.addFilter(_CredentialFilter())
