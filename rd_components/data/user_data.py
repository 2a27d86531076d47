"""The user's own labelled data in three forms, turned into one decathlon datalist.

``--dataset_dir`` may name:

(a) a decathlon datalist (``datalist.json`` in the folder, or the ``.json`` file itself), with
    or without a ``labels`` mapping ``{index: name}``; labels may be integers or strings;
(b) a CSV file (or a folder holding exactly one) with columns ``image,label`` and optional
    ``split`` (``training``/``train``, ``validation``/``val``, ``test``) and ``id``;
(c) a folder with one sub-folder per class (``<dir>/<class name>/<images>``), whose images are
    found as the inference bundle finds them (NIfTI files, DICOM files and, for 3D, DICOM
    series folders; each frame of a 2D multi-frame file is an item); or the same laid out by
    split, ``<dir>/<split>/<class name>/<images>`` with split folders named ``train``/``training``,
    ``val``/``valid``/``validation`` and ``test``/``testing`` (any case). A folder mixing split
    folders with other folders is refused, naming them.

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

import csv
import hashlib
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datalist import UNLABELED
from .sampling import split_rng

__all__ = ["DataConfigError", "detect_form", "normalise_user_data", "stable_id", "mapping_names", "SPLITS"]

logger = logging.getLogger(__name__)

SPLITS = ("training", "validation", "test")
_SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test", "testing": "test"}
#: share of each class drawn for a missing validation / test split
HOLDOUT_FRACTION = 0.15
#: the content digest that ends every id (see :func:`stable_id`)
_DIGEST_SUFFIX = re.compile(r"@[0-9a-f]{16}$")


class DataConfigError(ValueError):
    """The user's data cannot be used; the message names the cause and the file or key."""


def detect_form(path: str | os.PathLike) -> tuple[str, Path] | None:
    """``("datalist" | "csv" | "folders", file or folder)`` for the user's data, ``None`` when
    ``path`` holds no user data (it is then where the embedded tasks are built)."""
    path = Path(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return "datalist", path
        if suffix == ".csv":
            return "csv", path
        raise DataConfigError(f"{path}: expected a datalist .json, a .csv or a folder")
    if not path.exists():
        if path.suffix.lower() in (".json", ".csv"):
            raise DataConfigError(f"{path} not found")
        return None
    if not path.is_dir():
        raise DataConfigError(f"{path} is neither a file nor a folder")
    if (path / "datalist.json").is_file():
        return "datalist", path / "datalist.json"
    csvs = sorted(path.glob("*.csv"))
    if len(csvs) == 1:
        return "csv", csvs[0]
    if len(csvs) > 1:
        raise DataConfigError(f"{path} holds several CSV files ({', '.join(c.name for c in csvs)}): pass one of them")
    folders = [d for d in sorted(path.iterdir()) if d.is_dir() and not d.name.startswith(".")]
    # the embedded tasks are built as <dir>/<task folder>/datalist.json: not class folders
    if folders and not any((d / "datalist.json").exists() for d in folders):
        return "folders", path
    return None


def _digest_path(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        digest.update(str(file.relative_to(path) if path.is_dir() else "").encode())
        with open(file, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _content_digest(path: Path, digests: dict[str, str] | None) -> str:
    """The digest of ``path``'s content, computed once per path in ``digests`` (the frames of
    one multi-frame file share it)."""
    if digests is None:
        return _digest_path(path)
    key = str(path)
    if key not in digests:
        digests[key] = _digest_path(path)
    return digests[key]


def stable_id(image: str | os.PathLike, root: str | os.PathLike | None = None, frame: int | None = None,
              digests: dict[str, str] | None = None) -> str:
    """``<path relative to root>[#frame]@<content digest>``: the same file gives the same id on
    every run and machine layout, a changed file a new one (the feature cache keys on it).

    ``digests`` memoises the content digest per path within one listing (pass the same dict for
    every frame of a file).

    Raises:
        DataConfigError: the image does not exist.
    """
    path = Path(image)
    if not path.exists():
        raise DataConfigError(f"image {path} not found")
    name = str(path.relative_to(root)) if root is not None and path.is_relative_to(root) else path.name
    return f"{name}{'' if frame is None else f'#{int(frame)}'}@{_content_digest(path, digests)}"


def _with_digest(given: str, frame: int | None, digest: str) -> str:
    """A user-given id made honest: ``<id>[#frame]@<digest>``; a digest the id already ends with
    is replaced (a file changed since a normalised datalist was written gets a new id)."""
    name = _DIGEST_SUFFIX.sub("", given)
    if frame is not None and not name.endswith(f"#{int(frame)}"):
        name += f"#{int(frame)}"  # one file's frames are different images
    return f"{name}@{digest}"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataConfigError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("training"), list) or not data["training"]:
        raise DataConfigError(f"{path}: a datalist needs a non-empty 'training' list of {{'image', 'label'}} items")
    return data


def _items_from_datalist(path: Path) -> tuple[dict[str, list[dict]], dict, dict | None]:
    data = _read_json(path)
    splits: dict[str, list[dict]] = {}
    for key, values in data.items():
        split = _SPLIT_ALIASES.get(key, "unlabeled" if key == "unlabeled" else None)
        if split is None:
            continue
        if not isinstance(values, list):
            raise DataConfigError(f"{path}: '{key}' must be a list of items")
        for i, item in enumerate(values):
            if not isinstance(item, dict) or "image" not in item:
                raise DataConfigError(f"{path}: {key}[{i}] has no 'image'")
            splits.setdefault(split, []).append(dict(item))
    meta = {k: v for k, v in data.items() if k not in _SPLIT_ALIASES and k != "unlabeled"}
    return splits, meta, data.get("labels")


def _items_from_csv(path: Path) -> dict[str, list[dict]]:
    # utf-8-sig: Excel saves CSVs with a byte-order mark, which would otherwise prefix the first column name
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip().lower() for c in reader.fieldnames or []]
        if "image" not in columns or "label" not in columns:
            raise DataConfigError(f"{path}: needs the columns 'image' and 'label' (found: {', '.join(columns) or 'none'})")
        splits: dict[str, list[dict]] = {}
        for line, row in enumerate(reader, start=2):
            row = {k.strip().lower(): (v or "").strip() for k, v in row.items() if k}
            split = _SPLIT_ALIASES.get(row.get("split", "").lower() or "training")
            if split is None:
                raise DataConfigError(f"{path}, line {line}: unknown split {row['split']!r} (training, validation or test)")
            item = {"image": row["image"], "label": row["label"] if row["label"] != "" else None}
            if row.get("id"):
                item["id"] = row["id"]
            splits.setdefault(split, []).append(item)
    if not splits:
        raise DataConfigError(f"{path} has no rows")
    return splits


def _subfolders(path: Path) -> list[Path]:
    return sorted(d for d in path.iterdir() if d.is_dir() and not d.name.startswith("."))


def _split_of(folder: Path) -> str | None:
    """The split a folder named ``train``, ``val``, ``test``... holds; ``None`` for a class folder."""
    return _SPLIT_ALIASES.get(folder.name.lower())


def _class_folder_items(folders: Sequence[Path], spatial_dims: int) -> list[dict]:
    """Items of class folders: label = folder name, one item per image (per frame in 2D)."""
    from .inference import find_inputs

    items = []
    for folder in folders:
        try:
            found = find_inputs(folder, spatial_dims)
        except ValueError:
            raise DataConfigError(f"class folder {folder} holds no image") from None
        items += [{"image": it["image"], "label": folder.name, **({"frame": it["frame"]} if "frame" in it else {})}
                  for it in found]
    return items


def _items_from_folders(path: Path, spatial_dims: int) -> dict[str, list[dict]]:
    """Class folders, or split folders (``train/``, ``val/``, ``test/``...) of class folders."""
    folders = _subfolders(path)
    by_split = [d for d in folders if _split_of(d)]
    if not by_split:
        return {"training": _class_folder_items(folders, spatial_dims)}
    others = [d.name for d in folders if not _split_of(d)]
    if others:
        # a class named "test" next to class folders, or classes beside the split folders: either reading is a guess
        raise DataConfigError(f"{path} mixes split folders ({', '.join(d.name for d in by_split)}) with other folders "
                              f"({', '.join(others)}): put every class folder under a split folder, or rename the split folders")
    splits: dict[str, list[dict]] = {}
    for folder in by_split:
        classes = _subfolders(folder)
        if not classes:
            raise DataConfigError(f"split folder {folder} holds no class folder (<split>/<class>/<images>)")
        splits.setdefault(_split_of(folder), []).extend(_class_folder_items(classes, spatial_dims))
    if not splits.get("training"):
        raise DataConfigError(f"{path} has split folders but no training one (train/ or training/)")
    return splits


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
        out["id"] = _with_digest(str(out["id"]), out.get("frame"), _content_digest(image, digests))
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
    mapping, meta = None, {}
    if kind == "datalist":
        splits, meta, mapping = _items_from_datalist(path)
    elif kind == "csv":
        splits = _items_from_csv(path)
    else:
        splits = _items_from_folders(path, spatial_dims)
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
            if not image.exists() or not str(it["id"]).endswith(f"@{_content_digest(image, digests)}"):
                return False
    return True

