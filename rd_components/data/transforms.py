"""MONAI transform presets that make DICOM and NIfTI copies of a patch give the same tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, SqueezeDim

__all__ = ["SqueezeSingletonSpatiald", "augmentation_transforms", "classification_transforms", "has_random_transforms", "READERS"]

#: reader per on-disk format; ``None`` lets MONAI choose by file suffix
READERS = {"dicom": "PydicomReader", "nifti": "NibabelReader", "auto": None}


class SqueezeSingletonSpatiald(MapTransform):
    """Drop trailing singleton spatial dims until the image is ``(C, *spatial)`` with ``spatial_dims`` dims.

    A 2D DICOM read as a one-slice volume, or a 2D NIfTI stored as ``X x Y x 1``, carries such a
    singleton. The 4x4 affine stays valid for the first two axes, so it is kept as it is.

    Args:
        keys: image keys.
        spatial_dims: wanted number of spatial dims (2 or 3).
        allow_missing_keys: skip absent keys.

    Shapes: ``(C, X, Y, 1)`` -> ``(C, X, Y)`` when ``spatial_dims == 2``; other shapes pass.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.spatial_dims = spatial_dims

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            while img.ndim > self.spatial_dims + 1 and img.shape[-1] == 1:
                img = SqueezeDim(dim=img.ndim - 1, update_meta=False)(img)
            d[key] = img
        return d


def classification_transforms(spatial_dims: int, patch_size: int | Sequence[int] | None, fmt: str = "nifti",
                              train: bool = False, augment: bool = False, keys: Sequence[str] = ("image",),
                              flip_axes: Sequence[int] = (0,)):
    """Preset: load -> channel first -> RAS -> clip 0..1 -> size -> typed tensors.

    Steps: ``LoadImaged`` (PydicomReader for DICOM files and series folders, which applies the
    rescale slope/intercept and converts LPS to RAS; NibabelReader for NIfTI), channel first,
    squeeze a singleton slice of 2D DICOMs, ``Orientationd`` to RAS (this is what makes both
    formats give the same array), clip intensities to 0..1 (no per-patch rescale: tissue
    contrast is the signal and the datasets are already globally scaled), resize to
    ``patch_size`` only when the shape differs, ``label`` -> ``torch.long`` scalar.
    Keys other than ``keys`` and ``label`` (such as ``id``) pass through untouched, so a
    feature cache can key on ``id``.

    Args:
        spatial_dims: 2 or 3.
        patch_size: int or per-axis sizes; ``None`` keeps the stored size.
        fmt: ``"dicom"``, ``"nifti"`` or ``"auto"`` (MONAI picks the reader by suffix).
        train: training pipeline (enables ``augment``).
        augment: with ``train``, random flips along ``flip_axes`` (p = 0.5 each). This makes the
            pipeline random: check :func:`has_random_transforms` before caching its outputs.
        keys: image keys.
        flip_axes: spatial axes to flip; default left-right only, which keeps anatomy plausible.

    Returns:
        ``monai.transforms.Compose`` mapping ``{"image": path, "label": int, ...}`` to
        ``{"image": float32 (1, *patch_size), "label": long (), ...}``.
    """
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        EnsureTyped,
        LoadImaged,
        Orientationd,
        RandFlipd,
        Resized,
        ScaleIntensityRanged,
    )

    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if fmt not in READERS:
        raise ValueError(f"fmt must be one of {tuple(READERS)}, got {fmt!r}")
    keys = list(keys)
    steps = [
        LoadImaged(keys, reader=READERS[fmt], image_only=True),
        EnsureChannelFirstd(keys, channel_dim="no_channel"),
        SqueezeSingletonSpatiald(keys, spatial_dims),
        Orientationd(keys, axcodes="RAS"[:spatial_dims], labels=(("L", "R"), ("P", "A"), ("I", "S"))),
        ScaleIntensityRanged(keys, a_min=0.0, a_max=1.0, b_min=0.0, b_max=1.0, clip=True),
    ]
    if patch_size is not None:
        size = [int(patch_size)] * spatial_dims if isinstance(patch_size, int) else [int(s) for s in patch_size]
        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        # a no-op for the embedded datasets; user images of another size get an anti-aliased resize
        steps.append(Resized(keys, spatial_size=size, mode=mode, anti_aliasing=True))
    if train and augment:
        steps += list(augmentation_transforms(keys, flip_axes).transforms)
    steps += [
        EnsureTyped(keys, dtype=torch.float32),
        EnsureTyped("label", dtype=torch.long, track_meta=False, allow_missing_keys=True),
    ]
    return Compose(steps)


def augmentation_transforms(keys: Sequence[str] = ("image",), flip_axes: Sequence[int] = (0,)):
    """The random part of the training pipeline: flips along ``flip_axes`` (p = 0.5 each).

    Kept separate so that the deterministic part can be run (and checked, and cached) once
    per item and only this part per epoch. The flips are drawn by :class:`FixedViewsd`, which
    records the view it chose, so the teacher feature cache stays valid under augmentation.

    Returns:
        ``monai.transforms.Compose`` acting on ``{"image": (1, *spatial), ...}`` and adding
        ``{"view": int}``.
    """
    from monai.transforms import Compose

    from .views import FixedViewsd

    return Compose([FixedViewsd(list(keys), flip_axes=flip_axes)])


def has_random_transforms(transform) -> bool:
    """True if ``transform`` (a Compose or a single transform) contains a random MONAI transform.

    A teacher feature cache must not reuse features computed from one random view for another.
    """
    from monai.transforms import Compose, Randomizable

    if isinstance(transform, Compose):
        return any(has_random_transforms(t) for t in transform.transforms)
    return isinstance(transform, Randomizable)
