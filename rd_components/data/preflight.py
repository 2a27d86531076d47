"""Check every training item before the first step: fail fast with one line per bad file, or skip it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.utils import convert_to_tensor
from tqdm.auto import tqdm

from ..errors import BadInputError, describe_error
from .datalist import UNLABELED

__all__ = ["preflight_items"]

logger = logging.getLogger(__name__)

POLICIES = ("error", "skip")


def _check(item: dict, transform: Callable, spatial_dims: int, num_classes: int, image_key: str, label_key: str,
           allow_unlabeled: bool) -> dict:
    if label_key not in item or item[label_key] is None:
        raise ValueError(f"missing '{label_key}'")
    label = item[label_key]
    if isinstance(label, bool) or not isinstance(label, (int, float)) or float(label) != int(label):
        raise ValueError(f"label {label!r} is not a class index")
    if allow_unlabeled and int(label) == UNLABELED:
        pass
    elif not 0 <= int(label) < num_classes:
        raise ValueError(f"label {int(label)} out of range 0..{num_classes - 1}")
    out = transform(dict(item))
    image = convert_to_tensor(out[image_key], track_meta=False)
    if image.ndim != spatial_dims + 1:
        raise ValueError(f"expected a {spatial_dims}D image (channel first), got array shape {tuple(image.shape)}")
    if not torch.isfinite(image.float()).all():
        raise ValueError("image contains NaN or Inf values")
    return out


def preflight_items(
    items: Sequence[dict],
    transform: Callable[[dict], dict],
    spatial_dims: int,
    num_classes: int,
    on_bad_input: str = "error",
    split: str = "training",
    image_key: str = "image",
    label_key: str = "label",
    progress: bool = True,
    allow_unlabeled: bool | None = None,
) -> list[dict[str, Any]]:
    """Load and check every item once; return the preprocessed items (ready to cache).

    Each item must have a label that is a class index in ``0..num_classes-1`` and an image that
    loads, has ``spatial_dims`` spatial axes and finite values. With ``on_bad_input="error"``
    (default) any failure raises :class:`BadInputError` before training starts, listing every
    bad file on its own line; with ``"skip"`` bad items are dropped and reported in the log.

    Args:
        items: datalist items ``{"image": path, "label": int, ...}``.
        transform: the deterministic preprocessing (load, orient, scale, resize).
        spatial_dims: 2 or 3.
        num_classes: number of classes.
        on_bad_input: ``"error"`` or ``"skip"``.
        split: split name for messages.
        allow_unlabeled: accept ``label == UNLABELED`` (-1; label-scarce training and
            unlabelled images); default: for the ``"training"`` split only.

    Returns:
        the transformed good items, in order (``image`` ``(1, *spatial)``).
    """
    if on_bad_input not in POLICIES:
        raise ValueError(f"on_bad_input must be one of {POLICIES}, got {on_bad_input!r}")
    if not items:
        raise BadInputError(f"The {split} split of the datalist is empty.")
    if allow_unlabeled is None:
        allow_unlabeled = split == "training"
    good, bad = [], []
    # disable=None: no bar when stderr is not a terminal
    for item in tqdm(items, desc=f"checking {split} data", disable=None if progress else True, leave=False):
        try:
            good.append(_check(item, transform, spatial_dims, num_classes, image_key, label_key, allow_unlabeled))
        except Exception as error:  # every bad item is reported, with its file
            bad.append(f"{item.get(image_key, '<no image key>')}: {describe_error(error)}")
    if bad and on_bad_input == "error":
        raise BadInputError(f"{len(bad)} bad {split} item(s) (set on_bad_input: skip to drop them):\n  " + "\n  ".join(bad))
    for line in bad:
        logger.warning("Skipping bad %s item %s", split, line)
    if not good:
        raise BadInputError(f"No usable item left in the {split} split.")
    # a batch collates the keys every item has: a datalist's own extra fields (the embedded
    # tasks' 'centre') are not on the images of --unlabeled_dir
    shared = set.intersection(*(set(item) for item in good))
    return [{key: value for key, value in item.items() if key in shared} for item in good]
