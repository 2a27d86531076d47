"""The embedded segmentation tasks: voxel label maps of the real volumes, hemisphere splits, patch files.

``mni152_tissue``: the MNI152 T1 labelled 0 background, 1 grey matter, 2 white matter, 3 CSF
(inside nilearn's brain mask, the most probable of GM, WM and 1 - GM - WM).
``colin27_aal``: the Colin27 T1 labelled 0 background and 1..8 the AAL lobes (AAL's own code
grouping, as the classification task).

Split, with no voxel shared between training and test: training and validation come from the
**left** hemisphere (world x < -1 mm), test from the **right** (x > +1 mm). Inside the left
hemisphere a mid-brain axial slab (a fifth of the brain's height in 2D, a third in 3D, every
3D patch wholly inside its slab) holds the validation patches. Training and validation are patches (cubes in 3D,
axial squares in 2D) centred on random brain voxels, every patch wholly inside its region;
the test items are whole held-out images for sliding-window inference: the right hemisphere's
brain box in 3D, every fourth axial slice of it in 2D.

Builds are deterministic (seeded) and idempotent (a manifest of the parameters): the folder
``<task>_seg_<2d|3d>_nifti`` holds ``train/``, ``val/``, ``test/`` NIfTI pairs (image float32
in 0..1 with the patch's own affine, label uint8) and a decathlon-style ``datalist.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .sampling import slab_ranges, split_rng
from .sources import LOBE_NAMES, SourceVolume, aal_lobe_of_code, load_colin27_aal, load_mni152, source_fingerprint
from .writers import write_label_nifti, write_nifti

__all__ = ["SEG_TASKS", "SEG_CLASS_NAMES", "segmentation_label_map", "build_segmentation_dataset"]

SEG_TASKS = ("mni152_tissue", "colin27_aal")
SEG_CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "mni152_tissue": ("background", "grey matter", "white matter", "CSF"),
    "colin27_aal": ("background", *LOBE_NAMES),
}
SEG_DATA_VERSION = "2"  # 2: label maps carry mm units like the images
MIDLINE_MARGIN_MM = 1.0
TEST_SLICE_STEP = 4
_DEFAULTS = {2: {"patch_size": 64, "n_train": 1000, "n_val": 100}, 3: {"patch_size": 48, "n_train": 240, "n_val": 40}}


def segmentation_label_map(task: str, source: SourceVolume) -> np.ndarray:
    """The task's voxel labels ``(X, Y, Z)`` uint8 on the source's grid (0 = background)."""
    if task == "mni152_tissue":
        gm, wm, mask = source.label_maps["gm"], source.label_maps["wm"], source.label_maps["mask"]
        probs = np.stack([gm, wm, np.clip(1.0 - gm - wm, 0.0, 1.0)])
        return np.where(mask, probs.argmax(0) + 1, 0).astype(np.uint8)
    if task == "colin27_aal":
        aal = source.label_maps["aal"]
        lut = np.zeros(int(aal.max()) + 1, dtype=np.uint8)
        for number, (_, code) in source.names.items():
            if number < lut.size:
                lut[number] = aal_lobe_of_code(code) + 1
        return lut[np.clip(aal, 0, None)]
    raise ValueError(f"unknown segmentation task {task!r}; known: {', '.join(SEG_TASKS)}")


def _load(task: str, template_dir: str | os.PathLike | None) -> SourceVolume:
    return load_mni152() if task == "mni152_tissue" else load_colin27_aal(template_dir)


def _patch_affine(affine: np.ndarray, corner: tuple[int, int, int]) -> np.ndarray:
    out = affine.copy()
    out[:3, 3] = affine[:3, :3] @ np.asarray(corner, dtype=float) + affine[:3, 3]
    return out


def _regions(labels: np.ndarray, affine: np.ndarray) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int, int, int]]:
    """Voxel x-ranges of the left and right hemispheres and the brain's box ``(y0, y1, z0, z1)``."""
    x_world = affine[0, 0] * np.arange(labels.shape[0]) + affine[0, 3]
    brain = np.argwhere(labels > 0)
    lo, hi = brain.min(0), brain.max(0) + 1
    left = (int(lo[0]), int(np.searchsorted(x_world, -MIDLINE_MARGIN_MM)))
    right = (int(np.searchsorted(x_world, MIDLINE_MARGIN_MM, side="right")), int(hi[0]))
    return left, right, (int(lo[1]), int(hi[1]), int(lo[2]), int(hi[2]))


def _sample_corners(labels, x_range, z_ranges, patch, spatial_dims, n, rng) -> list[tuple[int, int, int]]:
    """``n`` patch corners centred on brain voxels, each patch wholly inside ``x_range`` x ``z_ranges``."""
    half = patch // 2
    centres = np.argwhere(labels > 0)
    x_ok = (centres[:, 0] - half >= x_range[0]) & (centres[:, 0] - half + patch <= x_range[1])
    y_ok = (centres[:, 1] - half >= 0) & (centres[:, 1] - half + patch <= labels.shape[1])
    if spatial_dims == 3:
        z_ok = np.zeros(len(centres), dtype=bool)
        for start, stop in z_ranges:
            z_ok |= (centres[:, 2] - half >= start) & (centres[:, 2] - half + patch <= stop)
    else:
        z_ok = np.zeros(len(centres), dtype=bool)
        for start, stop in z_ranges:
            z_ok |= (centres[:, 2] >= start) & (centres[:, 2] < stop)
    candidates = centres[x_ok & y_ok & z_ok]
    if len(candidates) < n:
        raise ValueError(f"only {len(candidates)} admissible patch centres for {n} patches of {patch} voxels")
    chosen = candidates[rng.choice(len(candidates), size=n, replace=False)]
    return [(int(c[0]) - half, int(c[1]) - half, int(c[2]) - half if spatial_dims == 3 else int(c[2])) for c in chosen]


def _cut(volume: np.ndarray, corner, patch: int, spatial_dims: int) -> np.ndarray:
    x, y, z = corner
    if spatial_dims == 3:
        return volume[x : x + patch, y : y + patch, z : z + patch]
    return volume[x : x + patch, y : y + patch, z]


def build_segmentation_dataset(
    root: str | os.PathLike,
    task: str = "mni152_tissue",
    spatial_dims: int = 3,
    patch_size: int | None = None,
    n_train: int | None = None,
    n_val: int | None = None,
    seed: int = 0,
    template_dir: str | os.PathLike | None = None,
) -> Path:
    """Build (or reuse) the segmentation dataset; return its ``datalist.json``.

    Args:
        root: parent folder; the dataset goes to ``root/<task>_seg_<2d|3d>_nifti``.
        task: ``mni152_tissue`` or ``colin27_aal`` (needs Debian ``mricron-data``).
        spatial_dims: 2 (axial patches, axial test slices) or 3 (cubes, a test volume).
        patch_size: side of the training / validation patches (default 64 in 2D, 48 in 3D;
            a multiple of 16 for the U-Net students).
        n_train, n_val: patches per split (default 1000 / 100 in 2D, 240 / 40 in 3D).
        seed: patch sampling seed.
        template_dir: Colin27 / AAL templates folder (see ``mricron_template_dir``).
    """
    if task not in SEG_TASKS:
        raise ValueError(f"unknown segmentation task {task!r}; known: {', '.join(SEG_TASKS)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    defaults = _DEFAULTS[spatial_dims]
    patch = int(patch_size or defaults["patch_size"])
    if patch < 16 or patch % 16:
        raise ValueError(f"patch_size must be a multiple of 16 (the U-Net halves it four times), got {patch}")
    params = {"version": SEG_DATA_VERSION, "task": task, "spatial_dims": spatial_dims, "patch_size": patch,
              "n_train": int(n_train or defaults["n_train"]), "n_val": int(n_val or defaults["n_val"]), "seed": int(seed),
              "source": source_fingerprint(task, template_dir)}
    folder = Path(root) / f"{task}_seg_{spatial_dims}d_nifti"
    datalist_path = folder / "datalist.json"
    manifest = folder / "manifest.json"
    if datalist_path.is_file() and manifest.is_file() and json.loads(manifest.read_text()) == params:
        return datalist_path

    source = _load(task, template_dir)
    labels = segmentation_label_map(task, source)
    (left, right, (y0, y1, z0, z1)) = _regions(labels, source.affine)
    # validation: a mid-brain axial slab (so it holds every class), training above and below it;
    # 3D patches lie wholly inside their slab, so slabs of disjoint voxels need no further gap
    layout = [("training", 0.4), ("validation", 0.2), ("training", 0.4)] if spatial_dims == 2 else \
        [("training", 0.33), ("validation", 0.34), ("training", 0.33)]
    slabs = slab_ranges(z0, z1 - 1, layout, gap=2 if spatial_dims == 2 else 0)
    slabs = {k: [(a, b + 1 if b == z1 - 1 else b) for a, b in v] for k, v in slabs.items()}
    rng = split_rng(seed, task, spatial_dims, "segmentation")
    items: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    for split, sub, n in (("training", "train", params["n_train"]), ("validation", "val", params["n_val"])):
        (folder / sub).mkdir(parents=True, exist_ok=True)
        for i, corner in enumerate(_sample_corners(labels, left, slabs[split], patch, spatial_dims, n, rng)):
            affine = _patch_affine(source.affine, corner)
            name = f"{sub}/{sub}_{i:05d}"
            write_nifti(folder / f"{name}_image.nii.gz", _cut(source.quantised, corner, patch, spatial_dims), affine)
            write_label_nifti(folder / f"{name}_label.nii.gz", _cut(labels, corner, patch, spatial_dims), affine)
            items[split].append({"image": f"{name}_image.nii.gz", "label": f"{name}_label.nii.gz", "id": f"{sub}_{i:05d}"})
    (folder / "test").mkdir(parents=True, exist_ok=True)
    box = (slice(right[0], right[1]), slice(y0, y1))
    if spatial_dims == 3:
        tests = [((right[0], y0, z0), source.quantised[box + (slice(z0, z1),)], labels[box + (slice(z0, z1),)])]
    else:
        tests = [((right[0], y0, z), source.quantised[box + (z,)], labels[box + (z,)])
                 for z in range(z0 + TEST_SLICE_STEP // 2, z1, TEST_SLICE_STEP)]
    for i, (corner, image, label) in enumerate(tests):
        affine = _patch_affine(source.affine, corner)
        name = f"test/test_{i:05d}"
        write_nifti(folder / f"{name}_image.nii.gz", image, affine)
        write_label_nifti(folder / f"{name}_label.nii.gz", label, affine)
        items["test"].append({"image": f"{name}_image.nii.gz", "label": f"{name}_label.nii.gz", "id": f"test_{i:05d}"})
    datalist = {
        "name": folder.name, "task": task, "spatial_dims": spatial_dims, "patch_size": [patch] * spatial_dims,
        "labels": {str(i): n for i, n in enumerate(SEG_CLASS_NAMES[task])},
        "split": "train/val: left hemisphere (val: a mid-brain axial slab); test: right hemisphere",
        "source": source.source, **items,
    }
    datalist_path.write_text(json.dumps(datalist, indent=1))
    manifest.write_text(json.dumps(params))
    return datalist_path
