"""Peak memory: one child process per configuration, each training two epochs."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .setup import VARIANTS, instantiate, variant_parser

# student, rd_cached (cold cache filled in epoch 1), rd_uncached, and rd_warm: RD on the cache
# that the rd_cached child left behind (the teacher is never built: its card answers)
MEMORY_CONFIGS = (*VARIANTS, "rd_warm")
# the command line that runs memory_child in a fresh interpreter (its hidden --child-memory option)
ENTRY_POINT = Path(__file__).resolve().parents[1] / "benchmark.py"


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the process image (``ru_maxrss``
    is inherited across fork and kept across exec, so a child started by a large parent would
    report the parent's peak). Elsewhere: ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def memory_child(bundle: str, config: str, data_root: Path, n_train: int | None,
                 cache_dir: Path | None = None) -> dict[str, Any]:
    """Body of a child process: build one configuration from its bundle parser, train two epochs, report peak RSS.

    The configuration builds everything itself, teacher included when it runs (the student
    alone never builds it), with its feature cache in ``cache_dir`` (default a temporary
    folder: a cold cache). ``rd_warm`` is ``rd_cached`` on the ``cache_dir`` an ``rd_cached``
    child filled before.

    Returns:
        dict with ``peak_rss_mib`` (imports, data, networks, teacher when used, cache, training),
        ``setup_peak_rss_mib`` (the peak after imports and the data loader, before any network)
        and on CUDA ``cuda_peak_allocated_mib``.
    """
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        variant = "rd_cached" if config == "rd_warm" else config
        parser = variant_parser(bundle, variant, data_root, n_train, Path(tmp),
                                cache_dir=Path(cache_dir or Path(tmp) / "cache"), epochs=2)
        parser.get_parsed_content("train#dataloader")
        setup_peak = peak_rss_mib()
        parts = instantiate(parser)
        parts.trainer.run()
        teacher = parser.get_parsed_content("teacher_net") if variant != "student" else None
    out: dict[str, Any] = {"peak_rss_mib": round(peak_rss_mib(), 1), "setup_peak_rss_mib": round(setup_peak, 1),
                           "epochs": 2, "teacher_built": bool(getattr(teacher, "is_built", teacher is not None))}
    if parts.cache is not None:
        out["cache_entries"] = len(parts.cache)
    if torch.cuda.is_available():
        out["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def measure_memory(bundle: str, data_root: Path, n_train: int | None, threads: int | None) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter per configuration.

    A fresh process per configuration, because peak RSS never goes down: measured in one
    process, each configuration would report the largest before it.
    """
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as shared_cache:
        for config in MEMORY_CONFIGS:
            cmd = [sys.executable, str(ENTRY_POINT), "--bundle", bundle, "--child-memory", config,
                   "--data-dir", str(data_root)]
            if config in ("rd_cached", "rd_warm"):
                # rd_cached fills this cache (and writes the teacher card); rd_warm then trains on it
                cmd += ["--child-cache-dir", shared_cache]
            if n_train:
                cmd += ["--samples", str(n_train)]
            if threads:
                cmd += ["--threads", str(threads)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            if proc.returncode != 0 or not lines:
                results[config] = {"error": (proc.stderr or proc.stdout)[-800:]}
            else:
                results[config] = json.loads(lines[-1])
    return results
