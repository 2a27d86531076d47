"""Build the embedded datasets: patch files (NIfTI or DICOM) plus a decathlon-style datalist.

Builds are deterministic (seeded; byte-identical files), idempotent (a manifest of the build
parameters and the source fingerprint; a matching manifest means nothing is rewritten) and
atomic (written to a hidden temporary folder, then renamed; a lock file serialises concurrent
builders such as the ranks of a ``torchrun`` job).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from .sampling import SPLITS, PatchExtractor
from .sources import source_fingerprint
from .tasks import default_patch_size, default_sizes, plan_task, resolve_label_set, sampling_constants
from .writers import DicomPatchWriter, write_nifti

__all__ = ["DATA_VERSION", "FORMATS", "dataset_name", "build_dataset", "ensure_dataset", "build_atomically",
           "is_current", "default_data_dir"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: bump when the content written for the same parameters changes
DATA_VERSION = "2"
FORMATS = ("nifti", "dicom")
MANIFEST = "manifest.json"
DATALIST = "datalist.json"
_SPLIT_DIRS = {"training": "train", "validation": "val", "test": "test"}
_SIZE_KEYS = ("n_train", "n_val", "n_test")
_REPO_ROOT = Path(__file__).resolve().parents[2]


def default_data_dir() -> str:
    """Where the embedded datasets are built: ``$RD_DATA_DIR``; in a source checkout
    ``<repository>/data``; for an installed package ``~/.cache/rd_components/data``."""
    if "RD_DATA_DIR" in os.environ:
        return os.environ["RD_DATA_DIR"]
    if (_REPO_ROOT / "bundles").is_dir() and (_REPO_ROOT / "rd_components").is_dir():
        return str(_REPO_ROOT / "data")
    return str(Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rd_components" / "data")


def dataset_name(task: str, spatial_dims: int, fmt: str, label_set: str | None = None) -> str:
    """Folder name ``<task>[_<label_set>]_<2d|3d>_<fmt>``."""
    label_set = resolve_label_set(task, label_set)
    middle = f"_{label_set}" if label_set else ""
    return f"{task}{middle}_{spatial_dims}d_{fmt}"


def _params(task, spatial_dims, fmt, label_set, patch_size, seed, sizes, template_dir) -> dict:
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    label_set = resolve_label_set(task, label_set)
    unknown = set(sizes) - set(_SIZE_KEYS)
    if unknown:
        raise TypeError(f"unknown size argument(s) {sorted(unknown)}; expected some of {_SIZE_KEYS}")
    full_sizes = {**default_sizes(task, label_set, spatial_dims), **{k: int(v) for k, v in sizes.items()}}
    patch_size = int(patch_size or default_patch_size(task, spatial_dims))
    if patch_size < 4:
        raise ValueError(f"patch_size must be >= 4, got {patch_size}")
    return {
        "version": DATA_VERSION,
        "task": task,
        "label_set": label_set,
        "spatial_dims": int(spatial_dims),
        "format": fmt,
        "patch_size": patch_size,
        "seed": int(seed),
        **full_sizes,
        "sampling": sampling_constants(task),
        "source": source_fingerprint(task, template_dir),
    }


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


def _write(folder: Path, name: str, params: dict, template_dir, progress: bool) -> dict[str, dict[int, int]]:
    from tqdm.auto import tqdm

    task, dims, fmt, p = params["task"], params["spatial_dims"], params["format"], params["patch_size"]
    sizes = {k: params[k] for k in _SIZE_KEYS}
    plan = plan_task(task, dims, params["label_set"], p, params["seed"], sizes, template_dir)

    extract = PatchExtractor(plan.volume.quantised, plan.volume.affine, p, dims)
    writer = None
    if fmt == "dicom":
        spacing = tuple(float(plan.volume.affine[i, i]) for i in range(3))
        namespace = f"{name}|p{p}|seed{params['seed']}|v{DATA_VERSION}"
        writer = DicomPatchWriter((p, p), spacing, namespace, f"{name} patch"[:64])

    datalist: dict = {
        "name": name,
        "description": plan.description,
        "task": task,
        "label_set": params["label_set"],
        "spatial_dims": dims,
        "format": fmt,
        "tensorImageSize": f"{dims}D",
        "modality": {"0": "T1w MR"},
        "patch_size": [p] * dims,
        "num_classes": len(plan.class_names),
        "labels": {str(i): n for i, n in enumerate(plan.class_names)},
        "intensity": plan.volume.intensity,
        "source": plan.volume.source,
        "split": plan.split_info,
        "seed": params["seed"],
        "version": DATA_VERSION,
    }
    counts: dict[str, dict[int, int]] = {}
    total = sum(len(v) for v in plan.samples.values())
    with tqdm(total=total, desc=f"writing {name}", unit="patch", disable=None if progress else True) as bar:
        for split in SPLITS:
            sub = folder / _SPLIT_DIRS[split]
            sub.mkdir(parents=True, exist_ok=True)
            items = []
            for idx, sample in enumerate(plan.samples[split]):
                i, j, k = sample.centre
                sample_id = f"{_SPLIT_DIRS[split]}-{idx:05d}-x{i:03d}y{j:03d}z{k:03d}"
                patch, affine = extract(sample.centre)
                if fmt == "nifti":
                    rel = f"{_SPLIT_DIRS[split]}/{sample_id}.nii.gz"
                    write_nifti(folder / rel, patch, affine)
                elif dims == 2:
                    rel = f"{_SPLIT_DIRS[split]}/{sample_id}.dcm"
                    writer.write_2d(folder / rel, patch, affine, sample_id)
                else:
                    rel = f"{_SPLIT_DIRS[split]}/{sample_id}"
                    writer.write_3d(folder / rel, patch, affine, sample_id)
                items.append({"image": rel, "label": sample.label, "id": sample_id, "centre": [i, j, k]})
                counts.setdefault(split, {}).setdefault(sample.label, 0)
                counts[split][sample.label] += 1
                bar.update(1)
            datalist[split] = items
    datalist.update({"numTraining": len(datalist["training"]), "numValidation": len(datalist["validation"]),
                     "numTest": len(datalist["test"])})
    (folder / DATALIST).write_text(json.dumps(datalist, indent=1) + "\n")
    return counts


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
            raise FileExistsError(f"{final} exists but was not built by rd_components.data; move it away first")
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


def build_dataset(root: str | os.PathLike, task: str = "mni152_tissue", spatial_dims: int = 2, fmt: str = "nifti",
                  label_set: str | None = None, patch_size: int | None = None, seed: int = 0, *,
                  template_dir: str | os.PathLike | None = None, force: bool = False, progress: bool = True,
                  **sizes: int) -> Path:
    """Build one embedded dataset under ``root`` unless an identical build is already there.

    Args:
        root: parent folder; the dataset goes to ``root/<task>[_<label_set>]_<2d|3d>_<fmt>/``.
        task: ``"mni152_tissue"`` (pip only) or ``"colin27_aal"`` (needs ``mricron-data``).
        spatial_dims: 2 (axial ``(P, P)`` patches) or 3 (``(P, P, P)`` cubes).
        fmt: ``"nifti"`` (one ``.nii.gz`` per patch) or ``"dicom"`` (one file per 2D patch, one
            series folder per 3D patch).
        label_set: ``colin27_aal`` only: ``"lobe"`` (default, 8 classes) or ``"region"`` (62).
        patch_size: side P; default 64 (2D), 32 (3D MNI152), 48 (3D Colin27).
        seed: sampling seed; the same arguments always give byte-identical files.
        template_dir: folder of Colin27/AAL files (else ``$RD_MRICRON_TEMPLATES``, else Debian's).
        force: rebuild even when a matching build exists.
        progress: show a tqdm bar while writing.
        sizes: ``n_train``, ``n_val``, ``n_test`` totals, spread evenly over the classes.

    Returns:
        path of ``datalist.json``.
    """
    params = _params(task, spatial_dims, fmt, label_set, patch_size, seed, sizes, template_dir)
    root = Path(root)
    name = dataset_name(task, spatial_dims, fmt, params["label_set"])
    start = time.perf_counter()
    counts = build_atomically(root, name, params, lambda folder: _write(folder, name, params, template_dir, progress),
                              force)
    if counts is not None:
        summary = "; ".join(f"{s}: {dict(sorted(c.items()))}" for s, c in counts.items())
        logger.info("built %s in %.1f s (%s)", root / name, time.perf_counter() - start, summary)
    return root / name / DATALIST


def ensure_dataset(root: str | os.PathLike, task: str = "mni152_tissue", spatial_dims: int = 2, fmt: str = "nifti",
                   label_set: str | None = None, patch_size: int | None = None, seed: int = 0, *,
                   template_dir: str | os.PathLike | None = None, progress: bool = True, **sizes: int) -> Path:
    """What bundles call at run time: build the dataset only if missing, return the datalist path.

    Logs one line: ``using dataset ...`` or, after a build, ``built ... in N s (class counts)``.

    Same arguments as :func:`build_dataset` (without ``force``).
    """
    params = _params(task, spatial_dims, fmt, label_set, patch_size, seed, sizes, template_dir)
    final = Path(root) / dataset_name(task, spatial_dims, fmt, params["label_set"])
    if is_current(final, params):
        logger.info("using dataset %s", final / DATALIST)
        return final / DATALIST
    return build_dataset(root, task, spatial_dims, fmt, params["label_set"], patch_size, seed,
                         template_dir=template_dir, progress=progress, **sizes)
