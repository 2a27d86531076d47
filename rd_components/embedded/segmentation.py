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

``colin27_aal`` is built on a **3 mm grid** (3 x 3 x 3 blocks: mean intensity, majority label)
with **whole-context patches**: where a voxel lies decides its lobe, and a 1 mm cube of 32 voxels
shows cortex but not where in the brain it is. A 3 mm cube of 32 voxels (96 mm) shows most of a
hemisphere and its outline. Such a cube does not fit inside one hemisphere, so the training and
validation patches are cut from the volume with the right hemisphere (world x > -1 mm) set to
0 and zero padding around it: they hold left-hemisphere voxels only, and the test is still the
right hemisphere, disjoint from them. Every second patch is mirrored across the midline (its
affine places it at the mirrored world position), so that a network sees a hemisphere in both
orientations, as it must at test time. Validation patches are centred on other voxels than the
training patches but overlap them (a 96 mm cube does not fit in an axial slab of a third of the
brain); they only select the checkpoint.

Builds are deterministic (seeded), idempotent (a manifest of the parameters) and atomic (as the
classification datasets, :func:`~rd_components.data.dataset_folder.build_atomically`): the folder
``<task>_seg_<2d|3d>_nifti`` holds ``train/``, ``val/``, ``test/`` NIfTI pairs (image float32
in 0..1 with the patch's own affine, label uint8) and a decathlon-style ``datalist.json``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..data.dataset_folder import DATALIST, build_atomically, is_current
from ..data.sampling import slab_ranges, split_rng
from ..data.writers import write_label_nifti, write_nifti
from .sources import SourceVolume, aal_lobe_of_code, load_colin27_aal, load_mni152, source_fingerprint
from .tasks import SEGMENTATION_CLASSES, TASKS

__all__ = ["segmentation_label_map", "build_segmentation_dataset"]

# 2: label maps carry mm units like the images; 3: built atomically (an earlier build killed halfway may hold a mix)
SEG_DATA_VERSION = "3"
MIDLINE_MARGIN_MM = 1.0
TEST_SLICE_STEP = 4
#: tasks whose label depends on where a voxel lies: built on a coarser grid (block factor) with whole-context patches
CONTEXT_GRID_FACTOR = {"colin27_aal": 3}
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
    raise ValueError(f"unknown segmentation task {task!r}; known: {', '.join(TASKS)}")


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


def coarsen(quantised: np.ndarray, labels: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Put a volume on a ``factor`` times coarser grid: mean intensity, majority label per block.

    Args:
        quantised: ``(X, Y, Z)`` uint16 intensities.
        labels: ``(X, Y, Z)`` uint8 label map.
        affine: ``(4, 4)`` voxel -> world of the fine grid.
        factor: block side in voxels; a trailing remainder of each axis is dropped.

    Returns:
        ``(quantised, labels, affine)`` of shape ``(X // factor, Y // factor, Z // factor)``; the new
        voxel centres are the block centres.
    """
    shape = tuple(s // factor for s in quantised.shape)
    crop = tuple(slice(0, s * factor) for s in shape)
    blocks = (shape[0], factor, shape[1], factor, shape[2], factor)
    image = np.rint(quantised[crop].astype(np.float64).reshape(blocks).mean((1, 3, 5))).astype(quantised.dtype)
    fine = labels[crop].reshape(blocks)
    counts = np.stack([(fine == c).sum((1, 3, 5)) for c in range(int(labels.max()) + 1)])
    coarse_affine = affine.copy()
    coarse_affine[:3, :3] = affine[:3, :3] * factor
    coarse_affine[:3, 3] = affine[:3, :3] @ np.full(3, (factor - 1) / 2.0) + affine[:3, 3]
    return image, counts.argmax(0).astype(np.uint8), coarse_affine


def _mirrored_affine(affine: np.ndarray, patch_shape: tuple[int, ...]) -> np.ndarray:
    """The affine of a patch flipped along x and placed at the mirrored world position (x -> -x).

    Voxel ``i`` of the flipped patch is voxel ``n - 1 - i`` of the original, at world x
    ``x0 + s (n - 1 - i)``; mirrored, that is ``-(x0 + s (n - 1)) + s i``: same spacing, new origin.
    """
    out = affine.copy()
    out[0, 3] = -(affine[0, 3] + affine[0, 0] * (patch_shape[0] - 1))
    return out


def _context_patches(image, labels, affine, x_range, patch, spatial_dims, counts, rng):
    """Patches centred on ``x_range`` brain voxels, cut with zero padding from the volume masked to ``x_range``.

    Yields ``(split, image_patch, label_patch, patch_affine)`` for ``counts = [(split, n), ...]``;
    every second patch of a split is mirrored across the midline.
    """
    keep = np.zeros(image.shape[0], dtype=bool)
    keep[x_range[0] : x_range[1]] = True
    masked_image = np.where(keep[:, None, None], image, 0).astype(image.dtype)
    masked_labels = np.where(keep[:, None, None], labels, 0).astype(labels.dtype)
    pad = patch // 2
    widths = [(pad, patch)] * 3 if spatial_dims == 3 else [(pad, patch), (pad, patch), (0, 0)]
    padded_image, padded_labels = np.pad(masked_image, widths), np.pad(masked_labels, widths)
    centres = np.argwhere(masked_labels > 0)
    total = sum(n for _, n in counts)
    if len(centres) < total:
        raise ValueError(f"only {len(centres)} brain voxels for {total} patch centres")
    chosen = centres[rng.choice(len(centres), size=total, replace=False)]
    start = 0
    for split, n in counts:
        for i, centre in enumerate(chosen[start : start + n]):
            # the corner in the padded volume is centre - pad + pad; in 2D the third index is the slice
            corner = tuple(int(c) for c in centre)
            image_patch = _cut(padded_image, corner, patch, spatial_dims)
            label_patch = _cut(padded_labels, corner, patch, spatial_dims)
            world_corner = (corner[0] - pad, corner[1] - pad, corner[2] - pad if spatial_dims == 3 else corner[2])
            patch_affine = _patch_affine(affine, world_corner)
            if i % 2:
                image_patch, label_patch = image_patch[::-1], label_patch[::-1]
                patch_affine = _mirrored_affine(patch_affine, image_patch.shape)
            yield split, np.ascontiguousarray(image_patch), np.ascontiguousarray(label_patch), patch_affine
        start += n


def _slab_patches(image, labels, affine, x_range, z_extent, patch, spatial_dims, counts, rng):
    """Patches wholly inside ``x_range`` and inside axial slabs: validation a mid-brain slab, training above and below.

    Yields ``(split, image_patch, label_patch, patch_affine)`` for ``counts = [(split, n), ...]``.
    """
    z0, z1 = z_extent
    # validation: a mid-brain axial slab (so it holds every class), training above and below it;
    # 3D patches lie wholly inside their slab, so slabs of disjoint voxels need no further gap
    layout = [("training", 0.4), ("validation", 0.2), ("training", 0.4)] if spatial_dims == 2 else \
        [("training", 0.33), ("validation", 0.34), ("training", 0.33)]
    slabs = slab_ranges(z0, z1 - 1, layout, gap=2 if spatial_dims == 2 else 0)
    slabs = {k: [(a, b + 1 if b == z1 - 1 else b) for a, b in v] for k, v in slabs.items()}
    for split, n in counts:
        for corner in _sample_corners(labels, x_range, slabs[split], patch, spatial_dims, n, rng):
            yield (split, _cut(image, corner, patch, spatial_dims), _cut(labels, corner, patch, spatial_dims),
                   _patch_affine(affine, corner))


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
    if task not in TASKS:
        raise ValueError(f"unknown segmentation task {task!r}; known: {', '.join(TASKS)}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    defaults = _DEFAULTS[spatial_dims]
    patch = int(patch_size or defaults["patch_size"])
    if patch < 16 or patch % 16:
        raise ValueError(f"patch_size must be a multiple of 16 (the U-Net halves it four times), got {patch}")
    params = {"version": SEG_DATA_VERSION, "task": task, "spatial_dims": spatial_dims, "patch_size": patch,
              "n_train": int(n_train or defaults["n_train"]), "n_val": int(n_val or defaults["n_val"]), "seed": int(seed),
              "source": source_fingerprint(task, template_dir)}
    if task in CONTEXT_GRID_FACTOR:
        params["grid_factor"] = CONTEXT_GRID_FACTOR[task]
    root = Path(root)
    name = f"{task}_seg_{spatial_dims}d_nifti"
    if not is_current(root / name, params):
        # the same lock, temporary folder, manifest and rename as the classification datasets
        build_atomically(root, name, params, lambda folder: _write(folder, name, params, template_dir))
    return root / name / DATALIST


def _write(folder: Path, name: str, params: dict, template_dir: str | os.PathLike | None) -> None:
    """Write the patches, test images and ``datalist.json`` of dataset ``name`` into ``folder`` (temporary)."""
    task, spatial_dims, patch, seed = params["task"], params["spatial_dims"], params["patch_size"], params["seed"]
    source = _load(task, template_dir)
    image, labels, affine = source.quantised, segmentation_label_map(task, source), source.affine
    factor = CONTEXT_GRID_FACTOR.get(task)
    if factor:
        image, labels, affine = coarsen(image, labels, affine, factor)
    (left, right, (y0, y1, z0, z1)) = _regions(labels, affine)
    rng = split_rng(seed, task, spatial_dims, "segmentation")
    counts = [("training", params["n_train"]), ("validation", params["n_val"])]
    patches = _context_patches(image, labels, affine, left, patch, spatial_dims, counts, rng) if factor else \
        _slab_patches(image, labels, affine, left, (z0, z1), patch, spatial_dims, counts, rng)
    items: dict[str, list[dict]] = {"training": [], "validation": [], "test": []}
    subfolder = {"training": "train", "validation": "val"}
    for sub in subfolder.values():
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for split, image_patch, label_patch, patch_affine in patches:
        sub, i = subfolder[split], len(items[split])
        stem = f"{sub}/{sub}_{i:05d}"
        write_nifti(folder / f"{stem}_image.nii.gz", image_patch, patch_affine)
        write_label_nifti(folder / f"{stem}_label.nii.gz", label_patch, patch_affine)
        items[split].append({"image": f"{stem}_image.nii.gz", "label": f"{stem}_label.nii.gz", "id": f"{sub}_{i:05d}"})
    (folder / "test").mkdir(parents=True, exist_ok=True)
    box = (slice(right[0], right[1]), slice(y0, y1))
    if spatial_dims == 3:
        tests = [((right[0], y0, z0), image[box + (slice(z0, z1),)], labels[box + (slice(z0, z1),)])]
    else:
        tests = [((right[0], y0, z), image[box + (z,)], labels[box + (z,)])
                 for z in range(z0 + TEST_SLICE_STEP // 2, z1, TEST_SLICE_STEP)]
    for i, (corner, test_image, label) in enumerate(tests):
        stem = f"test/test_{i:05d}"
        write_nifti(folder / f"{stem}_image.nii.gz", test_image, _patch_affine(affine, corner))
        write_label_nifti(folder / f"{stem}_label.nii.gz", label, _patch_affine(affine, corner))
        items["test"].append({"image": f"{stem}_image.nii.gz", "label": f"{stem}_label.nii.gz", "id": f"test_{i:05d}"})
    datalist = {
        "name": name, "task": task, "spatial_dims": spatial_dims, "patch_size": [patch] * spatial_dims,
        "labels": {str(i): n for i, n in enumerate(SEGMENTATION_CLASSES[task])},
        "split": ("train/val: left hemisphere, whole-context patches, every second one mirrored; test: right hemisphere"
                  if factor else "train/val: left hemisphere (val: a mid-brain axial slab); test: right hemisphere"),
        "source": source.source, **items,
    }
    (folder / DATALIST).write_text(json.dumps(datalist, indent=1))
