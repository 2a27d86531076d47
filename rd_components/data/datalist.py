"""Decathlon-style datalists: loading, label-scarce training subsets, class counts."""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from collections.abc import Sequence

from .sampling import split_rng

__all__ = ["load_datalist", "read_datalist", "subsample_training", "stratified_indices", "class_counts"]

_ALIASES = {"train": "training", "val": "validation", "valid": "validation", "testing": "test"}


def stratified_indices(labels: Sequence, fraction: float, seed: int) -> list[int]:
    """Indices of a stratified, seeded subset keeping ``fraction`` of each class (at least one).

    Subsets are nested: for one seed, the 1 % subset lies inside the 10 % one, which lies
    inside 100 %, so label-scarce results differ only by the labels removed.

    Args:
        labels: one hashable class label per item.
        fraction: in ``(0, 1]``.
        seed: subset seed.

    Returns:
        sorted indices into ``labels``.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    by_class: dict = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    keep: list[int] = []
    for lab, idx in by_class.items():
        n = max(1, math.floor(fraction * len(idx) + 0.5))
        order = split_rng(seed, "subsample", repr(lab)).permutation(len(idx))
        keep += [idx[k] for k in order[:n]]
    return sorted(keep)


def subsample_training(datalist: dict, fraction: float, seed: int) -> dict:
    """Label-scarce copy of a datalist: a stratified ``fraction`` of ``"training"``.

    ``"validation"``, ``"test"`` and all metadata are kept untouched; the copy records
    ``"training_fraction"`` and ``"subsample_seed"``. Image paths stay relative to the
    original datalist's folder.

    Args:
        datalist: parsed datalist JSON (items carry an integer ``"label"``).
        fraction: in ``(0, 1]``; each class keeps ``max(1, round(fraction * n_class))`` items.
        seed: subset seed (nested subsets across fractions for one seed).
    """
    out = copy.deepcopy(datalist)
    items = out["training"]
    out["training"] = [items[i] for i in stratified_indices([it["label"] for it in items], fraction, seed)]
    out["training_fraction"] = fraction
    out["subsample_seed"] = seed
    if "numTraining" in out:
        out["numTraining"] = len(out["training"])
    return out


def load_datalist(path: str | os.PathLike, split: str = "training", fraction: float = 1.0, seed: int = 0) -> list[dict]:
    """Items of one split with absolute image paths (thin wrapper of MONAI's loader).

    Args:
        path: ``datalist.json``; relative image paths resolve against its folder.
        split: ``"training"``, ``"validation"`` or ``"test"`` (``train``/``val`` accepted).
        fraction: for ``"training"``, keep a stratified subset (see :func:`subsample_training`).
        seed: subset seed.

    Returns:
        ``[{"image": abs path, "label": int, "id": str, ...}, ...]``
    """
    from monai.data import load_decathlon_datalist

    key = _ALIASES.get(split, split)
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=key)
    if fraction != 1.0:
        if key != "training":
            raise ValueError("fraction applies to the training split only; validation and test stay whole")
        items = [items[i] for i in stratified_indices([it["label"] for it in items], fraction, seed)]
    return items


def class_counts(items: Sequence[dict]) -> dict[int, int]:
    """``{label: count}`` sorted by label."""
    return dict(sorted(Counter(it["label"] for it in items).items()))


def read_datalist(path: str | os.PathLike) -> dict:
    """The raw datalist JSON as a dict (relative paths untouched)."""
    with open(path) as handle:
        return json.load(handle)
