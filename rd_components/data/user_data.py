"""The user's own labelled data (see :mod:`.user_forms` for the three forms it may take), turned
into one decathlon datalist; and the datalist a run trains on (:func:`resolve_datalist`).

Every form becomes a datalist with integer labels ``0..K-1`` in the order of the sorted class
names (the label values themselves when there is no mapping; numeric labels that denote the
same number, ``1``, ``"1"`` and ``"1.0"``, are one class), absolute image paths, a stable
``id`` for every item, and ``training``/``validation``/``test`` splits; missing validation or
test splits are drawn from the training items, stratified and seeded. Every id ends with
``@<digest of the content>`` (and ``#frame`` for a frame of a multi-frame file): one made from
the path relative to the data folder, or the user's own id with the digest appended, so a
changed file never gets a stale cached teacher feature. A datalist that already has all of
that, with each id's digest matching its file's content now, is used as it is.
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path
from typing import Any

from ..embedded.build import ensure_dataset
from ..errors import DataConfigError
from .datalist import UNLABELED, mapping_names
from .item_ids import content_digest, stable_id, with_digest
from .sampling import split_rng
from .user_forms import detect_form, read_form

__all__ = ["normalise_user_data", "resolve_datalist", "SPLITS"]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
#: share of each class drawn for a missing validation / test split
HOLDOUT_FRACTION = 0.15


def _label_value(value: Any) -> Any:
    """The class a label denotes: a number (an ``int`` when whole) for numeric labels, so that
    ``1``, ``"1"``, ``"01"`` and ``"1.0"`` are one class; any other label as it is."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value
    if isinstance(value, int):
        return value
    number = value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
        try:
            number = float(value.strip())
        except ValueError:
            return value
    if not math.isfinite(number):
        return value  # "nan" or "inf" is a name, not a number
    return int(number) if number.is_integer() else number


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _label_key(value: Any) -> tuple:
    """Sort numbers numerically, then names alphabetically (``value`` from :func:`_label_value`)."""
    return (0, value, "") if _is_number(value) else (1, 0, str(value))


def _is_unlabeled(value: Any) -> bool:
    return value is None or value == "" or (_is_number(value) and value == UNLABELED)


def _class_index(splits: dict[str, list[dict]], names: list[str] | None, where: Path) -> tuple[dict[Any, int], list[str]]:
    """Label value (as :func:`_label_value` gives it) -> class index, and the class names in index
    order; ``names`` from the datalist's ``labels`` mapping, if any."""
    values = {_label_value(it.get("label")) for items in splits.values() for it in items if not _is_unlabeled(it.get("label"))}
    if names:
        index: dict[Any, int] = {}
        by_name = {n: i for i, n in enumerate(names)}
        for value in values:
            # a number is an index; a name (even a numeric one such as "1.5") is looked up in the mapping
            if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
                index[value] = value
            elif str(value) in by_name:
                index[value] = by_name[str(value)]
            else:
                raise DataConfigError(f"{where}: label {value!r} is neither an index nor a name of 'labels'")
        return index, list(names)
    if not values:
        raise DataConfigError(f"{where}: no item has a label")
    ordered = sorted(values, key=_label_key)
    return {v: i for i, v in enumerate(ordered)}, [str(v) for v in ordered]


def _holdout(items: list[dict], fraction: float, seed: int, stream: str) -> tuple[list[dict], list[dict]]:
    """``(kept, drawn)``: a stratified, seeded ``fraction`` of each class drawn (none from a class under 3 items)."""
    by_class: dict[int, list[int]] = {}
    for i, it in enumerate(items):
        if it["label"] != UNLABELED:
            by_class.setdefault(it["label"], []).append(i)
    drawn: set[int] = set()
    for label, idx in sorted(by_class.items()):
        n = int(round(fraction * len(idx))) if len(idx) >= 3 else 0
        n = max(1, n) if len(idx) >= 3 else 0
        order = split_rng(seed, "user-split", stream, label).permutation(len(idx))
        drawn.update(idx[k] for k in order[:n])
    return [it for i, it in enumerate(items) if i not in drawn], [it for i, it in enumerate(items) if i in drawn]


def _image_path(item: dict, base: Path) -> Path:
    image = Path(str(item["image"]))
    return image if image.is_absolute() else base / image


def _finish_item(item: dict, index: dict[Any, int], base: Path, where: Path, digests: dict[str, str]) -> dict:
    """The item with an absolute image path, its class index and an id ending with its content digest."""
    out = dict(item)
    image = _image_path(out, base)
    if not image.exists():
        raise DataConfigError(f"{where}: image {image} not found")
    out["image"] = str(image)
    label = out.get("label")
    out["label"] = UNLABELED if _is_unlabeled(label) else index[_label_value(label)]
    if out.get("id"):
        # a user-given id says nothing of the pixels: the digest makes it change when the file does
        out["id"] = with_digest(str(out["id"]), out.get("frame"), content_digest(image, digests))
    else:
        out["id"] = stable_id(image, base, out.get("frame"), digests)
    return out


def normalise_user_data(source: str | os.PathLike, output_dir: str | os.PathLike | None = None, spatial_dims: int = 2,
                        seed: int = 0, holdout: float = HOLDOUT_FRACTION) -> Path | None:
    """The datalist to train on for the user's data at ``source``; ``None`` when there is none.

    A datalist that needs no change (integer labels with a ``labels`` mapping, the three splits,
    ids ending with their file's current content digest, no frames) is returned as it is;
    otherwise the normalised datalist is written to ``<output_dir>/datalist_<source name>.json``
    (``output_dir`` defaults to the source's folder; the bundles always pass theirs), with
    ``"source"``, ``"split_seed"`` and ``"generated_splits"`` recorded, so the run can be
    repeated from it.

    Raises:
        DataConfigError: one line naming the cause and the file or key.
    """
    form = detect_form(source)
    if form is None:
        return None
    kind, path = form
    splits, meta, mapping = read_form(kind, path, spatial_dims)
    base = path.parent if path.is_file() else path
    # checked before anything else reads it: a bad mapping is one line, never a traceback downstream
    mapped = mapping_names(mapping, path) if mapping else None
    digests: dict[str, str] = {}
    if kind == "datalist" and _ready(splits, mapped, base, digests):
        return path
    index, names = _class_index({k: v for k, v in splits.items() if k != "unlabeled"}, mapped, path)
    done = {k: [_finish_item(it, index, base, path, digests) for it in v] for k, v in splits.items()}
    generated = []
    training = done.get("training", [])
    for split in ("test", "validation"):
        if not done.get(split):
            training, done[split] = _holdout(training, holdout, seed, split)
            generated.append(split)
            if not done[split]:
                raise DataConfigError(f"{path}: too few labelled items per class to draw a {split} split (3 or more needed)")
    done["training"] = training
    out = {**meta, "name": meta.get("name", base.name if kind == "folders" else path.stem), "source": str(path),
           "labels": {str(i): n for i, n in enumerate(names)}, "num_classes": len(names), "spatial_dims": spatial_dims,
           "split_seed": seed, "generated_splits": generated,
           "numTraining": len(done["training"]), **{k: done[k] for k in ("training", "validation", "test")}}
    if done.get("unlabeled"):
        out["unlabeled"] = done["unlabeled"]
    folder = Path(output_dir) if output_dir is not None else base
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"datalist_{base.name if kind == 'folders' else path.stem}.json"
    target.write_text(json.dumps(out, indent=1))
    logger.info("user data %s (%s): %d classes, %s; datalist written to %s%s", path, kind, len(names),
                ", ".join(f"{k} {len(done[k])}" for k in SPLITS), target,
                f" ({' and '.join(generated)} drawn with seed {seed})" if generated else "")
    return target


def _ready(splits: dict[str, list[dict]], names: list[str] | None, base: Path, digests: dict[str, str]) -> bool:
    """True when a datalist can be used as it is: a mapping, the three splits, class-index labels,
    and every id ending with the current content digest of its image (else a changed file would
    keep its id, and the teacher feature cache would serve the old file's features)."""
    if not names or not all(splits.get(s) for s in SPLITS):
        return False
    for items in splits.values():
        for it in items:
            label = it.get("label")
            if not it.get("id") or "frame" in it:
                return False
            if label is not None and (isinstance(label, bool) or not isinstance(label, int)
                                      or not (label == UNLABELED or 0 <= label < len(names))):
                return False
            image = _image_path(it, base)
            if not image.exists() or not str(it["id"]).endswith(f"@{content_digest(image, digests)}"):
                return False
    return True


def resolve_datalist(dataset_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, seed: int = 0,
                     **build_kwargs: Any) -> str:
    """The datalist to train on.

    ``dataset_dir`` may hold the user's own labelled data in one of three forms, see
    :mod:`rd_components.data.user_forms`: a decathlon datalist (``datalist.json`` or a ``.json``
    file, with or without a ``labels`` mapping), a CSV of ``image,label[,split]``, or a folder
    of class sub-folders. It is normalised (class indices, stable ids, a seeded stratified
    validation/test split when missing) into ``<output_dir>/datalist_<name>.json``. Otherwise
    the embedded task described by ``build_kwargs`` is built under ``dataset_dir`` if missing
    (:func:`rd_components.embedded.ensure_dataset`).

    Raises:
        DataConfigError: one line naming the cause and the file or key.
    """
    own = normalise_user_data(dataset_dir, output_dir, int(build_kwargs.get("spatial_dims", 2)), int(seed))
    if own is not None:
        return str(own)
    return str(ensure_dataset(dataset_dir, **build_kwargs))
