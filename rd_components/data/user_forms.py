"""The three forms the user's own labelled data may take, read into split lists of raw items.

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

:mod:`.user_data` turns what is read here into one datalist.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import DataConfigError
from .datalist import read_json_object
from .inference import find_inputs

__all__ = ["detect_form", "read_form"]

_SPLIT_ALIASES = {"train": "training", "training": "training", "val": "validation", "valid": "validation",
                  "validation": "validation", "test": "test", "testing": "test"}


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


def _read_json(path: Path) -> dict:
    data = read_json_object(path)
    if not isinstance(data.get("training"), list) or not data["training"]:
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


def read_form(kind: str, path: Path, spatial_dims: int) -> tuple[dict[str, list[dict]], dict, dict | None]:
    """``(splits, metadata, labels mapping)`` of the user's data in form ``kind`` at ``path``
    (as :func:`detect_form` gives them): the split lists of raw items (``training``,
    ``validation``, ``test``, ``unlabeled``), the datalist's other keys and its ``labels``
    mapping (both empty / ``None`` for a CSV or class folders).

    Raises:
        DataConfigError: one line naming the cause and the file or key.
    """
    if kind == "datalist":
        return _items_from_datalist(path)
    if kind == "csv":
        return _items_from_csv(path), {}, None
    return _items_from_folders(path, spatial_dims), {}, None
