"""Write patches as NIfTI (``.nii.gz``) or DICOM (MR Image Storage) with correct geometry.

Patches arrive as quantised uint16 arrays on an axis-aligned RAS voxel grid (see
:mod:`rd_components.embedded.sources`): real value = stored * ``RESCALE_SLOPE``.

* NIfTI: float32 real values, the patch's own affine, deterministic gzip (mtime 0), so two
  builds give byte-identical files.
* DICOM: explicit VR little endian, uint16 + RescaleSlope/Intercept, PixelSpacing,
  ImageOrientationPatient/ImagePositionPatient in LPS (standard axial: rows run to the
  patient's left, columns to posterior), deterministic UIDs, ``PatientName``/``PatientID``
  ``ANON``. A 2D patch is one file; a 3D patch is a series folder with one file per slice.

pydicom writes every file from one dataset per writer (the tags every file shares), in which
only the UIDs, InstanceNumber, position and pixels change from file to file.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

__all__ = ["QUANT_LEVELS", "RESCALE_SLOPE", "write_nifti", "write_label_nifti", "deterministic_uid", "DicomPatchWriter"]

#: stored integer k stands for the real value k / QUANT_LEVELS; 1/4096 is exact in binary and
#: in a 14-character DICOM DS string, so DICOM and NIfTI copies agree bit for bit.
QUANT_LEVELS = 4096
RESCALE_SLOPE = 1.0 / QUANT_LEVELS


def _write_nifti_array(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.header.set_xyzt_units("mm")
    img.set_qform(affine, code="aligned")
    img.set_sform(affine, code="aligned")
    # gzip with mtime 0 so that rebuilding gives byte-identical files
    Path(path).write_bytes(gzip.compress(img.to_bytes(), compresslevel=1, mtime=0))


def write_label_nifti(path: str | os.PathLike, labels: np.ndarray, affine: np.ndarray) -> None:
    """Write a label map ``(X, Y[, Z])`` as uint8 ``.nii.gz`` on the grid of ``affine``."""
    _write_nifti_array(path, labels.astype(np.uint8), affine)


def write_nifti(path: str | os.PathLike, quantised: np.ndarray, affine: np.ndarray) -> None:
    """Write a patch as ``.nii.gz`` holding the real float32 values.

    Args:
        path: output file, ``.nii.gz``.
        quantised: ``(X, Y)`` or ``(X, Y, Z)`` uint16 stored values.
        affine: ``(4, 4)`` voxel -> RAS mm of this patch.
    """
    real = quantised.astype(np.float32) * np.float32(RESCALE_SLOPE)  # exact: slope is 2**-12
    _write_nifti_array(path, real, affine)


def deterministic_uid(*parts: object) -> str:
    """A DICOM UID under pydicom's root, derived from ``parts`` (same parts, same UID)."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=["|".join(str(p) for p in parts)]))


class DicomPatchWriter:
    """Writes 2D patches as one DICOM file and 3D patches as a DICOM series folder.

    Args:
        plane_shape: in-plane RAS size ``(X, Y)`` of the patches (DICOM Columns, Rows); shared by all patches.
        spacing: voxel size ``(sx, sy, sz)`` in mm.
        namespace: a string unique to the dataset; UIDs derive from it and the sample id.
        series_description: short text (<= 64 chars) shown by viewers.
    """

    def __init__(self, plane_shape: tuple[int, int], spacing: tuple[float, float, float], namespace: str,
                 series_description: str) -> None:
        self.nx, self.ny = (int(v) for v in plane_shape)
        self.spacing = tuple(float(s) for s in spacing)
        self.namespace = namespace
        self.frame_of_reference = deterministic_uid(namespace, "frame-of-reference")
        self._ds = self._shared_dataset(series_description[:64])

    def _shared_dataset(self, description: str):
        """The dataset of the tags every file of this writer holds; :meth:`_write` fills in the rest."""
        from pydicom.dataset import Dataset, FileMetaDataset
        from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage

        sx, sy, sz = self.spacing
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = MRImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["DERIVED", "SECONDARY"]
        ds.SOPClassUID = MRImageStorage
        ds.StudyDate = ds.StudyTime = ds.AccessionNumber = ds.Manufacturer = ds.ReferringPhysicianName = ""
        ds.Modality = "MR"
        ds.StudyDescription = "rd_components derived patches"
        ds.SeriesDescription = description
        # derived from public templates: no real patient identifiers anywhere
        ds.PatientName = ds.PatientID = "ANON"
        ds.PatientBirthDate = ds.PatientSex = ""
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "derived from a public template; no patient data"
        ds.BodyPartExamined = "HEAD"
        ds.ScanningSequence = "RM"
        ds.SequenceVariant = "NONE"
        ds.ScanOptions = ds.EchoTime = ds.EchoTrainLength = ds.StudyID = ds.PositionReferenceIndicator = ""
        ds.MRAcquisitionType = "3D"
        ds.SliceThickness = ds.SpacingBetweenSlices = f"{sz:g}"
        ds.SeriesNumber = 1
        # rows run to the patient's left (+x LPS), columns to posterior (+y LPS): standard axial
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.FrameOfReferenceUID = self.frame_of_reference
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = self.ny, self.nx
        ds.PixelSpacing = [f"{sy:g}", f"{sx:g}"]  # (between rows, between columns)
        ds.BitsAllocated = ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 0
        ds.WindowCenter, ds.WindowWidth = "0.5", "1"
        ds.RescaleIntercept = "0"
        ds.RescaleSlope = f"{RESCALE_SLOPE!r}"  # 0.000244140625, exact
        ds.RescaleType = "US"
        return ds

    def _write(self, path: Path, pixels: np.ndarray, study: str, series: str, sop: str,
               ipp: tuple[float, float, float], instance: int) -> None:
        """One file: ``pixels`` ``(Rows, Columns)`` uint16 at LPS position ``ipp``."""
        import pydicom

        ds = self._ds
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.InstanceNumber = instance
        # 4 decimals (0.1 micrometre), as the embedded builds have always been written
        ds.ImagePositionPatient = [f"{v:.4f}" for v in ipp]
        ds.SliceLocation = f"{ipp[2]:.4f}"
        ds.PixelData = np.ascontiguousarray(pixels, dtype="<u2").tobytes()
        pydicom.dcmwrite(path, ds, enforce_file_format=True)

    def _slice_pixels_and_position(self, plane: np.ndarray, affine: np.ndarray, k: int):
        # RAS voxel (i, j) -> DICOM pixel (row, col) = (ny-1-j, nx-1-i): columns run to -x (left
        # in LPS), rows to -y (posterior); the first pixel is the RAS voxel (nx-1, ny-1).
        if plane.shape != (self.nx, self.ny):
            raise ValueError(f"patch plane shape {plane.shape} != writer shape {(self.nx, self.ny)}")
        pixels = plane[::-1, ::-1].T
        x, y, z = (affine @ np.array([self.nx - 1, self.ny - 1, k, 1.0]))[:3]
        return pixels, (-x, -y, z)

    def write_2d(self, path: str | os.PathLike, quantised: np.ndarray, affine: np.ndarray, sample_id: str) -> None:
        """Write one ``(X, Y)`` uint16 patch as a single DICOM file.

        Args:
            path: output ``.dcm`` file.
            quantised: ``(X, Y)`` stored values.
            affine: ``(4, 4)`` RAS affine of the patch (its slice at voxel k = 0).
            sample_id: stable id; the UIDs derive from it.
        """
        pixels, ipp = self._slice_pixels_and_position(quantised, affine, 0)
        uid = lambda *p: deterministic_uid(self.namespace, sample_id, *p)  # noqa: E731
        self._write(Path(path), pixels, uid("study"), uid("series"), uid("sop", 0), ipp, 1)

    def write_3d(self, folder: str | os.PathLike, quantised: np.ndarray, affine: np.ndarray, sample_id: str) -> None:
        """Write one ``(X, Y, Z)`` uint16 patch as a series folder ``000.dcm .. {Z-1}.dcm``.

        Slices go inferior to superior; InstanceNumber 1..Z; one Study/SeriesInstanceUID.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        study = deterministic_uid(self.namespace, sample_id, "study")
        series = deterministic_uid(self.namespace, sample_id, "series")
        for k in range(quantised.shape[2]):
            pixels, ipp = self._slice_pixels_and_position(quantised[:, :, k], affine, k)
            sop = deterministic_uid(self.namespace, sample_id, "sop", k)
            self._write(folder / f"{k:03d}.dcm", pixels, study, series, sop, ipp, k + 1)
