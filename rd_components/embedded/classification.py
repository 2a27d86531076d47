"""The embedded classification tasks planned: which centres, which labels, which split (the task
table is :mod:`.tasks`).

``mni152_tissue`` (pip only, the default of both bundles)
    Patches of the real MNI152 T1 labeled by the tissue at their centre voxel: 0 grey matter,
    1 white matter, 2 CSF/other, from nilearn's GM/WM probability maps (CSF/other =
    1 - GM - WM) inside the brain mask. A centre is only used when its most probable class has
    probability >= 0.5, which drops partial-volume voxels whose label would be a coin toss.
    Split by slabs with a gap: 2D along z (axial; gap 8 slices, layout train|val|test|train so
    val/test sit mid-brain), 3D along y (coronal; gap = patch size, layout val|train|test).
    The 3D split is coronal because two 32-voxel gaps leave too few of the 155 axial brain
    slices for three useful slabs; the coronal brain extent is 181 voxels.

``colin27_aal`` (needs Debian ``mricron-data``)
    Patches of the real Colin27 T1 centred on an AAL region voxel, labeled by lobe (8 classes
    from AAL's own code grouping) or by region (left/right pairs merged: 62 classes). Training
    and validation centres lie in the LEFT hemisphere (world x < -margin), test centres in the
    RIGHT (x > margin): a real generalisation test. Validation takes the left centres on 2 of
    every 10 axial slices (slices no training centre uses); their patches still overlap
    training patches, so validation is optimistic and meant for model selection only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..data.sampling import SPLITS, PatchSample, in_ranges, per_class_counts, sample_balanced, slab_ranges
from .sources import LOBE_NAMES, SourceVolume, aal_lobe_of_code, load_colin27_aal, load_mni152

__all__ = [
    "TaskPlan",
    "default_patch_size",
    "default_sizes",
    "sampling_constants",
    "tissue_labels",
    "plan_task",
]


TISSUE_NAMES = ("grey matter", "white matter", "CSF/other")
MIN_CLASS_PROB = 0.5
MNI_GAP_2D = 8
MIDLINE_MARGIN_MM = 1.0
VAL_SLICE_BLOCK, VAL_SLICE_PERIOD, VAL_SLICE_PHASE = 2, 5, 2

_DEFAULT_PATCH = {("mni152_tissue", 2): 64, ("mni152_tissue", 3): 32, ("colin27_aal", 2): 64, ("colin27_aal", 3): 48}
# totals for mni152; per class for colin27 (the lobe 2D numbers are BENCHMARKS.md's calibration)
_DEFAULT_SIZES = {
    ("mni152_tissue", None, 2): (1500, 300, 300),
    ("mni152_tissue", None, 3): (600, 150, 150),
    ("colin27_aal", "lobe", 2): (120, 30, 60),
    ("colin27_aal", "lobe", 3): (60, 15, 30),
    ("colin27_aal", "region", 2): (16, 4, 8),
    ("colin27_aal", "region", 3): (8, 2, 4),
}


@dataclass
class TaskPlan:
    """Everything needed to write one dataset.

    Attributes:
        volume: the source volume (quantised intensities, affine, provenance).
        class_names: index -> name.
        samples: ``{split: [PatchSample, ...]}`` for the splits of :data:`SPLITS`.
        description: one sentence for the datalist.
        split_info: how the split was made (written to the datalist).
    """

    volume: SourceVolume
    class_names: list[str]
    samples: dict[str, list[PatchSample]]
    description: str
    split_info: dict = field(default_factory=dict)


def default_patch_size(task: str, spatial_dims: int) -> int:
    """Patch side length used when the caller gives none."""
    return _DEFAULT_PATCH[(task, spatial_dims)]


def default_sizes(task: str, label_set: str | None, spatial_dims: int) -> dict[str, int]:
    """Default ``{"n_train", "n_val", "n_test"}`` totals."""
    n = _DEFAULT_SIZES[(task, label_set, spatial_dims)]
    if task == "colin27_aal":
        classes = 8 if label_set == "lobe" else 62
        n = tuple(v * classes for v in n)
    return dict(zip(("n_train", "n_val", "n_test"), n))


def sampling_constants(task: str) -> dict:
    """The fixed sampling rules of a task (recorded in the build manifest so that changing them rebuilds)."""
    if task == "mni152_tissue":
        return {"min_class_prob": MIN_CLASS_PROB, "gap_2d": MNI_GAP_2D, "gap_3d": "patch_size"}
    return {"midline_margin_mm": MIDLINE_MARGIN_MM, "val_slices": [VAL_SLICE_BLOCK, VAL_SLICE_PERIOD, VAL_SLICE_PHASE]}


def plan_task(task: str, spatial_dims: int, label_set: str | None, patch_size: int, seed: int,
              sizes: dict[str, int], template_dir: str | os.PathLike | None = None) -> TaskPlan:
    """Load the source and choose every patch centre of the dataset (no file written)."""
    if task == "mni152_tissue":
        return _plan_mni152(spatial_dims, patch_size, seed, sizes)
    return _plan_colin27(spatial_dims, label_set, patch_size, seed, sizes, template_dir)


def _counts(sizes: dict[str, int], num_classes: int) -> dict[str, list[int]]:
    keys = dict(zip(SPLITS, ("n_train", "n_val", "n_test")))
    return {split: per_class_counts(sizes[k], num_classes) for split, k in keys.items()}


def tissue_labels(gm: np.ndarray, wm: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel-wise tissue class and whether the voxel may be a patch centre.

    Args:
        gm, wm: ``(X, Y, Z)`` grey/white-matter probabilities; CSF/other is ``1 - gm - wm``.
        mask: ``(X, Y, Z)`` brain mask.

    Returns:
        ``(label, eligible)``: int8 argmax of (gm, wm, csf) (ties to the lower class) and bool
        ``mask & max probability >= MIN_CLASS_PROB``.
    """
    csf = np.clip(1.0 - gm - wm, 0.0, 1.0)
    label = np.where((gm >= wm) & (gm >= csf), 0, np.where(wm >= csf, 1, 2)).astype(np.int8)
    eligible = mask & ((gm >= MIN_CLASS_PROB) | (wm >= MIN_CLASS_PROB) | (csf >= MIN_CLASS_PROB))
    return label, eligible


def _plan_mni152(spatial_dims: int, patch_size: int, seed: int, sizes: dict[str, int]) -> TaskPlan:
    vol = load_mni152()
    label, eligible = tissue_labels(vol.label_maps["gm"], vol.label_maps["wm"], vol.label_maps["mask"])

    if spatial_dims == 2:
        axis, gap = 2, MNI_GAP_2D
        layout = [("training", 0.35), ("validation", 0.15), ("test", 0.15), ("training", 0.35)]
    else:
        axis, gap = 1, patch_size
        layout = [("validation", 0.2), ("training", 0.6), ("test", 0.2)]
    extent = np.nonzero(eligible.any(axis=tuple(a for a in range(3) if a != axis)))[0]
    ranges = slab_ranges(int(extent.min()), int(extent.max()), layout, gap)

    coords = [np.argwhere(eligible & (label == c)) for c in range(3)]
    counts = _counts(sizes, 3)
    samples = {}
    for split in SPLITS:
        cands = [cc[in_ranges(cc[:, axis], ranges[split])] for cc in coords]
        samples[split] = sample_balanced(split, cands, counts[split], seed, TISSUE_NAMES)
    kind = "axial 2D" if spatial_dims == 2 else "3D"
    return TaskPlan(
        volume=vol,
        class_names=list(TISSUE_NAMES),
        samples=samples,
        description=(
            f"{kind} patches of the MNI152 2009 T1 template labeled by the tissue at the centre voxel "
            f"(argmax of GM, WM, 1-GM-WM probability, kept only if >= {MIN_CLASS_PROB}, inside the brain mask)"
        ),
        split_info={
            "method": "slabs of patch centres along one axis with a gap; patches never overlap across splits",
            "axis": "xyz"[axis],
            "gap_voxels": gap,
            "centre_ranges": {k: [list(r) for r in v] for k, v in ranges.items()},
            "min_class_probability": MIN_CLASS_PROB,
        },
    )


def _colin_classes(vol: SourceVolume, label_set: str) -> tuple[list[str], np.ndarray]:
    # lookup table: AAL region number -> class index (-1 = outside the atlas)
    table = np.full(max(vol.names) + 1, -1, dtype=np.int64)
    if label_set == "lobe":
        for number, (_, code) in vol.names.items():
            table[number] = aal_lobe_of_code(code)
        return list(LOBE_NAMES), table
    merged: list[str] = []
    for number in sorted(vol.names):
        name = vol.names[number][0]
        base = name[:-2] if name.endswith(("_L", "_R")) else name
        if base not in merged:
            merged.append(base)
        table[number] = merged.index(base)
    return merged, table


def _plan_colin27(spatial_dims: int, label_set: str, patch_size: int, seed: int, sizes: dict[str, int],
                  template_dir: str | os.PathLike | None) -> TaskPlan:
    vol = load_colin27_aal(template_dir)
    class_names, table = _colin_classes(vol, label_set)
    aal = vol.label_maps["aal"]
    ijk = np.argwhere(aal > 0)
    cls = table[aal[ijk[:, 0], ijk[:, 1], ijk[:, 2]]]
    x_world = vol.affine[0, 0] * ijk[:, 0] + vol.affine[0, 3]
    left, right = x_world < -MIDLINE_MARGIN_MM, x_world > MIDLINE_MARGIN_MM
    val_slice = (ijk[:, 2] // VAL_SLICE_BLOCK) % VAL_SLICE_PERIOD == VAL_SLICE_PHASE
    where = {"training": left & ~val_slice, "validation": left & val_slice, "test": right}

    counts = _counts(sizes, len(class_names))
    samples = {}
    for split in SPLITS:
        cands = [ijk[where[split] & (cls == c)] for c in range(len(class_names))]
        samples[split] = sample_balanced(split, cands, counts[split], seed, class_names)
    kind = "axial 2D" if spatial_dims == 2 else "3D"
    what = "lobe (AAL code grouping)" if label_set == "lobe" else "AAL region, left/right merged"
    return TaskPlan(
        volume=vol,
        class_names=class_names,
        samples=samples,
        description=(
            f"{kind} patches of the Colin27 T1 centred on an AAL atlas voxel, labeled by {what}; "
            f"train/validation in the left hemisphere, test in the right"
        ),
        split_info={
            "method": "hemisphere: training/validation centres at world x < -margin, test at x > margin",
            "midline_margin_mm": MIDLINE_MARGIN_MM,
            "validation": (
                f"left centres on axial slices k with (k // {VAL_SLICE_BLOCK}) % {VAL_SLICE_PERIOD} == "
                f"{VAL_SLICE_PHASE}; no training centre on those slices, but patches overlap training ones"
            ),
        },
    )
