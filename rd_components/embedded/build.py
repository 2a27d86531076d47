"""Build the embedded classification datasets: patch files (NIfTI or DICOM) plus a decathlon-style
datalist, through :func:`rd_components.data.dataset_folder.build_atomically`.

Builds are deterministic (seeded; byte-identical files), idempotent (a manifest of the build
parameters and the source fingerprint; a matching manifest means nothing is rewritten) and
atomic (written to a hidden temporary folder, then renamed, under a lock).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from ..data.dataset_folder import DATALIST, build_atomically, is_current
from ..data.sampling import SPLITS, PatchExtractor
from ..data.writers import DicomPatchWriter, write_nifti
from .classification import default_patch_size, default_sizes, plan_task, sampling_constants
from .sources import source_fingerprint
from .tasks import FORMATS, resolve_label_set

__all__ = ["DATA_VERSION", "dataset_name", "build_dataset", "ensure_dataset"]

logger = logging.getLogger(__name__)

#: bump when the content written for the same parameters changes
DATA_VERSION = "2"
_SPLIT_DIRS = {"training": "train", "validation": "val", "test": "test"}
_SIZE_KEYS = ("n_train", "n_val", "n_test")


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
