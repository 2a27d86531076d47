"""No silent wrong result from the inputs: DICOM series apart, non-finite voxels refused, missing
paths in one line, the output folder never read back as input.

DICOM series are built from pydicom's own ``CT_small.dcm`` (copied with new UIDs, positions and
pixel values); the inference bundles are parsed from their generated configs, or run as users run
them (``python -m monai.bundle run``) where the test is about what the user sees.
"""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch
from bundle_helpers import bundle_command, bundle_configs, bundle_env, parse_bundle
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid
from torch import nn

from rd_components.data import SafeInferenceDataset, classification_transforms, find_inputs, preflight_items
from rd_components.data.segmentation.inference import SafeVolumeDataset, segmentation_inference_transforms
from rd_components.data.transforms import LoadMedicalImaged
from rd_components.errors import BadInputError

SIZE = 8  # pixels per side of the test slices


def _series(folder: Path, positions: list[float], instance_numbers: list[int] | None = None, base: int = 0,
            number: int = 1, description: str = "", geometry: bool = True, prefix: str = "") -> str:
    """Write one DICOM series into ``folder`` (one file per slice, from CT_small.dcm); return its UID.

    Slice ``k`` sits at ``positions[k]`` mm along z and holds the constant stored value ``base + k``, so
    a loaded volume tells its slice order by its values; ``instance_numbers`` default to 1..n.
    """
    folder.mkdir(parents=True, exist_ok=True)
    uid = generate_uid()
    numbers = instance_numbers or list(range(1, len(positions) + 1))
    for k, (z, instance) in enumerate(zip(positions, numbers)):
        ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
        ds.SeriesInstanceUID, ds.SOPInstanceUID = uid, generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.SeriesNumber, ds.InstanceNumber = number, instance
        if description:
            ds.SeriesDescription = description
        ds.Rows = ds.Columns = SIZE
        ds.PixelData = np.full((SIZE, SIZE), base + k, dtype=np.int16).tobytes()
        ds.ImagePositionPatient = [0.0, 0.0, float(z)]
        if not geometry:
            del ds.ImagePositionPatient, ds.ImageOrientationPatient
        ds.save_as(folder / f"{prefix}{k:03d}.dcm")
    return uid


def _slice_values(image: torch.Tensor) -> list[float]:
    """The constant value of each slice along the last axis (stored values, CT_small's rescale undone)."""
    array = np.asarray(image, dtype=np.float64).reshape(SIZE, SIZE, -1)
    return [round(float(array[..., z].mean()) + 1024) for z in range(array.shape[-1])]


def _load(source) -> torch.Tensor:
    return LoadMedicalImaged("image", "dicom")({"image": source})["image"]


# item 5: DICOM series


def test_folder_with_two_series_gives_one_volume_per_series_in_inference(tmp_path):
    root = tmp_path / "inputs"
    first = _series(root / "patient", [0.0, 2.0, 4.0], base=100, number=3, description="CT head", prefix="a")
    second = _series(root / "patient", [0.0, 2.0, 4.0, 6.0], base=200, number=7, description="CT chest", prefix="b")
    items = find_inputs(root, 3, split_series=True)
    # one item per series, named so that a user can tell them apart
    assert [item["file"] for item in items] == ["patient/series_3", "patient/series_7"]
    volumes = [_load(item["image"]) for item in items]
    assert [tuple(v.shape) for v in volumes] == [(SIZE, SIZE, 3), (SIZE, SIZE, 4)]
    assert _slice_values(volumes[0]) == [100, 101, 102] and _slice_values(volumes[1]) == [200, 201, 202, 203]
    # through the inference dataset (3D classification), each series predicts on its own
    dataset = SafeInferenceDataset(items, 3, (SIZE, SIZE, 4))
    assert [dataset[i]["error"] for i in range(2)] == ["", ""]
    assert first != second
    # a 2D model takes each file as an item anyway: 7 files, 7 items
    assert len(find_inputs(root, 2)) == 7


def test_series_slices_follow_their_position_not_their_instance_number(tmp_path):
    # InstanceNumbers run against the positions for half the slices: position decides the order
    _series(tmp_path / "s", [0.0, 3.0, 6.0, 9.0], instance_numbers=[2, 1, 4, 3], base=10)
    volume = _load(tmp_path / "s")
    assert _slice_values(volume) == [10, 11, 12, 13]
    affine = np.asarray(volume.affine)
    assert np.allclose(affine[:3, 2], [0.0, 0.0, 3.0])  # +3 mm per slice along S, no reversal


def test_series_slices_follow_the_slice_normal_of_a_sagittal_series(tmp_path):
    # a sagittal series: the slices step along x, z is constant; ordering by z (MONAI) would keep file order
    folder = tmp_path / "sag"
    _series(folder, [0.0] * 3, base=40)
    for k, x in zip(range(3), [8.0, 0.0, 4.0]):
        ds = pydicom.dcmread(folder / f"{k:03d}.dcm")
        ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
        ds.ImagePositionPatient = [x, 0.0, 0.0]
        ds.save_as(folder / f"{k:03d}.dcm")
    volume = _load(folder)
    # stacked along the normal (row x column = -x in LPS): x = 8, 4, 0, evenly 4 mm apart
    assert _slice_values(volume) == [40, 42, 41]
    assert np.allclose(np.asarray(volume.affine)[:3, 2], [4.0, 0.0, 0.0])  # RAS: +4 mm towards the right


def test_series_without_geometry_falls_back_to_instance_number(tmp_path):
    _series(tmp_path / "s", [0.0, 0.0, 0.0], instance_numbers=[3, 1, 2], base=10, geometry=False)
    assert _slice_values(_load(tmp_path / "s")) == [11, 12, 10]


def test_training_refuses_a_series_folder_mixing_two_series_in_one_line(tmp_path):
    folder = tmp_path / "class_a" / "patient"
    first = _series(folder, [0.0, 2.0], base=100, number=3, description="CT head", prefix="a")
    second = _series(folder, [0.0, 2.0], base=200, number=7, description="CT chest", prefix="b")
    # training (class folders, datalists) keeps the folder as one item; loading it refuses the mix
    items = [{"image": item["image"], "label": 0} for item in find_inputs(tmp_path / "class_a", 3)]
    assert len(items) == 1
    with pytest.raises(BadInputError) as info:
        preflight_items(items, classification_transforms(3, (4, 4, 4), "dicom"), 3, 2, progress=False)
    line = [line for line in str(info.value).splitlines() if str(folder) in line]
    assert len(line) == 1 and first in line[0] and second in line[0]
    assert "CT head" in line[0] and "CT chest" in line[0] and "2 DICOM series" in line[0]


# item 7a: non-finite voxels


def _nifti(path: Path, bad: float | None) -> Path:
    data = np.full((SIZE, SIZE, SIZE), 0.5, dtype=np.float32)
    if bad is not None:
        data[1, 2, 3] = bad
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))
    return path


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_non_finite_voxels_are_a_bad_input_not_a_clipped_prediction(tmp_path, bad):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _nifti(inputs / "bad.nii.gz", bad)
    _nifti(inputs / "good.nii.gz", None)
    items = find_inputs(inputs, 3)
    # classification inference: the file gets a reason instead of a prediction
    rows = [SafeInferenceDataset(items, 3, (SIZE,) * 3)[i] for i in range(2)]
    assert [r["file"] for r in rows] == ["bad.nii.gz", "good.nii.gz"]
    assert "NaN or infinite" in rows[0]["error"] and rows[1]["error"] == ""
    # segmentation inference (its own scaling divides by a percentile and clips)
    volumes = SafeVolumeDataset(items, segmentation_inference_transforms())
    assert "NaN or infinite" in volumes[0]["error"] and volumes[1]["error"] == ""
    # training: listed with the other bad files
    train = [{"image": str(inputs / name), "label": 0} for name in ("bad.nii.gz", "good.nii.gz")]
    with pytest.raises(BadInputError, match=r"bad\.nii\.gz: .*NaN or infinite"):
        preflight_items(train, classification_transforms(3, (SIZE,) * 3, "nifti"), 3, 2, progress=False)


# item 7b: missing paths end in one line


def _model_dir(folder: Path) -> Path:
    """A tiny exported 2D classifier: ``model.ts`` and ``model_info.json`` as training writes them."""
    folder.mkdir(parents=True)
    network = nn.Sequential(nn.Flatten(), nn.Linear(SIZE * SIZE, 2))
    torch.jit.save(torch.jit.script(network.eval()), str(folder / "model.ts"))
    (folder / "model_info.json").write_text(json.dumps({"spatial_dims": 2, "patch_size": [SIZE, SIZE],
                                                        "class_names": ["a", "b"]}))
    return folder


def _run_inference(tmp_path: Path, **overrides) -> subprocess.CompletedProcess:
    cmd = bundle_command("", bundle_configs("rd_classification_2d", "inference.yaml"), output_dir=str(tmp_path / "out"),
                         **overrides)
    return subprocess.run(cmd, cwd=tmp_path, env=bundle_env(), capture_output=True, text=True, timeout=300)


def _assert_one_line(result: subprocess.CompletedProcess, path: Path, words: str) -> None:
    assert result.returncode != 0, result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: ") and str(path) in last and words in last, result.stderr[-3000:]


def test_inference_with_a_missing_or_empty_input_folder_or_checkpoint_ends_in_one_line(tmp_path):
    models = _model_dir(tmp_path / "models")
    missing = tmp_path / "no_such_folder"
    _assert_one_line(_run_inference(tmp_path, ckpt_dir=str(models), input_dir=str(missing)), missing, "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _assert_one_line(_run_inference(tmp_path, ckpt_dir=str(models), input_dir=str(empty)), empty, "no input file")
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", None)
    no_models = tmp_path / "no_models"
    no_models.mkdir()
    _assert_one_line(_run_inference(tmp_path, ckpt_dir=str(no_models), input_dir=str(inputs)),
                     no_models / "model_info.json", "not found")
    (no_models / "model_info.json").write_text((models / "model_info.json").read_text())
    _assert_one_line(_run_inference(tmp_path, ckpt_dir=str(no_models), input_dir=str(inputs)),
                     no_models / "model.ts", "not found")


# item 9: the output folder inside the input folder


def _parsed_files(bundle: str, models: Path, inputs: Path, out: Path) -> list[dict]:
    parser = parse_bundle(bundle, "inference.yaml", ckpt_dir=str(models), input_dir=str(inputs), output_dir=str(out))
    return parser.get_parsed_content("files")


@pytest.mark.parametrize("bundle", ["rd_classification_2d", "rd_classification_3d", "rd_segmentation_3d"])
def test_output_folder_inside_the_input_folder_is_not_read_back(tmp_path, caplog, bundle):
    models = tmp_path / "models"
    models.mkdir()
    (models / "model_info.json").write_text(json.dumps({"spatial_dims": 2 if bundle.endswith("2d") else 3,
                                                        "patch_size": [SIZE] * 3, "class_names": ["a", "b"]}))
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    _nifti(inputs / "a.nii.gz", None)
    out = inputs / "predictions"
    out.mkdir()
    # what an earlier run left there
    _nifti(out / "a_seg.nii.gz", None)
    (out / "predictions.csv").write_text("file,error\n")
    with caplog.at_level(logging.INFO):
        files = _parsed_files(bundle, models, inputs, out)
    assert [item["file"] for item in files] == ["a.nii.gz"]
    assert sum(str(out) in r.getMessage() for r in caplog.records) == 1


@pytest.mark.parametrize("bundle", ["rd_classification_3d", "rd_segmentation_3d"])
def test_3d_inference_configs_split_a_folder_of_two_series(tmp_path, bundle):
    models = tmp_path / "models"
    models.mkdir()
    (models / "model_info.json").write_text(json.dumps({"spatial_dims": 3, "patch_size": [SIZE] * 3, "class_names": ["a", "b"]}))
    inputs = tmp_path / "inputs"
    _series(inputs / "p", [0.0, 2.0], number=1, prefix="a")
    _series(inputs / "p", [0.0, 2.0], number=2, prefix="b")
    files = _parsed_files(bundle, models, inputs, tmp_path / "out")
    assert [item["file"] for item in files] == ["p/series_1", "p/series_2"]
