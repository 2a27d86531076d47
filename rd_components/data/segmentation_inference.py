"""Segmentation inference inputs: whole volumes (NIfTI files, DICOM series folders), oriented and
scaled as the training data were, each failure carried as one line instead of stopping the run."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, Orientationd, ScaleIntensityRangePercentilesd, Spacingd
from torch.utils.data import Dataset

from .inference import find_inputs
from .preflight import describe_error
from .transforms import LoadMedicalImaged

__all__ = ["find_volumes", "segmentation_inference_transforms", "SafeVolumeDataset"]

logger = logging.getLogger(__name__)


def find_volumes(input_dir: str | os.PathLike) -> list[dict]:
    """Volumes under ``input_dir``: each NIfTI file, each folder of several DICOM files (a series),
    each lone DICOM file; ``[{"image", "file", "format"}]`` as :func:`~rd_components.data.find_inputs` gives them."""
    return find_inputs(input_dir, 3)


def segmentation_inference_transforms(pixdim: Sequence[float] | None = None, upper_percentile: float = 99.5) -> Compose:
    """Load a volume channel-first, orient it RAS, optionally resample it to ``pixdim`` mm, scale it to 0..1.

    The scaling is the training data's (:func:`~rd_components.data.sources.normalise_global`):
    the whole volume at once, its ``upper_percentile`` mapped to 1 and brighter voxels clipped
    (MONAI's percentile scaling maps the volume minimum to 0, as it is for MR and for the
    embedded templates). Every step is invertible: :class:`~rd_components.handlers.LabelMapWriter`
    maps the prediction back onto the input's own grid and affine.

    Shapes: path -> ``(1, X, Y, Z)`` float32 MetaTensor.
    """
    steps = [LoadMedicalImaged("image", "auto"), EnsureChannelFirstd("image", channel_dim="no_channel"),
             Orientationd("image", axcodes="RAS")]
    if pixdim is not None:
        steps.append(Spacingd("image", pixdim=[float(p) for p in pixdim], mode="bilinear"))
    steps += [ScaleIntensityRangePercentilesd("image", lower=0.0, upper=upper_percentile, b_min=0.0, b_max=1.0, clip=True),
              EnsureTyped("image", dtype=torch.float32)]
    return Compose(steps)


class SafeVolumeDataset(Dataset):
    """Load and preprocess inference volumes; a volume that fails carries its reason instead.

    Args:
        items: from :func:`find_volumes`.
        transform: from :func:`segmentation_inference_transforms`.

    Shapes:
        ``image`` ``(1, X, Y, Z)`` float32 MetaTensor (a ``(1, 16, 16, 16)`` zero placeholder for a
        failed volume); ``file`` the path relative to the input folder, ``source`` the full path,
        ``format`` ``"nifti"`` or ``"dicom"``; ``error`` ``""`` when the volume loaded, else one line
        naming the reason (unreadable DICOM, not a 3D image, NaN ...).
    """

    def __init__(self, items: Sequence[dict], transform: Compose) -> None:
        self.items = list(items)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        out = {"file": item["file"], "source": str(item["image"]), "format": item["format"], "error": ""}
        try:
            image = self.transform({"image": item["image"]})["image"]
            if image.ndim != 4 or image.shape[0] != 1:
                raise ValueError(f"expected a single-channel 3D volume, got array shape {tuple(image.shape)}")
            if not torch.isfinite(image).all():
                raise ValueError("image contains NaN or Inf values")
            out["image"] = image
        except Exception as error:  # every failure is reported, none stops the run
            out["error"] = describe_error(error)
            out["image"] = MetaTensor(torch.zeros((1, 16, 16, 16)))
            logger.warning("Skipping %s: %s", item["file"], out["error"])
        return out
