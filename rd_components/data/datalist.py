"""Decathlon-style datalists: loading, label-scarce training subsets, class counts."""

from __future__ import annotations

import copy
import json
import math
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import DataConfigError
from .inference import find_inputs
from .item_ids import stable_id
from .sampling import split_rng

__all__ = [
    "UNLABELED",
    "load_datalist",
    "read_datalist",
    "subsample_training",
    "stratified_indices",
    "class_counts",
    "hide_labels",
    "is_labeled",
    "labeled_items",
    "unlabeled_folder_items",
    "read_datalist_info",
    "class_names",
    "mapping_names",
]

#: label value of an item whose label is hidden (label-scarce training) or unknown (unlabelled
#: images); the cross-entropy terms skip such items, the distillation terms use them
UNLABELED = -1

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


def is_labeled(item: dict) -> bool:
    """True when ``item`` carries a label: a class (not :data:`UNLABELED`) or a label-map file."""
    label = item.get("label")
    if isinstance(label, (str, os.PathLike)):
        return True  # a segmentation label map
    return label is not None and int(label) != UNLABELED


def labeled_items(items: Sequence[dict]) -> list[dict]:
    """The items of ``items`` that carry a label (for fits that need one, e.g. a linear probe)."""
    return [it for it in items if is_labeled(it)]


def hide_labels(items: Sequence[dict], fraction: float, seed: int) -> list[dict]:
    """Copies of ``items`` in which only a stratified ``fraction`` keeps its label.

    Every image stays; the others get ``label = UNLABELED``. Which items keep their label is
    :func:`stratified_indices` over the items that are labelled on input (nested across
    fractions for one seed); items already unlabelled stay so.
    """
    out = [dict(it) for it in items]
    labelled = [i for i, it in enumerate(out) if is_labeled(it)]
    if fraction != 1.0:
        keep = {labelled[k] for k in stratified_indices([out[i]["label"] for i in labelled], fraction, seed)}
        for i in labelled:
            if i not in keep:
                out[i]["label"] = UNLABELED
    return out


def unlabeled_folder_items(folder: str | os.PathLike, spatial_dims: int) -> list[dict]:
    """Training items for a folder of the user's own unlabelled DICOM / NIfTI images.

    Found as the inference bundle finds its inputs (a NIfTI file is one item; in 2D each frame of
    a multi-frame DICOM file is an item, with its ``frame``; in 3D a folder of DICOM files is one
    series), each with ``label = UNLABELED`` and an ``id``
    ``unlabeled/<path relative to folder>[#frame]@<content digest>`` (see
    :func:`~rd_components.data.item_ids.stable_id`), so that the teacher feature cache covers
    it and a replaced file never gets the old file's cached features.
    """
    digests: dict[str, str] = {}  # the frames of one file share its digest
    return [{"image": it["image"], "label": UNLABELED, **({"frame": it["frame"]} if "frame" in it else {}),
             "id": "unlabeled/" + stable_id(it["image"], folder, it.get("frame"), digests)}
            for it in find_inputs(folder, spatial_dims)]


def load_datalist(
    path: str | os.PathLike,
    split: str = "training",
    fraction: float = 1.0,
    seed: int = 0,
    unlabeled: bool = True,
    unlabeled_dir: str | os.PathLike | None = None,
    spatial_dims: int | None = None,
) -> list[dict]:
    """Items of one split with absolute image paths (thin wrapper of MONAI's loader).

    Label-scarce training keeps every image and hides labels: with ``fraction < 1`` a
    stratified, seeded share of the training items keeps its label (:func:`hide_labels`), the
    rest get ``label = UNLABELED`` (-1). The cross-entropy terms skip unlabelled items; the
    distillation terms learn from them. That is the setting RD is for: few labels, many images.

    Args:
        path: ``datalist.json``; relative image paths resolve against its folder.
        split: ``"training"``, ``"validation"`` or ``"test"`` (``train``/``val`` accepted).
        fraction: for ``"training"``, the share of labels kept (stratified; at least one per class).
        seed: label subset seed.
        unlabeled: for ``"training"``, also add the datalist's ``"unlabeled"`` list (decathlon
            style items with an ``image`` and no ``label``).
        unlabeled_dir: for ``"training"``, also add every image of this folder, unlabelled
            (needs ``spatial_dims``).
        spatial_dims: 2 or 3, for ``unlabeled_dir``.

    Returns:
        ``[{"image": abs path, "label": int (UNLABELED if hidden), "id": str, ...}, ...]``:
        the split's items in datalist order, then the unlabelled ones.
    """
    from monai.data import load_decathlon_datalist

    key = _ALIASES.get(split, split)
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key=key)
    if key != "training":
        if fraction != 1.0 or unlabeled_dir:
            raise ValueError("fraction and unlabeled_dir apply to the training split only; validation and test stay whole")
        return items
    items = hide_labels(items, fraction, seed)
    if unlabeled and "unlabeled" in read_datalist(path):
        extra = load_decathlon_datalist(path, is_segmentation=False, data_list_key="unlabeled")
        items += [{**it, "label": UNLABELED, "id": _unlabeled_id(it, path)} for it in extra]
    if unlabeled_dir:
        if spatial_dims is None:
            raise ValueError("unlabeled_dir needs spatial_dims (2 or 3)")
        items += unlabeled_folder_items(unlabeled_dir, spatial_dims)
    return items


def _unlabeled_id(item: dict, datalist: str | os.PathLike) -> str:
    """The id of an item of a datalist's ``"unlabeled"`` list: its own, or
    ``unlabeled/<path>[#frame]@<content digest>`` (a base name alone would let two folders'
    ``img1.nii.gz`` share one cached teacher feature, and a replaced file keep its old one)."""
    if item.get("id"):
        return str(item["id"])
    return "unlabeled/" + stable_id(item["image"], os.path.dirname(os.path.abspath(datalist)), item.get("frame"))


def class_counts(items: Sequence[dict]) -> dict[int, int]:
    """``{label: count}`` of the labelled items, sorted by label."""
    return dict(sorted(Counter(it["label"] for it in items if is_labeled(it)).items()))


def read_datalist(path: str | os.PathLike) -> dict:
    """The raw datalist JSON as a dict (relative paths untouched)."""
    with open(path) as handle:
        return json.load(handle)


def read_datalist_info(path: str | os.PathLike) -> dict[str, Any]:
    """The datalist JSON without its split lists (``num_classes``, ``labels``, ``spatial_dims``...),
    with ``source``: the path it was read from.

    Raises:
        DataConfigError: the file is missing, not JSON or not a JSON object (one line naming it).
    """
    path = Path(path)
    info = read_json_object(path, "Datalist", "with 'training', 'labels'...")
    return {"source": str(path), **{k: v for k, v in info.items() if k not in ("training", "validation", "test", "unlabeled")}}


def read_json_object(path: str | os.PathLike, what: str = "", expected: str = "") -> dict:
    """The JSON object in ``path`` (a datalist, an MSD ``dataset.json``).

    Raises:
        DataConfigError: one line naming ``path`` when it is missing, not JSON, or not an object.
    """
    path = Path(path)
    name = f"{what} {path}" if what else str(path)
    if not path.is_file():
        raise DataConfigError(f"{name} not found.")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataConfigError(f"{name} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise DataConfigError(f"{name} must be a JSON object{' ' + expected if expected else ''}, got a {type(data).__name__}")
    return data


def mapping_names(mapping: Any, where: str | os.PathLike) -> list[str]:
    """Class names in index order from a datalist's ``labels`` mapping ``{"0": name, ...}``.

    Raises:
        DataConfigError: the mapping is not an object, a key is not an integer, or the indices
            are not ``0..K-1`` (one line naming ``where``).
    """
    usage = f"{where}: 'labels' must map class indices to names, e.g. {{\"0\": \"normal\"}}"
    if not isinstance(mapping, dict):
        raise DataConfigError(f"{usage}; got a {type(mapping).__name__}")
    try:
        names = {int(str(k).strip()): str(v) for k, v in mapping.items()}
    except ValueError:
        bad = [k for k in mapping if not str(k).strip().lstrip("-").isdigit()]
        raise DataConfigError(f"{usage}; keys {', '.join(repr(k) for k in bad)} are not integers") from None
    if len(names) != len(mapping) or sorted(names) != list(range(len(names))):
        raise DataConfigError(f"{where}: 'labels' indices must be 0..{len(mapping) - 1} once each, "
                              f"got {', '.join(map(str, mapping))}")
    return [names[i] for i in range(len(names))]


def class_names(info: dict[str, Any]) -> list[str]:
    """Class names ordered by label index, from a datalist's ``labels`` mapping.

    :func:`~rd_components.data.resolve_datalist` writes the mapping for the user's data when it has none.

    Raises:
        DataConfigError: no mapping, or one whose keys are not the indices ``0..K-1`` (one line
            naming the datalist when ``info`` has a ``source``).
    """
    labels = info.get("labels")
    where = f" {info['source']}" if info.get("source") else ""
    if not labels:
        raise DataConfigError(f"datalist{where} has no 'labels' mapping {{index: name}}: cannot tell the number of classes")
    return mapping_names(labels, f"datalist{where}")
