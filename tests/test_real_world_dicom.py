"""Real DICOM files (pydicom's test files): every image predicts, every refusal is in plain words."""

from __future__ import annotations

import csv
import os
import re

import numpy as np
import pytest
import torch
from pydicom.data import get_testdata_file, get_testdata_files

from rd_components.data import SafeInferenceDataset, find_inputs
from rd_components.data.dicom import read_dicom_frame
from rd_components.errors import NoImageError
from rd_components.handlers.csv_writer import PredictionCSVWriter

#: files that must be refused, with the class of their reason; every other file predicts
REFUSED = {
    "README.txt": "not a DICOM", "crayons.icc": "not a DICOM", "no_meta.dcm": "not a DICOM",
    "rtplan.dump": "not a DICOM", "rtstruct.dump": "not a DICOM", "test1.json": "not a DICOM",
    "test_PN.json": "not a DICOM", "zipMR.gz": "not a DICOM",
    "reportsi.dcm": "no image", "reportsi_with_empty_number_tags.dcm": "no image", "test-SR.dcm": "no image",
    "rtplan.dcm": "no image", "rtplan_truncated.dcm": "no image", "rtstruct.dcm": "no image",
    "waveform_ecg.dcm": "no image", "ExplVR_BigEndNoMeta.dcm": "no image", "ExplVR_LitEndNoMeta.dcm": "no image",
    "UN_sequence.dcm": "no image", "empty_charset_LEI.dcm": "no image", "no_meta_group_length.dcm": "no image",
    "priv_SQ.dcm": "no image", "emri_small_jpeg_2k_lossless_too_short.dcm": "no image",
    # damaged on purpose in pydicom's test set
    "JPEG-lossy.dcm": "could not be decoded", "JPEG2000-embedded-sequence-delimiter.dcm": "could not be decoded",
    "MR_truncated.dcm": "truncated", "meta_missing_tsyntax.dcm": "incomplete image description",
    "nested_priv_SQ.dcm": "incomplete image description", "badVR.dcm": "damaged header",
}
#: words of MONAI's or numpy's internals that must never reach a user
INTERNAL = re.compile(r"axcodes|start_ornt|data_array|broadcast|pixel_array|ConfigExpression|Traceback", re.I)

#: a fast, representative selection: the bugs of the issue, each transfer syntax family, multi-frame, colour
FAST = [
    "MR2_UNCI.dcm", "MR2_J2KI.dcm", "liver_1frame.dcm", "liver_expb_1frame.dcm", "JPEG-LL.dcm",
    "JPGLosslessP14SV1_1s_1f_8b.dcm", "MR_small_jpeg_ls_lossless.dcm", "JPEGLSNearLossless_16.dcm",
    "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "MR_small_bigendian.dcm", "image_dfl.dcm", "CT_small.dcm",
    "OT-PAL-8-face.dcm", "SC_rgb_small_odd.dcm", "SC_rgb_2frame.dcm", "emri_small_RLE.dcm", "rtdose.dcm",
    "RG3_UNCI.dcm", "test-SR.dcm", "rtplan.dcm", "README.txt", "MR_truncated.dcm", "badVR.dcm",
]


def _link_folder(folder, paths):
    folder.mkdir()
    for path in paths:
        os.symlink(path, folder / os.path.basename(path))
    return folder


def _check(names_to_errors: dict[str, list[str]]) -> None:
    for name, errors in names_to_errors.items():
        for error in errors:
            assert not INTERNAL.search(error), f"{name}: {error}"
        if name in REFUSED:
            assert errors and all(REFUSED[name] in e for e in errors), f"{name}: {errors}"
        else:
            assert not any(errors), f"{name} got no prediction: {errors}"


def _run(folder, size=(32, 32)) -> dict[str, list[str]]:
    items = find_inputs(folder, 2)
    dataset = SafeInferenceDataset(items, 2, size)
    out: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        row = dataset[i]
        assert row["image"].shape == (1, *size) and torch.isfinite(row["image"]).all()
        out.setdefault(item["file"], []).append(row["error"])
    return out


def test_selected_real_files_predict_or_refuse_in_plain_words(tmp_path):
    results = _run(_link_folder(tmp_path / "in", [get_testdata_file(n) for n in FAST]))
    assert set(results) == set(FAST)
    assert len(results["SC_rgb_2frame.dcm"]) == 2 and len(results["emri_small_RLE.dcm"]) == 10
    _check(results)


@pytest.mark.slow
def test_conformance_every_pydicom_test_file(tmp_path):
    paths = sorted(p for p in get_testdata_files("*") if os.path.isfile(p))
    results = _run(_link_folder(tmp_path / "in", paths))
    _check(results)
    predicted = [n for n, e in results.items() if not any(e)]
    assert len(predicted) >= 120, len(predicted)


def test_oblique_and_sagittal_planes_orient_without_error():
    # MR2 is an oblique sagittal plane: a 2D RAS orientation cannot place it, a 3D one can
    frame = read_dicom_frame(get_testdata_file("MR2_UNCI.dcm"))
    assert frame.array.shape == (1024, 1024) and not frame.notes
    normal = frame.affine[:3, 2]
    assert abs(np.linalg.norm(normal) - 1) < 1e-6 and abs(normal[2]) < 1e-6  # in-plane axis is S-I


def test_degenerate_orientation_is_read_as_axial_and_noted(tmp_path):
    import pydicom

    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    reference = read_dicom_frame(get_testdata_file("CT_small.dcm"))
    for iop in ([0, 0, 0, 0, 0, 0], [1, 0, 0, 1, 0, 0], None):
        if iop is None:
            del ds.ImageOrientationPatient
        else:
            ds.ImageOrientationPatient = iop
        path = tmp_path / "ct.dcm"
        ds.save_as(path)
        frame = read_dicom_frame(path)
        assert "orientation tags absent or degenerate" in frame.notes[0]
        np.testing.assert_array_equal(frame.array, reference.array)
        # CT_small is a standard axial image: the assumption gives its own axes
        np.testing.assert_allclose(frame.affine[:3, :3], reference.affine[:3, :3], atol=1e-6)


def test_colour_becomes_luminance_and_multiframe_needs_a_frame():
    frame = read_dicom_frame(get_testdata_file("SC_rgb.dcm"))
    assert frame.array.ndim == 2 and "converted to luminance" in frame.notes[0]
    with pytest.raises(NoImageError, match="multi-frame"):
        read_dicom_frame(get_testdata_file("SC_rgb_2frame.dcm"))
    with pytest.raises(NoImageError, match="no image in this file \\(Structured Report"):
        read_dicom_frame(get_testdata_file("test-SR.dcm"))


def test_csv_has_one_row_per_frame_with_notes(tmp_path):
    from ignite.engine import Engine

    folder = _link_folder(tmp_path / "in", [get_testdata_file(n) for n in ("SC_rgb_2frame.dcm", "CT_small.dcm", "rtplan.dcm")])
    items = find_inputs(folder, 2)
    dataset = SafeInferenceDataset(items, 2, (16, 16))
    writer = PredictionCSVWriter(tmp_path / "out", ["a", "b"])
    engine = Engine(lambda e, b: None)
    for i in range(len(dataset)):
        row = dataset[i]
        engine.state.batch = [row]
        engine.state.output = [{"pred": torch.tensor([0.25, 0.75])}]
        writer.collect(engine)
    writer.write()
    with open(writer.path) as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["file"], r["frame"]) for r in rows] == [("CT_small.dcm", ""), ("SC_rgb_2frame.dcm", "1"),
                                                        ("SC_rgb_2frame.dcm", "2"), ("rtplan.dcm", "")]
    assert rows[1]["predicted_label"] == "b" and "luminance" in rows[1]["note"]
    assert rows[3]["predicted_label"] == "" and rows[3]["error"] == "no image in this file (RT Plan)"


def test_pixel_data_plugins_are_installed():
    from pydicom.pixels.decoders import JPEG2000LosslessDecoder, JPEGLosslessSV1Decoder, JPEGLSLosslessDecoder, RLELosslessDecoder

    for decoder in (JPEGLosslessSV1Decoder, JPEGLSLosslessDecoder, JPEG2000LosslessDecoder, RLELosslessDecoder):
        assert decoder.is_available, decoder.UID.name
