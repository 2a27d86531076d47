"""Read any DICOM file frame by frame as a 2D image MONAI can orient; group and order the files of a series.

MONAI's ``PydicomReader`` covers the files a scanner writes for a series, but a folder of real
files holds more: multi-frame objects (enhanced CT/MR, ultrasound clips, dose grids), colour
and palette images, oblique or sagittal planes, degenerate orientation tags, files without a
file meta header, objects without pixel data (reports, plans, waveforms). Each *frame* of such
a file becomes a ``(X, Y)`` float32 array plus a RAS affine in MONAI's conventions: pydicom
decodes (every installed plugin), applies the modality LUT and palette lookup; highdicom builds
the affine and orders a series' slices.

Conventions (those of ``PydicomReader(swap_ij=True, affine_lps_to_ras=True)`` on a plain file,
so training and inference see identical tensors): array axis 0 runs along a row (DICOM column
index), axis 1 down the columns; the affine maps (axis 0, axis 1, slice) to RAS mm, its third
column the unit plane normal, so an image in any plane can be oriented; missing or degenerate
orientation (absent, zero, non-finite or parallel cosines) is read as a standard axial image,
as the file is displayed, and noted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import NoImageError

__all__ = ["DicomFrame", "DicomSeries", "read_dicom_header", "frame_count", "read_dicom_frame", "is_nifti_path",
           "dicom_series", "one_series"]

#: values larger than this are read from disk only when used: a header read never loads the pixels
_DEFER = "4 KB"
#: ITU-R BT.601 luma weights (as in JPEG's YCbCr): the luminance of an RGB pixel
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclass
class DicomFrame:
    """One frame of a DICOM file.

    Attributes:
        array: ``(X, Y)`` float32, modality LUT applied, greyscale (MONOCHROME2 sense).
        affine: ``(4, 4)`` float64, (axis 0, axis 1, slice) -> RAS mm.
        notes: what was done to make the frame usable (colour to luminance, orientation assumed...).
    """

    array: np.ndarray
    affine: np.ndarray
    notes: list[str] = field(default_factory=list)


def is_nifti_path(path: str | os.PathLike) -> bool:
    """True for ``.nii`` / ``.nii.gz`` names."""
    return str(path).lower().endswith((".nii", ".nii.gz"))


def read_dicom_header(path: str | os.PathLike, pixels: bool = False):
    """The pydicom dataset of ``path``; unless ``pixels``, large values (pixel data) stay on disk until used.

    Files without the 128-byte preamble or file meta header are read too (pydicom ``force``),
    but only accepted when they look like DICOM (a SOP class, image rows or pixel data).

    Raises:
        NoImageError: a folder, an unreadable file or a file that is not DICOM.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    path = Path(path)
    if path.is_dir():
        raise NoImageError("a folder, not an image file")
    try:
        return pydicom.dcmread(path, defer_size=None if pixels else _DEFER)
    except InvalidDicomError:
        pass
    except Exception as error:  # a damaged header: say so rather than guess
        raise NoImageError(f"damaged DICOM header ({_short(error)})") from None
    try:
        ds = pydicom.dcmread(path, defer_size=None if pixels else _DEFER, force=True)
        if any(tag in ds for tag in ("SOPClassUID", "Rows", "PixelData")):
            return ds
    except Exception:
        pass
    raise NoImageError("not a DICOM or NIfTI file")


def frame_count(ds, strict: bool = False) -> int:
    """Frames in a dataset (1 when ``NumberOfFrames`` is absent; also when it is unreadable unless ``strict``).

    Raises:
        NoImageError: with ``strict``, for a ``NumberOfFrames`` that is not a number.
    """
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        if strict:
            raise NoImageError(f"damaged header: Number of Frames is {str(ds['NumberOfFrames'].value)!r}, not a number") from None
        return 1


def _short(error: BaseException, limit: int = 160) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _decode_reason(error: BaseException) -> str:
    """pydicom's decoding failure in plain words."""
    text = " ".join(str(error).split())
    missing = re.search(r"Missing required element: \([0-9A-Fa-f,]+\) '([^']+)'", text)
    if missing:
        return f"incomplete image description ({missing.group(1)} missing)"
    if "cannot reshape" in text or "less than expected" in text:
        return "less pixel data than the image size needs (truncated or damaged file)"
    return _short(text.replace("Unable to decode as exceptions were raised by all available plugins: ", ""))


def _no_image_reason(ds) -> str:
    """``no image in this file (RT Plan)``: pydicom's name of the SOP class, or the modality."""
    uid = ds.get("SOPClassUID")
    name = getattr(uid, "name", "") if uid is not None else ""
    kind = name.removesuffix(" Storage").removesuffix(" Image") if name and name != str(uid) else str(ds.get("Modality") or "no pixel data")
    if "SR" in kind.split() or str(ds.get("Modality")) == "SR":
        kind = f"Structured Report: {kind}" if kind != "SR" else "Structured Report"
    return f"no image in this file ({kind})"


def _has_pixels(ds) -> bool:
    return any(tag in ds for tag in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"))


def _frame_item(ds, index: int, sequence: str):
    """The item of functional-group ``sequence`` for frame ``index`` (per-frame first, then shared)."""
    for groups, position in (("PerFrameFunctionalGroupsSequence", index), ("SharedFunctionalGroupsSequence", 0)):
        seq = ds.get(groups)
        if seq and position < len(seq) and seq[position].get(sequence):
            return seq[position].get(sequence)[0]
    return None


def _frame_value(ds, index: int, keyword: str, sequence: str):
    """``keyword`` at the top level, else from an enhanced multi-frame functional group."""
    value = ds.get(keyword)
    if value is not None and value != "":
        return value
    item = _frame_item(ds, index, sequence)
    return None if item is None else item.get(keyword)


def _floats(values, count: int) -> np.ndarray | None:
    try:
        out = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return out if out.shape == (count,) and np.isfinite(out).all() else None


def _geometry(ds, index: int) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """(ImageOrientationPatient with unit cosines, ImagePositionPatient, PixelSpacing) of frame ``index``.

    Each ``None`` when absent or unusable (zero, non-finite or parallel cosines, spacing <= 0):
    highdicom takes the tags as written, so these checks and the functional-group lookup are ours.
    """
    iop = _floats(_frame_value(ds, index, "ImageOrientationPatient", "PlaneOrientationSequence") or (), 6)
    ipp = _floats(_frame_value(ds, index, "ImagePositionPatient", "PlanePositionSequence") or (), 3)
    spacing = _floats(_frame_value(ds, index, "PixelSpacing", "PixelMeasuresSequence") or (), 2)
    if iop is not None:
        norms = np.linalg.norm(iop[:3]), np.linalg.norm(iop[3:])
        degenerate = min(norms) < 1e-3 or np.linalg.norm(np.cross(iop[:3], iop[3:])) < 1e-3 * norms[0] * norms[1]
        iop = None if degenerate else np.concatenate([iop[:3] / norms[0], iop[3:] / norms[1]])
    return iop, ipp, None if spacing is None or (spacing <= 0).any() else spacing


def _affine(ds, index: int, notes: list[str]) -> np.ndarray:
    """(axis 0 = along a row, axis 1 = down a column, unit normal) -> RAS mm, as PydicomReader builds it.

    highdicom's LPS affine in its ``"RD"`` index convention (column index, row index, slice).
    """
    from highdicom.spatial import create_affine_matrix_from_attributes

    iop, ipp, spacing = _geometry(ds, index)
    if iop is None:
        notes.append("orientation tags absent or degenerate: read as a standard axial image")
        iop = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    lps = create_affine_matrix_from_attributes(np.zeros(3) if ipp is None else ipp, iop,
                                               np.ones(2) if spacing is None else spacing, index_convention="RD")
    # highdicom's slice axis is the plain cross product (shorter than 1 for non-orthogonal cosines); MONAI's is unit
    lps[:3, 2] /= np.linalg.norm(lps[:3, 2])
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps  # LPS -> RAS


def _rescale(arr: np.ndarray, ds, index: int) -> np.ndarray:
    """The modality LUT (pydicom), with the rescale of an enhanced multi-frame functional group."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_modality_lut

    if "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds:
        item = _frame_item(ds, index, "PixelValueTransformationSequence")
        if item is not None and "RescaleSlope" in item:
            view = Dataset()
            view.RescaleSlope, view.RescaleIntercept = item.RescaleSlope, item.get("RescaleIntercept", 0)
            return apply_modality_lut(arr, view)
    return apply_modality_lut(arr, ds)


def _decode(path: Path, index: int | None) -> np.ndarray:
    """The decoded frame (pydicom decodes only the frame asked for)."""
    from pydicom.pixels import pixel_array

    try:
        return pixel_array(path, index=index)
    except Exception as first:
        # files without a file meta header need the dataset route
        try:
            from pydicom.dataset import FileMetaDataset
            from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

            ds = read_dicom_header(path, pixels=True)
            if not getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None):
                # the transfer syntax the file was read with
                implicit, little = getattr(ds, "original_encoding", (True, True))
                ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
                ds.file_meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit else
                                                  ExplicitVRLittleEndian if little else ExplicitVRBigEndian)
            return pixel_array(ds, index=index)
        except Exception as second:
            # the path route's complaint about the missing file meta hides the real problem
            raise (second if "File Format" in str(first) else first) from None


def read_dicom_frame(path: str | os.PathLike, frame: int | None = None) -> DicomFrame:
    """Frame ``frame`` (0-based; ``None`` for a single-frame file) of a DICOM file.

    Greyscale frames get the modality LUT (rescale slope/intercept or LUT); MONOCHROME1 frames
    are inverted over their stored range so that bright means high, as MONOCHROME2; colour
    frames (RGB, YBR converted by pydicom, palette colour through its lookup table) become
    their luminance, noted.

    Raises:
        NoImageError: not DICOM, no pixel data, a multi-frame file without ``frame``, a frame
            number out of range, pixel data that cannot be decoded; all in plain words.
    """
    path = Path(path)
    # the header has every element; the decoder's dataset only those of the pixel module
    ds = read_dicom_header(path)
    if not _has_pixels(ds):
        raise NoImageError(_no_image_reason(ds))
    frames = frame_count(ds, strict=True)
    if frames > 1 and frame is None:
        raise NoImageError(f"a multi-frame file ({frames} frames): give one item per frame")
    if frame is not None and not 0 <= int(frame) < frames:
        raise NoImageError(f"frame {int(frame) + 1} asked, the file has {frames}")
    index = None if frames == 1 else int(frame)
    try:
        arr = _decode(path, index)
    except NoImageError:
        raise
    except Exception as error:
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        where = f" ({syntax.name})" if syntax is not None else ""
        raise NoImageError(f"pixel data could not be decoded{where}: {_decode_reason(error)}") from None
    notes: list[str] = []
    photometric = str(ds.get("PhotometricInterpretation", "")).upper()
    if arr.ndim == 3 and frames == 1 and arr.shape[0] > 1 and int(ds.get("SamplesPerPixel", 1) or 1) == 1:
        raise NoImageError(f"a multi-frame file ({arr.shape[0]} frames) without a frame count")
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = apply_color_lut(arr, ds)
        notes.append("palette colour image converted to luminance")
    elif arr.ndim == 3:
        notes.append(f"colour image ({photometric or 'RGB'}) converted to luminance")
    if arr.ndim == 3:
        arr = arr[..., :3].astype(np.float64) @ _LUMA
    else:
        if photometric == "MONOCHROME1":
            bits = int(ds.get("BitsStored", 16) or 16)
            signed = int(ds.get("PixelRepresentation", 0) or 0) == 1
            low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
            arr = (low + high) - arr.astype(np.int64)
            notes.append("MONOCHROME1 inverted (bright means high)")
        arr = _rescale(arr, ds, index or 0)
    if arr.ndim != 2:
        raise NoImageError(f"unexpected pixel array of shape {tuple(arr.shape)}")
    # (rows, columns) -> (X along a row, Y down a column), as PydicomReader(swap_ij=True)
    array = np.ascontiguousarray(np.asarray(arr, dtype=np.float32).T)
    return DicomFrame(array, _affine(ds, index or 0, notes), notes)


@dataclass
class DicomSeries:
    """The image files of one DICOM series, in slice order.

    Attributes:
        uid: SeriesInstanceUID (``""`` when the files have none).
        number: SeriesNumber as written (``""`` when absent).
        description: SeriesDescription (``""`` when absent).
        files: the files, ordered along the slice normal (see :func:`dicom_series`).
    """

    uid: str
    number: str
    description: str
    files: list[Path]

    def describe(self) -> str:
        """``1.2.3 (series 3, 'CT head', 40 files)``: what a user needs to find the series again."""
        details = [f"series {self.number}" if self.number else "", repr(self.description) if self.description else "",
                   f"{len(self.files)} file{'s' if len(self.files) != 1 else ''}"]
        return f"{self.uid or 'no SeriesInstanceUID'} ({', '.join(d for d in details if d)})"


def _number(value) -> float:
    """An InstanceNumber or SeriesNumber; infinite when absent or not a number (those go last)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


def _slice_order(members: list[tuple[Path, object]]) -> list[Path]:
    """The files of one series along the slice normal; by InstanceNumber (then name) when a slice lacks geometry.

    highdicom's order (``get_plane_sort_index``: ImagePositionPatient projected on the normal), so
    any plane stacks in space order whatever the InstanceNumbers say. The checks are ours: its
    ``get_series_volume_positions`` answers ``None`` without a reason, and also refuses irregularly
    spaced or tilted-gantry series, which MONAI's reader stacks.

    Raises:
        NoImageError: slices in different orientations, or several slices at one position (these
            are not one volume: stacking them would be a wrong image).
    """
    from highdicom.spatial import get_plane_sort_index

    planes = [_geometry(ds, 0)[:2] for _, ds in members]
    if len(members) < 2 or any(iop is None or ipp is None for iop, ipp in planes):
        return [path for path, ds in sorted(members, key=lambda m: (_number(m[1].get("InstanceNumber")), m[0].name))]
    normals = np.array([np.cross(iop[:3], iop[3:]) for iop, _ in planes])
    normals /= np.linalg.norm(normals, axis=1, keepdims=True)
    if (np.abs(normals @ normals[0]) < 1 - 1e-4).any():
        raise NoImageError("the slices of this series lie in different orientations: not one volume")
    order = get_plane_sort_index([ipp for _, ipp in planes], planes[0][0], index_convention="RD")
    if (np.diff(np.array([planes[i][1] for i in order]) @ normals[0]) < 1e-4).any():
        raise NoImageError("several slices of this series share a position along the slice normal "
                           "(several volumes, echoes or phases in one series): not one volume")
    return [members[i][0] for i in order]


def dicom_series(files: Iterable[str | os.PathLike]) -> list[DicomSeries]:
    """Group DICOM image files by SeriesInstanceUID; each series' files in slice order (see :func:`_slice_order`).

    Only headers are read. Files that are not DICOM, or hold no pixel data (reports, plans,
    DICOMDIR), belong to no series.

    Returns:
        the series, ordered by SeriesNumber then UID.

    Raises:
        NoImageError: a series whose slices cannot form one volume.
    """
    groups: dict[str, list[tuple[Path, object]]] = {}
    for path in sorted(Path(f) for f in files):
        try:
            ds = read_dicom_header(path)
        except NoImageError:
            continue
        if _has_pixels(ds):
            groups.setdefault(str(ds.get("SeriesInstanceUID", "") or ""), []).append((path, ds))
    series = [DicomSeries(uid, str(members[0][1].get("SeriesNumber", "") or ""),
                          str(members[0][1].get("SeriesDescription", "") or ""), _slice_order(members))
              for uid, members in groups.items()]
    return sorted(series, key=lambda s: (_number(s.number), s.uid))


def folder_files(folder: str | os.PathLike) -> list[Path]:
    """The files directly in ``folder`` that may belong to a DICOM series (not hidden, not NIfTI)."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and not p.name.startswith(".") and not is_nifti_path(p))


def one_series(source: str | os.PathLike | Iterable[str | os.PathLike]) -> list[Path]:
    """The files of the one DICOM series in ``source`` (a series folder, or the files of one series), in slice order.

    Raises:
        NoImageError: no DICOM image in ``source``, or images of several series (named with
            their UID, number, description and file count: a volume holds one series).
    """
    is_folder = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
    series = dicom_series(folder_files(source) if is_folder else source)
    where = "folder" if is_folder else "list of files"
    if not series:
        raise NoImageError(f"no DICOM image in this {where}")
    if len(series) > 1:
        raise NoImageError(f"this {where} mixes {len(series)} DICOM series, a volume is one series (give each its own "
                           f"folder): " + "; ".join(s.describe() for s in series))
    return series[0].files
