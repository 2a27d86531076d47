"""The forms a user's own segmentation data may take, read into image / label-map pairs.

``--dataset_dir`` of a segmentation bundle may name:

(a) a Medical Segmentation Decathlon / nnU-Net folder: ``imagesTr/`` and ``labelsTr/``, optional
    ``imagesTs/`` (unlabelled images: the distillation terms train on them) and ``dataset.json``
    with ``labels``, either ``{"0": "background", "1": "liver"}`` (MSD) or
    ``{"background": 0, "liver": 1}`` (nnU-Net v2), and optionally a ``training`` list of
    ``{image, label}``. Without the list, ``labelsTr/<case>.nii.gz`` pairs with
    ``imagesTr/<case>.nii.gz`` or nnU-Net's ``imagesTr/<case>_0000.nii.gz``; an image in
    ``imagesTr`` may also be a DICOM series folder ``imagesTr/<case>/``. Images of ``imagesTr``
    without a label map are used unlabelled; a second channel (``<case>_0001``) is refused;
(b) a decathlon datalist ``.json`` (or ``datalist.json`` / ``dataset.json`` in the folder) whose
    items are ``{image, label}`` paths, with a ``labels`` mapping;
(c) a CSV file (or a folder holding exactly one) with columns ``image,label[,split]``.

Images are NIfTI files or DICOM series folders; label maps are NIfTI (any reader MONAI has).
:mod:`.segmentation_data` turns what is read here into the patch datalist a run trains on.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import DataConfigError
from ..datalist import mapping_names, read_json_object
from ..inference import find_inputs
from ..user_forms import detect_form, read_form

__all__ = ["SegmentationSource", "read_segmentation_source", "segmentation_label_names"]

_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
_CHANNEL = re.compile(r"(.+)_(\d{4})")


@dataclass
class SegmentationSource:
    """The user's pairs: ``splits`` maps ``training`` / ``validation`` / ``test`` to items
    ``{"image": absolute path, "label": absolute path}``; ``unlabeled`` holds ``{"image"}`` items;
    ``names`` the class names in index order (``None``: numbered from the label maps);
    ``name`` names the data (its folder or file), ``path`` is where it was read."""

    path: Path
    name: str
    splits: dict[str, list[dict]]
    unlabeled: list[dict] = field(default_factory=list)
    names: list[str] | None = None


def segmentation_label_names(mapping: Any, where: str | os.PathLike) -> list[str]:
    """Class names in index order from ``labels``: ``{"0": "background", ...}`` (MSD, decathlon) or
    ``{"background": 0, ...}`` (nnU-Net v2).

    Raises:
        DataConfigError: a region label (nnU-Net's lists of indices), or indices not ``0..K-1``.
    """
    if isinstance(mapping, dict) and mapping and not all(str(k).strip().isdigit() for k in mapping):
        regions = [k for k, v in mapping.items() if isinstance(v, (list, tuple))]
        if regions:
            raise DataConfigError(f"{where}: region labels ({', '.join(map(str, regions))}) are not supported: "
                                  "give one index per class")
        if all(isinstance(v, int) or str(v).strip().isdigit() for v in mapping.values()):
            mapping = {str(int(v)): str(k) for k, v in mapping.items()}  # nnU-Net v2: name -> index
    return mapping_names(mapping, where)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _visible(folder: Path) -> list[Path]:
    # "._case.nii.gz" files are macOS resource forks that MSD archives often carry
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _read_dataset_json(folder: Path) -> dict:
    path = folder / "dataset.json"
    return read_json_object(path, expected="with 'labels'") if path.is_file() else {}


def _image_for(images: dict[str, Path], case: str, where: Path) -> Path | None:
    """The image of ``case``: ``<case>`` or nnU-Net's first channel ``<case>_0000``; a second channel is refused."""
    if f"{case}_0001" in images:
        raise DataConfigError(f"{where}: case {case} has several channels ({case}_0000, {case}_0001, ...): "
                              "the segmentation bundles take one image channel")
    return images.get(case) or images.get(f"{case}_0000")


def _read_msd(folder: Path) -> SegmentationSource:
    """An MSD / nnU-Net folder: pairs from ``dataset.json``'s ``training`` list or by case name."""
    meta = _read_dataset_json(folder)
    images_tr, labels_tr = folder / "imagesTr", folder / "labelsTr"
    if not labels_tr.is_dir():
        raise DataConfigError(f"{folder} has imagesTr/ but no labelsTr/ (the label maps)")
    images = {_stem(p): p for p in _visible(images_tr)}
    pairs: list[dict] = []
    if isinstance(meta.get("training"), list) and meta["training"]:
        for i, item in enumerate(meta["training"]):
            if not isinstance(item, dict) or "image" not in item or "label" not in item:
                raise DataConfigError(f"{folder / 'dataset.json'}: training[{i}] needs 'image' and 'label'")
            image = (folder / item["image"]).resolve()
            # nnU-Net v1 renamed the MSD files to <case>_0000 but kept the MSD list
            image = image if image.exists() else _image_for(images, _stem(image), images_tr) or image
            pairs.append({"image": str(image), "label": str((folder / item["label"]).resolve())})
    else:
        for label in _visible(labels_tr):
            image = _image_for(images, _stem(label), images_tr)
            if image is None:
                raise DataConfigError(f"{label} has no image in {images_tr} (looked for {_stem(label)} and {_stem(label)}_0000)")
            pairs.append({"image": str(image.resolve()), "label": str(label.resolve())})
    if not pairs:
        raise DataConfigError(f"{labels_tr} holds no label map")
    used = {Path(p["image"]).resolve() for p in pairs}
    # images without a label map train unlabelled; nnU-Net's further channels are never images of their own
    unlabeled = [{"image": str(p.resolve())} for p in images.values() if p.resolve() not in used and not _is_other_channel(p)]
    if (folder / "imagesTs").is_dir():
        unlabeled += [{"image": str(Path(it["image"]).resolve())} for it in find_inputs(folder / "imagesTs", 3)
                      if not _is_other_channel(Path(it["image"]))]
    names = segmentation_label_names(meta["labels"], folder / "dataset.json") if meta.get("labels") else None
    return SegmentationSource(folder, folder.name, {"training": pairs}, unlabeled, names)


def _is_other_channel(path: Path) -> bool:
    match = _CHANNEL.fullmatch(_stem(path))
    return bool(match) and match.group(2) != "0000"


def _read_pairs(kind: str, path: Path) -> SegmentationSource:
    """A decathlon datalist or a CSV of image / label-map paths (relative to the file's folder)."""
    splits, _, mapping = read_form(kind, path, 3)
    base = path.parent
    out: dict[str, list[dict]] = {}
    unlabeled = []
    for split, items in splits.items():
        for i, item in enumerate(items):
            label = item.get("label")
            image = item["image"]
            image = str(base / image) if isinstance(image, str) and not os.path.isabs(image) else image
            if label is None or label == "" or split == "unlabeled":
                if split not in ("training", "unlabeled"):
                    raise DataConfigError(f"{path}: {split} item {i} ({item['image']}) has no label map")
                unlabeled.append({"image": image})
                continue
            # a class index or name in a CSV is a string too: a label map path has a file suffix or names a file
            if not isinstance(label, str) or not (Path(label).suffix or (base / label).exists()):
                raise DataConfigError(f"{path}: {split} item {i} has label {label!r}, not a label map path "
                                      "(a classification datalist? this bundle segments)")
            out.setdefault(split, []).append({"image": image, "label": str(base / label) if not os.path.isabs(label) else label})
    if not out.get("training"):
        raise DataConfigError(f"{path}: no training item has a label map")
    names = segmentation_label_names(mapping, path) if mapping else None
    name = base.name if path.name in ("datalist.json", "dataset.json") else path.stem
    return SegmentationSource(path, name, out, unlabeled, names)


def read_segmentation_source(dataset_dir: str | os.PathLike) -> SegmentationSource | None:
    """The user's segmentation data at ``dataset_dir``; ``None`` when it holds none (the embedded
    task is then built there).

    Raises:
        DataConfigError: one line naming the cause and the file or folder.
    """
    path = Path(dataset_dir)
    if path.is_dir() and (path / "imagesTr").is_dir():
        return _read_msd(path)
    if path.is_dir() and (path / "dataset.json").is_file() and not (path / "datalist.json").exists():
        return _read_pairs("datalist", path / "dataset.json")
    form = detect_form(path)
    if form is None:
        return None
    kind, where = form
    if kind == "folders":
        raise DataConfigError(f"{path} holds folders but no segmentation data: expected imagesTr/ and labelsTr/ "
                              "(MSD / nnU-Net), a datalist .json or a .csv of image,label")
    return _read_pairs(kind, where)
