"""Inference inputs: discover DICOM files (frame by frame), DICOM series folders and NIfTI files; never stop on a bad one."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from monai.utils import convert_to_tensor
from torch.utils.data import Dataset

from ..errors import DataConfigError, NoImageError, describe_error
from .dicom import dicom_series, frame_count, is_nifti_path, read_dicom_header
from .transforms import NOTES_KEY, classification_transforms

__all__ = ["find_inputs", "read_model_info", "load_exported_model", "SafeInferenceDataset"]

logger = logging.getLogger(__name__)


def _is_nifti(path: Path) -> bool:
    return is_nifti_path(path.name)


def _frames(path: Path) -> int:
    """Frames of a DICOM file; 1 for anything else (which then fails to load, with its reason)."""
    try:
        return frame_count(read_dicom_header(path))
    except NoImageError:
        return 1


def _file_items(path: Path, root: Path, spatial_dims: int) -> list[dict]:
    item = {"image": str(path), "file": str(path.relative_to(root)), "format": "dicom"}
    frames = _frames(path) if spatial_dims == 2 else 1
    if frames == 1:
        return [item]
    return [{**item, "frame": k} for k in range(frames)]


def _series_items(folder: Path, files: list[Path], root: Path, split_series: bool) -> list[dict]:
    """One item for a series folder; with ``split_series``, one per series when the folder mixes several.

    A split series is named ``<folder>/series_<SeriesNumber>`` (``<folder>/<SeriesInstanceUID>``
    when the numbers are missing or repeated) and its item's ``image`` is the list of its files
    in slice order.
    """
    relative = folder.relative_to(root)
    item = {"image": str(folder), "file": str(relative) + os.sep, "format": "dicom"}
    if not split_series:
        return [item]  # a mix is refused when loaded, naming the series
    try:
        series = dicom_series(files)
    except NoImageError:
        return [item]  # the loader reports the reason
    if len(series) < 2:
        return [item]
    numbers = [s.number for s in series]
    by_number = all(numbers) and len(set(numbers)) == len(numbers)
    logger.info("%s holds %d DICOM series: one volume each (%s)", folder, len(series), "; ".join(s.describe() for s in series))
    return [{"image": [str(f) for f in s.files], "format": "dicom",
             "file": str(relative / (f"series_{s.number}" if by_number else s.uid or f"series_{k + 1}"))}
            for k, s in enumerate(series)]


def find_inputs(input_dir: str | os.PathLike, spatial_dims: int, split_series: bool = False,
                exclude: Sequence[str | os.PathLike] = ()) -> list[dict]:
    """List inference items under ``input_dir``.

    NIfTI files are one item each. Other files are DICOM candidates: for a 2D model each file is
    an item, and each frame of a multi-frame file is an item of its own (only the header is
    read here, to count the frames); for a 3D model a folder holding several non-NIfTI files is
    one DICOM series item and a lone file is an item of its own. Unreadable files show up as
    items and are reported with their reason by :class:`SafeInferenceDataset`.

    Args:
        input_dir: the folder to search, sub-folders included.
        spatial_dims: 2 or 3.
        split_series: 3D, for inference: a folder mixing several DICOM series (SeriesInstanceUID)
            gives one item per series, named ``<folder>/series_<SeriesNumber>`` (or the UID);
            without it (training) the folder stays one item, which loading refuses, naming the series.
        exclude: folders not to search (the inference output folder, when it lies inside
            ``input_dir``: its outputs must not be read back as inputs); one log line each.

    Returns:
        ``[{"image": path (or a split series' files), "file": path relative to input_dir,
        "format": "nifti"|"dicom", "frame": 0-based index (multi-frame files only)}]`` sorted by
        ``file`` then frame.

    Raises:
        DataConfigError: ``input_dir`` is missing, is itself excluded, or holds no file.
    """
    root = Path(input_dir)
    if not root.is_dir():
        raise DataConfigError(f"input folder {root} does not exist")
    skipped = {Path(os.path.abspath(f)) for f in exclude if f}
    if Path(os.path.abspath(root)) in skipped:
        raise DataConfigError(f"input folder {root} is also the output folder: give another output folder")
    items: list[dict] = []
    for folder, subfolders, names in os.walk(root):
        # pruned in place: os.walk then does not descend into the output folder
        for name in sorted(subfolders):
            if Path(os.path.abspath(os.path.join(folder, name))) in skipped:
                subfolders.remove(name)
                logger.info("Not reading %s: it is the output folder", os.path.join(folder, name))
        files = sorted(Path(folder) / n for n in names if not n.startswith("."))
        others = [f for f in files if not _is_nifti(f)]
        items += [{"image": str(f), "file": str(f.relative_to(root)), "format": "nifti"} for f in files if _is_nifti(f)]
        if spatial_dims == 3 and len(others) > 1:
            items += _series_items(Path(folder), others, root, split_series)
        else:
            for f in others:
                items += _file_items(f, root, spatial_dims)
    if not items:
        raise DataConfigError(f"no input file found under {root}")
    return sorted(items, key=lambda item: (item["file"], item.get("frame", 0)))


def read_model_info(ckpt_dir: str | os.PathLike) -> dict:
    """``<ckpt_dir>/model_info.json``: what training recorded about the exported model.

    Raises:
        DataConfigError: the file is missing or not JSON (one line naming it).
    """
    path = Path(ckpt_dir) / "model_info.json"
    if not path.is_file():
        raise DataConfigError(f"{path} not found: give --ckpt_dir the folder training exported the model to")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise DataConfigError(f"{path} is not valid JSON: {error}") from None


def load_exported_model(ckpt_dir: str | os.PathLike, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``<ckpt_dir>/model.ts``, the TorchScript student training exported, on ``device``.

    Raises:
        DataConfigError: the file is missing or not a TorchScript model (one line naming it).
    """
    path = Path(ckpt_dir) / "model.ts"
    if not path.is_file():
        raise DataConfigError(f"{path} not found: give --ckpt_dir the folder training exported the model to")
    try:
        return torch.jit.load(str(path), map_location=device)
    except (RuntimeError, ValueError) as error:
        raise DataConfigError(f"{path} is not a TorchScript model ({' '.join(str(error).split())[:160]})") from None


class SafeInferenceDataset(Dataset):
    """Load and preprocess inference items; an item that fails carries its reason instead.

    A failing item (unreadable or corrupt DICOM, non-image file, NaN/Inf voxels, wrong
    dimensionality) yields a zero image of the expected shape and ``error`` set to one line
    naming the reason in plain words, so batches still collate, the other items are
    predicted, and the writer lists the failure. Each failure is also logged once with the
    file name. An item that loaded carries ``note``: what was done to read it (a colour image
    converted to luminance, orientation tags absent...), empty when nothing.

    Args:
        items: from :func:`find_inputs`.
        spatial_dims: 2 or 3.
        patch_size: model input size per axis.

    Shapes:
        ``image`` ``(1, *patch_size)`` float32; ``error`` ``""`` when the item loaded;
        ``frame`` the 1-based frame number of a multi-frame file's frame, 0 otherwise.
    """

    def __init__(self, items: Sequence[dict], spatial_dims: int, patch_size: Sequence[int]) -> None:
        self.items = list(items)
        self.spatial_dims = spatial_dims
        self.patch_size = tuple(int(s) for s in patch_size)
        self._transforms = {fmt: classification_transforms(spatial_dims, None, fmt) for fmt in ("dicom", "nifti")}
        from monai.transforms import Resize

        mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self._resize = Resize(self.patch_size, mode=mode, anti_aliasing=True)

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, item: dict) -> tuple[torch.Tensor, str]:
        data = self._transforms[item["format"]]({k: item[k] for k in ("image", "frame") if k in item})
        note = str(getattr(data["image"], "meta", {}).get(NOTES_KEY, ""))
        image = convert_to_tensor(data["image"], dtype=torch.float32, track_meta=False)
        if image.ndim != 1 + self.spatial_dims:
            raise ValueError(f"expected a {self.spatial_dims}D image, got array shape {tuple(image.shape[1:])}")
        if not torch.isfinite(image).all():
            raise ValueError("image contains NaN or Inf values")
        if image.shape[0] != 1:
            raise ValueError(f"expected one channel, got {image.shape[0]}")
        if tuple(image.shape[1:]) != self.patch_size:
            image = convert_to_tensor(self._resize(image), dtype=torch.float32, track_meta=False)
        return image, note

    def __getitem__(self, index: int) -> dict:
        item = self.items[index]
        frame = int(item["frame"]) + 1 if "frame" in item else 0
        out = {"file": item["file"], "frame": frame, "error": "", "note": ""}
        try:
            out["image"], out["note"] = self._load(item)
        except Exception as error:  # every failure is reported, none stops the run
            out["error"] = describe_error(error)
            out["image"] = torch.zeros((1, *self.patch_size), dtype=torch.float32)
            where = f"{item['file']} frame {frame}" if frame else item["file"]
            logger.warning("Skipping %s: %s", where, out["error"])
        return out
