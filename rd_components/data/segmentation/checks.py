"""Preflight of the user's segmentation pairs: every image / label map loaded once and checked
before a patch is cut, every bad pair named on a line of its own.

A pair is refused when the image is not one 3D volume (a 2D image, several channels), the label
map is not on the image's grid (shape or affine differ after both are turned to RAS), a label
value is not a whole number within the classes, the label map is empty (background only), or
either holds NaN / Inf. The checks run on the oriented volumes, before any resampling, so what
is reported is the user's files as they are.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
import torch
from monai.transforms import EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

from ...errors import BadInputError, NoImageError, describe_error
from .inference import PercentileScaled
from ..transforms import LoadMedicalImaged

__all__ = ["load_volume_pair", "check_pair", "resample_pair", "checked_pairs", "pair_name", "AFFINE_TOLERANCE_MM"]

logger = logging.getLogger(__name__)

#: largest difference (mm, and per affine entry) between an image's and its label map's affine
AFFINE_TOLERANCE_MM = 1e-2


def pair_name(item: dict) -> str:
    """How a pair is named in messages: ``image`` or ``image / label``."""
    return f"{item['image']} / {item['label']}" if isinstance(item.get("label"), str) else str(item["image"])


def load_volume_pair(item: dict) -> dict:
    """``{"image", "label"?}`` loaded channel-first and turned to RAS (as inference does).

    The image is a NIfTI file or a DICOM series folder (:class:`~rd_components.data.LoadMedicalImaged`,
    which refuses NaN / Inf); the label map any file MONAI reads.

    Shapes: ``image`` ``(1, *spatial)`` MetaTensor; ``label`` the same shape when given.
    """
    has_label = isinstance(item.get("label"), (str, os.PathLike))
    data = {"image": item["image"], **({"label": str(item["label"])} if has_label else {})}
    data = LoadMedicalImaged("image", "auto")(data)
    keys = ["image", "label"] if has_label else ["image"]
    if has_label:
        data = LoadImaged("label", image_only=True)(data)
    data = EnsureChannelFirstd(keys, channel_dim="no_channel")(data)
    if data["image"].ndim != 4:
        # refused before orienting: Orientationd's own message says nothing of channels
        raise NoImageError(_dims_reason(data["image"], "image"))
    if has_label and data["label"].ndim != 4:
        raise NoImageError(_dims_reason(data["label"], "label map"))
    return Orientationd(keys, axcodes="RAS")(data)


def _dims_reason(volume: torch.Tensor, what: str) -> str:
    shape = tuple(volume.shape[1:])
    if len(shape) == 2:
        return f"{what} is 2D {shape}: give 3D volumes (the 2D bundle trains on their axial slices)"
    return f"{what} has shape {shape}: expected one 3D volume (one channel)"


def check_pair(data: dict, num_classes: int | None) -> set[int]:
    """The label values of a loaded pair (:func:`load_volume_pair`), after checking it.

    Raises:
        NoImageError: the reason, in plain words (shape, affine, label values, empty, NaN / Inf).
    """
    image = data["image"]
    if not torch.isfinite(image).all():
        raise NoImageError("image contains NaN or Inf values")
    if "label" not in data:
        return set()
    label = data["label"]
    if tuple(label.shape[1:]) != tuple(image.shape[1:]):
        raise NoImageError(f"label map shape {tuple(label.shape[1:])} differs from the image's {tuple(image.shape[1:])}")
    a, b = np.asarray(image.affine, dtype=float), np.asarray(label.affine, dtype=float)
    if not np.allclose(a, b, atol=AFFINE_TOLERANCE_MM, rtol=0):
        worst = float(np.abs(a - b).max())
        raise NoImageError(f"label map affine differs from the image's (by up to {worst:.3g}): not on the same grid")
    values = torch.as_tensor(label).float()
    if not torch.isfinite(values).all():
        raise NoImageError("label map contains NaN or Inf values")
    found = torch.unique(values)
    if not torch.equal(found, found.round()):
        raise NoImageError(f"label map holds values that are not class indices ({_listed(found[found != found.round()])})")
    classes = {int(v) for v in found.tolist()}
    outside = sorted(v for v in classes if v < 0 or (num_classes is not None and v >= num_classes))
    if outside:
        raise NoImageError(f"label values {_listed(outside)} outside the classes 0..{(num_classes or 1) - 1}")
    if classes <= {0}:
        raise NoImageError("label map is empty (background only)")
    return classes


def _listed(values: Iterable) -> str:
    values = [float(v) for v in values]
    shown = ", ".join(f"{v:g}" for v in values[:5])
    return shown + (f" and {len(values) - 5} more" if len(values) > 5 else "")


def resample_pair(data: dict, pixdim: Sequence[float] | None, upper_percentile: float = 99.5) -> dict:
    """A checked pair on the ``pixdim`` grid (image bilinear, label map nearest; ``None``: as it is),
    the image scaled to 0..1 by its own percentile, as inference scales it
    (:func:`~rd_components.data.segmentation_inference_transforms`).

    Shapes: ``image`` ``(1, X, Y, Z)`` float32 in 0..1; ``label`` ``(1, X, Y, Z)`` int64.
    """
    keys = ["image", "label"] if "label" in data else ["image"]
    if pixdim is not None:
        data = Spacingd(keys, pixdim=[float(p) for p in pixdim], mode=["bilinear", "nearest"][: len(keys)])(data)
    out = {"image": data["image"].float()}
    out = PercentileScaled("image", upper_percentile)(out)
    if "label" in data:
        out["label"] = torch.as_tensor(data["label"]).round().long()
    return out


def checked_pairs(items: Sequence[tuple[str, dict]], num_classes: int | None, on_bad_input: str = "error"
                  ) -> Iterator[tuple[str, dict, dict, set[int]]]:
    """``(split, item, loaded pair, label values)`` for every good pair of ``items`` (``(split, item)``),
    in order; the bad ones are gathered while the good ones are used.

    Once every pair was seen: with ``on_bad_input="error"`` a :class:`BadInputError` names every
    bad pair on a line of its own (``<image> / <label>: <reason>``); with ``"skip"`` each is
    logged and dropped.
    """
    if on_bad_input not in ("error", "skip"):
        raise ValueError(f"on_bad_input must be 'error' or 'skip', got {on_bad_input!r}")
    bad = []
    for split, item in items:
        try:
            data = load_volume_pair(item)
            values = check_pair(data, num_classes)
        except Exception as error:  # every bad pair is reported, with its files
            bad.append(f"{split}: {pair_name(item)}: {describe_error(error)}")
            continue
        yield split, item, data, values
    if bad and on_bad_input == "error":
        raise BadInputError(f"{len(bad)} bad image / label pair(s) (set on_bad_input: skip to drop them):\n  "
                            + "\n  ".join(bad))
    for line in bad:
        logger.warning("Skipping bad pair %s", line)
