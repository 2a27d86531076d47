"""Inference inputs: discover DICOM files, DICOM series folders and NIfTI files; never stop on a bad one."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from .preflight import describe_error
from .transforms import classification_transforms

__all__ = ["find_inputs", "SafeInferenceDataset"]

logger = logging.getLogger(__name__)

_NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _is_nifti(path: Path) -> bool:
    return path.name.lower().endswith(_NIFTI_SUFFIXES)


def find_inputs(input_dir: str | os.PathLike, spatial_dims: int) -> list[dict]:
    """List inference items under ``input_dir``.

    NIfTI files are one item each. Other files are DICOM candidates: for a 2D model each file is
    an item; for a 3D model a folder holding several non-NIfTI files is one DICOM series item
    and a lone file is an item of its own. Nothing is opened here, so unreadable files show up
    as items and are reported with their reason by :class:`SafeInferenceDataset`.

    Returns:
        ``[{"image": path, "file": path relative to input_dir, "format": "nifti"|"dicom"}]``
        sorted by ``file``.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"Input folder {root} does not exist.")
    items: list[dict] = []
    for folder, _, names in os.walk(root):
        files = sorted(Path(folder) / n for n in names if not n.startswith("."))
        others = [f for f in files if not _is_nifti(f)]
        items += [{"image": str(f), "file": str(f.relative_to(root)), "format": "nifti"} for f in files if _is_nifti(f)]
        if spatial_dims == 3 and len(others) > 1:
            items.append({"image": folder, "file": str(Path(folder).relative_to(root)) + os.sep, "format": "dicom"})
        else:
            items += [{"image": str(f), "file": str(f.relative_to(root)), "format": "dicom"} for f in others]
    if not items:
        raise ValueError(f"No input files found under {root}.")
    return sorted(items, key=lambda item: item["file"])


class SafeInferenceDataset(Dataset):
    """Load and preprocess inference items; an item that fails carries its reason instead.

    A failing item (unreadable or corrupt DICOM, non-image file, NaN/Inf voxels, wrong
    dimensionality) yields a zero image of the expected shape and ``error`` set to one line
    naming the reason, so batches still collate, the other items are predicted, and the
    writer lists the failure. Each failure is also logged once with the file name.

    Args:
        items: from :func:`find_inputs`.
        spatial_dims: 2 or 3.
        patch_size: model input size per axis.

    Shapes:
        ``image`` ``(1, *patch_size)`` float32; ``error`` ``""`` when the item loaded.
    """

    def __init__(self, items: Sequence[dict], spatial_dims: int, patch_size: Sequence[int]) -> None:
        self.items = list(items)
        self.spatial_dims = spatial_dims
        self.patch_size = tuple(int(s) for s in patch_size)
        self._transforms = {fmt: classification_transforms(spatial_dims, None, fmt) for fmt in ("dicom", "nifti")}
        from monai.transforms import Resize

        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self._resize = Resize(self.patch_size, mode=mode, anti_aliasing=True)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, item: dict) -> torch.Tensor:
        data = self._transforms[item["format"]]({"image": item["image"]})
        image = convert_to_tensor(data["image"], dtype=torch.float32, track_meta=False)
        if image.ndim != 1 + self.spatial_dims:
            raise ValueError(f"expected a {self.spatial_dims}D image, got array shape {tuple(image.shape[1:])}")
        if not torch.isfinite(image).all():
            raise ValueError("image contains NaN or Inf values")
        if image.shape[0] != 1:
            raise ValueError(f"expected one channel, got {image.shape[0]}")
        if tuple(image.shape[1:]) != self.patch_size:
            image = convert_to_tensor(self._resize(image), dtype=torch.float32, track_meta=False)
        return image

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        out = {"file": item["file"], "error": ""}
        try:
            out["image"] = self._load(item)
        except Exception as error:  # every failure is reported, none stops the run
            out["error"] = describe_error(error)
            out["image"] = torch.zeros((1, *self.patch_size), dtype=torch.float32)
            logger.warning("Skipping %s: %s", item["file"], out["error"])
        return out
