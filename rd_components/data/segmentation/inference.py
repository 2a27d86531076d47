"""Segmentation inference inputs: whole volumes (NIfTI files, DICOM series folders), oriented and
scaled as the training data were, each failure carried as one line instead of stopping the run."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, MapTransform, Orientationd, Spacingd
from torch.utils.data import Dataset

from ...errors import describe_error
from ..inference import find_inputs
from ..transforms import LoadMedicalImaged, percentile_scale

__all__ = ["find_volumes", "segmentation_inference_transforms", "PercentileScaled", "SafeVolumeDataset"]

logger = logging.getLogger(__name__)


def find_volumes(input_dir: str | os.PathLike, exclude: Sequence[str | os.PathLike] = ()) -> list[dict]:
    """Volumes under ``input_dir``: each NIfTI file and each DICOM series (a folder of several DICOM
    files; one volume per series when a folder mixes several), not searching the ``exclude`` folders;
    ``[{"image", "file", "format"}]`` as :func:`~rd_components.data.find_inputs` gives them. A lone
    DICOM file is listed too, and reported as not a volume (multi-frame volumes are not read yet)."""
    return find_inputs(input_dir, 3, split_series=True, exclude=exclude)


class PercentileScaled(MapTransform):
    """Divide each image by its own ``percentile``-th percentile and clip to 0..1, as the embedded
    training volumes were scaled (:func:`~rd_components.embedded.sources.normalise_global`).

    Not MONAI's ``ScaleIntensityRangePercentiles``, which also maps the minimum to 0: a CT volume
    or a volume with an offset would then be scaled unlike the training data. A volume whose
    percentile is not positive (blank, constant at 0) fails with that reason.

    Shapes: ``(C, *spatial)`` -> same shape, values in 0..1; metadata and applied transforms kept.
    """

    def __init__(self, keys: Sequence[str] | str, percentile: float = 99.5) -> None:
        super().__init__(keys)
        self.percentile = float(percentile)

    def __call__(self, data: dict) -> dict:
        d = dict(data)
        for key in self.key_iterator(d):
            scale = percentile_scale(d[key].detach().cpu().numpy(), self.percentile)
            d[key] = (d[key] / scale).clamp(0.0, 1.0)
        return d


def segmentation_inference_transforms(pixdim: Sequence[float] | None = None, upper_percentile: float = 99.5) -> Compose:
    """Load a volume channel-first, orient it RAS, optionally resample it to ``pixdim`` mm, scale it to 0..1.

    The scaling is the training data's (:class:`PercentileScaled`): the whole volume divided by
    its ``upper_percentile``-th percentile, brighter voxels clipped to 1. The spatial steps
    (orientation, resampling) are invertible: :class:`~rd_components.handlers.LabelMapWriter`
    maps the prediction back onto the input's own grid and affine.

    Shapes: path -> ``(1, X, Y, Z)`` float32 MetaTensor.
    """
    steps = [LoadMedicalImaged("image", "auto"), EnsureChannelFirstd("image", channel_dim="no_channel"),
             Orientationd("image", axcodes="RAS")]
    if pixdim is not None:
        steps.append(Spacingd("image", pixdim=[float(p) for p in pixdim], mode="bilinear"))
    steps += [EnsureTyped("image", dtype=torch.float32), PercentileScaled("image", upper_percentile)]
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
        # a string either way, so that batches collate: a split series' files as a JSON list
        source = json.dumps(item["image"]) if isinstance(item["image"], (list, tuple)) else str(item["image"])
        out = {"file": item["file"], "source": source, "format": item["format"], "error": ""}
        try:
            image = self.transform({"image": item["image"]})["image"]
            if image.ndim != 4 or image.shape[0] != 1 or min(image.shape[1:]) < 2:
                hint = "; for DICOM give the series folder" if item["format"] == "dicom" else ""
                raise ValueError(f"expected a single-channel 3D volume, got array shape {tuple(image.shape)}{hint}")
            if not torch.isfinite(image).all():
                raise ValueError("image contains NaN or Inf values")
            out["image"] = image
        except Exception as error:  # every failure is reported, none stops the run
            out["error"] = describe_error(error)
            out["image"] = MetaTensor(torch.zeros((1, 16, 16, 16)))
            logger.warning("Skipping %s: %s", item["file"], out["error"])
        return out
