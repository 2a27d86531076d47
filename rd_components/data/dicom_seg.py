"""DICOM SEG output: a label map written as a DICOM Segmentation object that references its source series."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write

__all__ = ["labels_on_dicom_frames", "write_dicom_seg"]

# DICOM patient coordinates are LPS; MONAI's and NIfTI's affines are RAS
_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])


def _source_images(series: str | os.PathLike | Sequence[str | os.PathLike]) -> list:
    """Every image of a DICOM series (a folder, or the list of one series' files when a folder held
    several), files that are not DICOM images skipped, in file-name order."""
    import pydicom

    paths = sorted(Path(p) for p in series) if isinstance(series, (list, tuple)) else sorted(Path(series).iterdir())
    images = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            ds = pydicom.dcmread(path)
        except Exception:  # not DICOM: the reader of the series skipped it too
            continue
        if "PixelData" in ds and "ImagePositionPatient" in ds:
            images.append(ds)
    if not images:
        raise ValueError(f"{series}: no DICOM image with a position found")
    return images


def labels_on_dicom_frames(labels: np.ndarray, affine: np.ndarray, images: Sequence) -> np.ndarray:
    """Sample a label map at the pixels of each DICOM image (nearest voxel) -> ``(frames, rows, cols)`` uint8.

    Each pixel's patient position comes from the image's own geometry (ImagePositionPatient,
    ImageOrientationPatient, PixelSpacing), so the frames line up with the source images
    whatever voxel order the series was read in; pixels outside the map are background.

    Args:
        labels: ``(X, Y, Z)`` class indices.
        affine: ``(4, 4)`` RAS voxel-to-world affine of ``labels``.
        images: pydicom datasets of the series, in the order the frames should have.
    """
    inverse = np.linalg.inv(np.asarray(affine, dtype=np.float64))
    frames = []
    for ds in images:
        rows, cols = int(ds.Rows), int(ds.Columns)
        origin = np.asarray(ds.ImagePositionPatient, dtype=np.float64)
        orientation = np.asarray(ds.ImageOrientationPatient, dtype=np.float64)
        row_dir, col_dir = orientation[:3], orientation[3:]  # along a row (columns increase), along a column
        spacing_between_rows, spacing_between_cols = (float(v) for v in ds.PixelSpacing)
        r, c = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        lps = origin + c[..., None] * spacing_between_cols * row_dir + r[..., None] * spacing_between_rows * col_dir
        ras = lps @ _LPS_TO_RAS.T
        voxel = ras @ inverse[:3, :3].T + inverse[:3, 3]
        index = np.rint(voxel).astype(np.int64)
        inside = np.all((index >= 0) & (index < np.asarray(labels.shape)), axis=-1)
        frame = np.zeros((rows, cols), dtype=np.uint8)
        i = index[inside]
        frame[inside] = labels[i[:, 0], i[:, 1], i[:, 2]]
        frames.append(frame)
    return np.stack(frames)


def write_dicom_seg(labels: np.ndarray, affine: np.ndarray, series_dir: str | os.PathLike | Sequence[str | os.PathLike],
                    path: str | os.PathLike,
                    class_names: Sequence[str], algorithm: str = "rd_components student", version: str = "1") -> Path:
    """Write ``labels`` as a DICOM SEG (highdicom, BINARY, one segment per foreground class) referencing ``series_dir``.

    Args:
        labels: ``(X, Y, Z)`` class indices on the grid of ``affine`` (0 = background).
        affine: RAS voxel-to-world affine of ``labels`` (the one the NIfTI output carries).
        series_dir: the source DICOM series folder the label map was predicted from, or the list of
            that series' files (a folder holding several series gives one volume per series).
        path: the ``.dcm`` file to write (atomically: an earlier file stays until the new one is complete).
        class_names: names of the classes, background first; segment ``k`` is class ``k``.
        algorithm: algorithm name recorded in the segment descriptions.
        version: algorithm version.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    images = _source_images(series_dir)
    frames = labels_on_dicom_frames(np.asarray(labels), affine, images)
    identification = hd.AlgorithmIdentificationSequence(name=algorithm[:64], version=str(version)[:64],
                                                        family=codes.cid7162.ArtificialIntelligence)
    segments = [
        hd.seg.SegmentDescription(
            segment_number=k, segment_label=str(name)[:64],
            # the embedded tasks' classes have no single SNOMED code here: generic tissue, named by the label
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.Tissue,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=identification)
        for k, name in enumerate(class_names) if k > 0
    ]
    seg = hd.seg.Segmentation(
        source_images=images, pixel_array=frames, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segments, series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="rd_components", manufacturer_model_name=algorithm[:64],
        software_versions=str(version)[:64], device_serial_number="0", series_description="DRD student segmentation")
    return atomic_write(path, lambda tmp: seg.save_as(tmp))
