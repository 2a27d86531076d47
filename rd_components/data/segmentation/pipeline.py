"""Segmentation items and transforms: image / label-map pairs, labels hidden for the label-scarce setting."""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, EnsureTyped, LoadImage, LoadImaged, MapTransform

from ..datalist import UNLABELED
from ..sampling import split_rng

__all__ = ["segmentation_items", "LabelMapOrHiddend", "segmentation_transforms", "training_voxel_size"]


def segmentation_items(datalist: str | os.PathLike, split: str = "training", label_fraction: float = 1.0,
                       seed: int = 0) -> list[dict]:
    """Items ``{image, label, id}`` of one split with absolute paths.

    For ``training`` with ``label_fraction < 1``, a seeded random share of the items keeps its
    label map (at least one); the others keep their image and get ``label = UNLABELED`` (-1):
    they train through the distillation terms only. Other splits always keep their labels.
    """
    items = load_decathlon_datalist(str(datalist), True, split)
    for item in items:
        item.setdefault("id", os.path.basename(str(item["image"])))
    fraction = float(label_fraction)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"label_fraction must be in (0, 1], got {label_fraction}")
    if split == "training" and fraction < 1.0:
        keep = max(1, int(round(fraction * len(items))))
        kept = set(split_rng(seed, "segmentation-labels").choice(len(items), size=keep, replace=False).tolist())
        items = [it if i in kept else {**it, "label": UNLABELED} for i, it in enumerate(items)]
    return items


def training_voxel_size(datalist: str | os.PathLike) -> list[float]:
    """The voxel size in mm of the first training image, as ``[x, y, z]`` for :class:`monai.transforms.Spacingd`.

    A 2D training patch has no slice spacing: its ``z`` is ``0.0``, which ``Spacingd`` reads as
    "keep the input's own". Inference resamples every volume to this grid (``model_info.json``'s
    ``pixdim``), so that a model trained on a coarser grid (the 3 mm lobe task) sees its own scale.
    """
    import nibabel as nib

    first = load_decathlon_datalist(str(datalist), True, "training")[0]["image"]
    zooms = [float(z) for z in nib.load(str(first)).header.get_zooms()[:3]]
    return zooms + [0.0] * (3 - len(zooms))


class LabelMapOrHiddend(MapTransform):
    """Load the label map, or make a map of ``-1`` (hidden) shaped like the image for an unlabelled item.

    Runs after the image is loaded channel-first; the label comes out ``(1, *spatial)`` int64.
    """

    def __init__(self, label_key: str = "label", image_key: str = "image") -> None:
        super().__init__([label_key])
        self.label_key, self.image_key = label_key, image_key
        self.loader = LoadImage(image_only=True, ensure_channel_first=True)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d.get(self.label_key)
        if isinstance(label, (str, os.PathLike)):
            loaded = self.loader(label)
            if tuple(loaded.shape[1:]) != tuple(d[self.image_key].shape[1:]):
                raise ValueError(f"label map {label} has shape {tuple(loaded.shape[1:])}, its image "
                                 f"{tuple(d[self.image_key].shape[1:])}")
            d[self.label_key] = torch.as_tensor(np.asarray(loaded), dtype=torch.int64)
        else:
            d[self.label_key] = torch.full((1, *d[self.image_key].shape[1:]), UNLABELED, dtype=torch.int64)
        return d


def segmentation_transforms(keys: Sequence[str] = ("image",)) -> Compose:
    """Load the image channel-first as float32 (keeping its metadata for the feature cache keys), then the label map."""
    return Compose([
        LoadImaged(keys=list(keys), image_only=True),
        EnsureChannelFirstd(keys=list(keys)),
        EnsureTyped(keys=list(keys), dtype=torch.float32),
        LabelMapOrHiddend(),
    ])
