"""MONAI transform presets that make DICOM and NIfTI copies of a patch give the same tensor."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import PydicomReader
from monai.transforms import MapTransform, SqueezeDim
from monai.utils import ensure_tuple

from ..errors import NoImageError

__all__ = [
    "LoadMedicalImaged",
    "OrientRASd",
    "SqueezeSingletonSpatiald",
    "augmentation_transforms",
    "classification_transforms",
    "has_random_transforms",
    "percentile_scale",
    "READERS",
]

#: reader per on-disk format; ``None``: by path (NIfTI suffix, DICOM series folder, else a DICOM file)
READERS = {"dicom": "PydicomReader", "nifti": "NibabelReader", "auto": None}

#: meta-data key of the notes a loader made (colour converted, orientation assumed...)
NOTES_KEY = "rd_notes"


class LoadMedicalImaged(MapTransform):
    """Load a NIfTI file, a DICOM series (its folder, or a list of its files) or one frame of any DICOM file.

    NIfTI goes through MONAI's ``NibabelReader`` and a series through its ``PydicomReader``, with
    the slices stacked along the slice normal by position (:func:`~rd_components.data.dicom.one_series`;
    by InstanceNumber only when geometry is missing); a folder mixing several series is refused,
    naming them. A single DICOM file goes through :func:`~rd_components.data.dicom.read_dicom_frame`
    (pydicom with every installed decoder, multi-frame, colour, palette, degenerate
    orientation), which gives the same array and affine as ``PydicomReader`` on a plain file.
    The reader is told by the path (a NIfTI suffix, a folder, else a DICOM file), so DICOM and
    NIfTI files can be mixed; ``fmt="nifti"`` also sends files that are not DICOM to
    ``NibabelReader``. The frame is the item's ``frame_key`` value (0-based) when present; the
    key is consumed. What the loader had to
    do to make the image usable is kept as one text in the image's meta data ``rd_notes``
    (empty when nothing). An image with NaN or infinite values is refused here, before any
    intensity clipping could turn them into plausible ones.

    Args:
        keys: image keys.
        fmt: ``"dicom"``, ``"nifti"`` or ``"auto"`` (by path).
        frame_key: item key holding a frame index.

    Shapes: ``path`` -> MetaTensor ``(X, Y)`` for a DICOM file, the reader's output otherwise.
    """

    def __init__(self, keys: KeysCollection, fmt: str = "auto", frame_key: str = "frame") -> None:
        super().__init__(keys)
        from monai.transforms import LoadImage

        if fmt not in READERS:
            raise ValueError(f"fmt must be one of {tuple(READERS)}, got {fmt!r}")
        self.fmt = fmt
        self.frame_key = frame_key
        self._nifti = LoadImage(reader="NibabelReader", image_only=True)
        self._series = LoadImage(reader=_SliceOrderReader(), image_only=True)

    def _load_series(self, source):
        from .dicom import one_series

        image = self._series([str(f) for f in one_series(source)])
        if not isinstance(source, (list, tuple)):
            image.meta["filename_or_obj"] = str(source)  # the folder, as MONAI names a series folder
        image.meta[NOTES_KEY] = ""
        return image

    def _load(self, path, frame):
        from pathlib import Path

        from monai.data import MetaTensor

        from .dicom import is_nifti_path, read_dicom_frame

        if isinstance(path, (list, tuple)) or Path(path).is_dir():
            return self._load_series(path)
        if is_nifti_path(path) or (self.fmt == "nifti" and Path(path).is_file() and not _is_dicom(path)):
            image = self._nifti(path)
            image.meta[NOTES_KEY] = ""
            return image
        loaded = read_dicom_frame(path, None if frame is None else int(frame))
        meta = {
            "filename_or_obj": str(path),
            "original_channel_dim": float("nan"),
            "spatial_shape": loaded.array.shape,
            "original_affine": loaded.affine,
            "space": "RAS",
            NOTES_KEY: "; ".join(loaded.notes),
        }
        return MetaTensor(torch.from_numpy(loaded.array), affine=torch.as_tensor(loaded.affine), meta=meta)

    def __call__(self, data: Mapping) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _require_finite(self._load(d[key], d.get(self.frame_key)))
        # consumed: items with and without a frame must still collate into one batch
        d.pop(self.frame_key, None)
        return d


class _SliceOrderReader(PydicomReader):
    """MONAI's ``PydicomReader`` for one DICOM series given as its files, stacked in the order given.

    ``PydicomReader`` reads a list of files as channels and stacks a folder's files by
    InstanceNumber; the files here come ordered along the slice normal
    (:func:`~rd_components.data.dicom.one_series`), and everything else (pixel decoding, modality
    LUT, affine from the first and last slice) stays MONAI's.
    """

    def read(self, data, **kwargs):
        """The datasets of ``data`` (paths of one series, in slice order), marked as one series."""
        import pydicom

        files = [str(f) for f in ensure_tuple(data)]
        # force: a file without the DICOM preamble was accepted as DICOM by one_series
        options = {**self.kwargs, **kwargs, "force": True}
        if len(files) == 1:
            return super().read(files[0], **options)
        datasets = [pydicom.dcmread(f, **options) for f in files]
        # the parent stacks by InstanceNumber: number the throw-away datasets in the order found
        for rank, ds in enumerate(datasets, start=1):
            ds.InstanceNumber = rank
        self.filenames, self.has_series = [files], True
        return datasets


def _require_finite(image):
    """``image``, unless it holds NaN or infinite values (clipping would make those look like data)."""
    if torch.is_tensor(image) and image.is_floating_point():
        bad = int((~torch.isfinite(image)).sum())
        if bad:
            raise NoImageError(f"{bad} voxel value{'s are' if bad > 1 else ' is'} NaN or infinite: not an image")
    return image


def _is_dicom(path) -> bool:
    from pydicom.misc import is_dicom

    try:
        return is_dicom(path)
    except OSError:
        return False


class OrientRASd(MapTransform):
    """``Orientationd`` to RAS that also works for a 2D image in any plane.

    A 2D image is oriented as a one-slice volume (its affine's third column is the plane
    normal), then the slice axis is dropped: an axial image gives what a 2D ``Orientationd``
    gives, and a sagittal, coronal or oblique one no longer fails ("Unable to find out axis").
    An affine that cannot orient (non-finite or singular) leaves the stored order, noted.
    The wrong number of dimensions is an error in plain words.

    Args:
        keys: image keys.
        spatial_dims: 2 or 3.

    Shapes: ``(C, *spatial)`` -> ``(C, *spatial')`` with ``len(spatial) == spatial_dims``.
    """

    def __init__(self, keys: KeysCollection, spatial_dims: int) -> None:
        super().__init__(keys)
        from monai.transforms import Orientation

        self.spatial_dims = spatial_dims
        self._orient = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))

    def _check_dims(self, img) -> None:
        got = img.ndim - 1
        if got != self.spatial_dims:
            shape = "x".join(str(s) for s in img.shape[1:])
            wanted = "2D images" if self.spatial_dims == 2 else "3D volumes"
            raise ValueError(f"wrong dimensionality: a {got}D image of {shape} voxels, the model takes {wanted}")

    def __call__(self, data: Mapping) -> dict:
        import numpy as np
        from monai.data import MetaTensor

        d = dict(data)
        for key in self.key_iterator(d):
            img = d[key]
            self._check_dims(img)
            if not isinstance(img, MetaTensor):
                continue
            affine = np.asarray(img.affine, dtype=np.float64)
            if not np.isfinite(affine).all() or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
                img.meta[NOTES_KEY] = "; ".join(filter(None, [img.meta.get(NOTES_KEY, ""), "orientation unknown: stored order kept"]))
                continue
            if self.spatial_dims == 3:
                d[key] = self._orient(img)
                continue
            volume = self._orient(img.unsqueeze(-1))
            # the slice axis is the one of size 1 whose affine column is the plane normal
            slice_axis = 1 + int(np.argmax(np.abs(np.asarray(volume.affine)[:3, :3].T @ np.asarray(affine)[:3, 2])))
            keep = [a for a in (1, 2, 3) if a != slice_axis]
            out_affine = np.asarray(volume.affine).copy()[:, [keep[0] - 1, keep[1] - 1, slice_axis - 1, 3]]
            out = volume.squeeze(slice_axis)
            out.affine = torch.as_tensor(out_affine)
            d[key] = out
        return d


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

    Steps: :class:`LoadMedicalImaged` (any DICOM file, frame by frame, with the modality LUT and
    LPS to RAS; MONAI's PydicomReader for a series, slices in position order; NibabelReader for
    NIfTI; NaN or infinite values refused), channel
    first, squeeze a singleton slice, :class:`OrientRASd` to RAS in any image plane (this is
    what makes both formats give the same array), clip intensities to 0..1 (no per-patch rescale: tissue
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
        Resized,
        ScaleIntensityRanged,
    )

    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
    if fmt not in READERS:
        raise ValueError(f"fmt must be one of {tuple(READERS)}, got {fmt!r}")
    keys = list(keys)
    steps = [
        LoadMedicalImaged(keys, fmt),
        EnsureChannelFirstd(keys, channel_dim="no_channel"),
        SqueezeSingletonSpatiald(keys, spatial_dims),
        OrientRASd(keys, spatial_dims),
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


def percentile_scale(volume: np.ndarray, percentile: float = 99.5) -> float:
    """The intensity a whole volume is divided by: its ``percentile``-th percentile (must be > 0)."""
    scale = float(np.percentile(np.asarray(volume), percentile))
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(f"cannot normalise: the {percentile}th percentile of the volume is {scale}")
    return scale
