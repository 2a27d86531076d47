"""No patient identifier from DICOM headers leaks into logs, reports, checkpoints, predictions or MLflow.

The tiny embedded DICOM set is rewritten with fake identifiers of the DICOM PS3.15 basic
de-identification profile, then trained on, evaluated and predicted on with the 2D bundle; every
byte the three runs print or write is searched for every identifier.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch
from bundle_helpers import bundle_configs
from monai.data import DataLoader
from monai.data.image_reader import PydicomReader
from monai.transforms import LoadImage
from pydicom.data import get_testdata_file

from rd_components.data import SafeInferenceDataset, classification_transforms, find_inputs
from rd_components.embedded import build_dataset

BUNDLE = "rd_classification_2d"

#: PS3.15 Table E.1-1 attributes (keyword -> fake value); each value is distinctive enough that
#: finding it anywhere in an output can only mean a leak
IDENTIFIERS = {
    "PatientName": "DOE^JANE^SECRET",
    "PatientID": "PID-4711-SECRET",
    "PatientBirthDate": "19010101",
    "OtherPatientIDs": "OPID-0815-SECRET",
    "PatientAddress": "42 SECRET LANE, SPRINGFIELD",
    "PatientTelephoneNumbers": "555-0199-SECRET",
    "PatientMotherBirthName": "SMITH^SECRETMOM",
    "MedicalRecordLocator": "MRN-SECRET-123",
    "IssuerOfPatientID": "SECRET ISSUER AUTHORITY",
    "PatientComments": "SECRET COMMENT ABOUT MRS DOE",
    "AccessionNumber": "ACC-SECRET-99",
    "StudyID": "STUDY-SECRET7",
    "StudyDate": "19990423",
    "StudyDescription": "SECRET BRAIN STUDY FOR DOE",
    "InstitutionName": "SECRET GENERAL HOSPITAL",
    "InstitutionAddress": "1 SECRET ROAD, HIDDENVILLE",
    "InstitutionalDepartmentName": "SECRET NEURORADIOLOGY",
    "ReferringPhysicianName": "HOUSE^GREGORY^SECRETMD",
    "PerformingPhysicianName": "QUINN^MICHAELA^SECRETDR",
    "OperatorsName": "TECH^SECRETOPERATOR",
    "StationName": "SECRET-STATION",
    "DeviceSerialNumber": "SN-SECRET-31337",
    "StudyInstanceUID": "2.25.471147114711471147114711",
    "SeriesInstanceUID": "2.25.815081508150815081508150",
}
PRIVATE_VALUE = "PRIVATE-SECRET-TAG-VALUE"
NEEDLES = [v.lower().encode() for v in [*IDENTIFIERS.values(), PRIVATE_VALUE]]


def _add_identifiers(path: Path) -> None:
    """Rewrite one DICOM file with the fake identifiers and a private tag, keeping it valid."""
    ds = pydicom.dcmread(path)
    for keyword, value in IDENTIFIERS.items():
        setattr(ds, keyword, value)
    ds.PatientIdentityRemoved = "NO"
    ds.pop("DeidentificationMethod", None)
    ds.private_block(0x0011, "RD_TEST_VENDOR", create=True).add_new(0x01, "LO", PRIVATE_VALUE)
    ds.save_as(path)


def _leaks(blob: bytes) -> list[str]:
    text = blob.lower()
    return [needle.decode() for needle in NEEDLES if needle in text]


def _run(run_id: str, config_file: str, cwd: Path, **overrides) -> str:
    """One bundle run as users start it (warnings on, default logging); returns stdout + stderr."""
    cmd = [sys.executable, "-m", "monai.bundle", "run"] + ([run_id] if run_id else []) + ["--config_file", config_file]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    for name in ("MLFLOW_TRACKING_URI", "PYTHONWARNINGS"):
        env.pop(name, None)
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"bundle run failed:\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    return result.stdout + result.stderr


def test_identifiers_never_enter_the_pipeline_metadata(tmp_path):
    """MONAI's PydicomReader prunes the header to geometry tags; nothing downstream can log what it never holds."""
    path = tmp_path / "ct.dcm"
    path.write_bytes(Path(get_testdata_file("CT_small.dcm")).read_bytes())
    _add_identifiers(path)
    # control: the unpruned header does carry them, so the search below can see a leak
    full = LoadImage(reader=PydicomReader(prune_metadata=False), image_only=True)(str(path))
    assert _leaks(repr(dict(full.meta)).encode())

    item = classification_transforms(2, 32, "dicom")({"image": str(path), "label": 0})
    assert item["image"].shape == (1, 32, 32)
    assert not _leaks(repr(dict(item["image"].meta)).encode())
    batch = next(iter(DataLoader([item], batch_size=1)))
    assert not _leaks(repr(batch).encode() + repr(dict(batch["image"].meta)).encode())

    dataset = SafeInferenceDataset(find_inputs(tmp_path, 2), 2, (32, 32))
    sample = dataset[0]
    assert sample.get("error", "") == "" and not _leaks(repr(sample).encode())


@pytest.mark.slow
def test_no_dicom_identifier_leaks_from_train_evaluate_infer(tmp_path):
    data_dir = build_dataset(tmp_path / "data", "mni152_tissue", 2, "dicom", patch_size=32, n_train=12, n_val=6, n_test=6,
                             progress=False).parent
    files = sorted(data_dir.rglob("*.dcm"))
    assert len(files) == 24
    load = classification_transforms(2, 32, "dicom")
    before = load({"image": str(files[0]), "label": 0})["image"]
    for path in files:
        _add_identifiers(path)
    # the files stay valid and read to the same tensor; the identifiers really are in their bytes
    assert torch.equal(load({"image": str(files[0]), "label": 0})["image"], before)
    assert len(_leaks(files[0].read_bytes())) == len(NEEDLES)

    work = tmp_path / "work"  # cwd and every output of the runs: MLflow's local artifact store lands here too
    work.mkdir()
    out, ckpt, pred = work / "eval", work / "models", work / "pred"
    common = dict(dataset_dir=str(data_dir), output_dir=str(out), ckpt_dir=str(ckpt), data_format="dicom",
                  patch_size=[32, 32], batch_size=6, experiment_name="phi", registered_model_name="phi_student")
    logs = {"training": _run("training", bundle_configs(BUNDLE, "train.yaml"), work, epochs=1, **common)}
    logs["evaluating"] = _run("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml"), work, **common)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    for path in [p for p in files if p.parent.name == "test"][:4]:
        (inputs / path.name).write_bytes(path.read_bytes())
    logs["inference"] = _run("", bundle_configs(BUNDLE, "inference.yaml"), work, ckpt_dir=str(ckpt), input_dir=str(inputs),
                             output_dir=str(pred))

    # the runs did what they should, so there was something to leak into
    assert (ckpt / "model.ts").is_file() and (out / "mlruns.db").is_file() and (pred / "predictions.csv").is_file()
    assert len((pred / "predictions.csv").read_text().splitlines()) == 5
    written = [p for p in work.rglob("*") if p.is_file()]
    assert any(p.name == "MLmodel" for p in written), "the registered model's artifacts were not found under the run folder"

    leaks = {f"<{name} output>": _leaks(text.encode()) for name, text in logs.items()}
    leaks.update({str(p.relative_to(work)): _leaks(p.read_bytes()) for p in written})
    leaks = {where: found for where, found in leaks.items() if found}
    assert not leaks, f"identifiers found in outputs: {leaks}"
