"""Weight-file I/O every teacher shares: file and state-dict digests, checksum checks, safe loading.

Teachers load local files only (no hub downloads); every file is hashed (SHA-256) so that the
digest identifies the weights in feature-cache keys and logs, and is checked against an
expected digest when one is given.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any

import torch

__all__ = [
    "sha256_file",
    "state_dict_digest",
    "verify_sha256",
    "load_checkpoint",
    "unwrap_state_dict",
]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    """SHA-256 hex digest of a file, read in chunks (weight files are hundreds of MB)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def state_dict_digest(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over a state dict: sorted key names, dtypes, shapes and raw tensor bytes.

    Used as the weights digest of teachers that have no weight file (randomly initialised
    networks), so that two teachers with different weights never share a feature cache entry.
    """
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        # uint8 view: numpy has no bfloat16, and bytes are what identify the weights
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str | None) -> str:
    """Hash ``path``; raise ``ValueError`` naming the file when ``expected`` is given and differs.

    Not ``monai.apps.utils.check_hash``: it returns a bool, not the digest that becomes the
    teacher's ``weights_digest`` (the file would be read twice, hundreds of MB for I3ResNet),
    turns a read error into a mismatch, compares case-sensitively and logs to stdout.

    Returns:
        the file's SHA-256 hex digest.
    """
    digest = sha256_file(path)
    if expected is not None and digest.lower() != expected.lower():
        raise ValueError(
            f"SHA-256 mismatch for weights file {os.fspath(path)!r}: expected {expected}, got {digest}"
        )
    return digest


def unwrap_state_dict(checkpoint: Any) -> dict[str, torch.Tensor]:
    """Return the tensor mapping inside a loaded checkpoint.

    Accepts a bare state dict, or a dict holding one under ``state_dict``, ``model`` or
    ``network`` (Lightning, MONAI ``CheckpointSaver`` and common training scripts), and strips
    a ``module.`` prefix left by ``DataParallel``/``DistributedDataParallel``.
    """
    if isinstance(checkpoint, Mapping) and not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        for key in ("state_dict", "model", "network", "model_state_dict"):
            inner = checkpoint.get(key)
            if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                checkpoint = inner
                break
        else:
            raise ValueError(
                f"checkpoint holds no state dict (top-level keys: {sorted(map(str, checkpoint))[:10]})"
            )
    if not isinstance(checkpoint, Mapping):
        raise ValueError(f"checkpoint is a {type(checkpoint).__name__}, not a state dict")
    sd = dict(checkpoint)
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def load_checkpoint(
    path: str | os.PathLike, sha256: str | None = None, mmap: bool = False
) -> tuple[Any, str]:
    """Load a checkpoint file safely (``weights_only=True``) after checking its SHA-256.

    Args:
        path: local file; teachers never download anything.
        sha256: expected digest, or ``None`` to only compute it.
        mmap: memory-map the file instead of reading it (large fp16/bf16 files are then cast
            to float32 tensor by tensor without holding two full copies).

    Returns:
        ``(object stored in the file, file SHA-256)``.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"weights file {path!r} does not exist (teachers load local files only; no hub downloads)"
        )
    digest = verify_sha256(path, sha256)
    obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    return obj, digest
