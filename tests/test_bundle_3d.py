"""End to end: the 3D bundle trains (real I3ResNet-152 teacher), evaluates and predicts on tiny
real NIfTI volumes and DICOM series."""

from __future__ import annotations

import csv
import json
import shutil

import mlflow
import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import bundle_configs, run_bundle
from pydicom.data import get_testdata_file
from safetensors.torch import load_file

from rd_components.embedded import build_dataset

BUNDLE = "rd_classification_3d"
CLASSES = ("grey matter", "white matter", "CSF/other")
N_TRAIN, N_VAL, N_TEST, PATCH = 12, 6, 6, 16


def _tiny_dataset(root, fmt):
    datalist = build_dataset(root, "mni152_tissue", 3, fmt, patch_size=PATCH, n_train=N_TRAIN, n_val=N_VAL,
                             n_test=N_TEST, progress=False)
    return datalist.parent


def _inference_inputs(folder, data_dir, fmt):
    """Three good test volumes plus three inputs that must fail with a reason; returns the good names."""
    folder.mkdir()
    test_dir = data_dir / "test"
    if fmt == "nifti":
        good = sorted(test_dir.glob("*.nii.gz"))[:3]
        for volume in good:
            shutil.copy(volume, folder / volume.name)
        names = [v.name for v in good]
    else:
        good = sorted(p for p in test_dir.iterdir() if p.is_dir())[:3]
        for series in good:
            shutil.copytree(series, folder / series.name)
        names = [f"{s.name}/" for s in good]
    # a lone non-image file, a 2D image given to a 3D model, and a "series" of truncated DICOMs
    (folder / "notes.txt").write_text("not an image")
    nib.save(nib.Nifti1Image(np.random.rand(PATCH, PATCH).astype(np.float32), np.eye(4)), folder / "flat.nii.gz")
    broken = folder / "broken"
    broken.mkdir()
    ct = open(get_testdata_file("CT_small.dcm"), "rb").read()
    for i in range(2):
        (broken / f"{i}.dcm").write_bytes(ct[:2000])
    return names


def _train_evaluate_infer(tmp_path, fmt):
    data_dir = _tiny_dataset(tmp_path / "data", fmt)
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    common = dict(dataset_dir=str(data_dir), data_format=fmt, output_dir=str(out), ckpt_dir=str(ckpt), batch_size=6,
                  registered_model_name=f"tiny3d_{fmt}", experiment_name=f"tiny3d_{fmt}")
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), tmp_path, epochs=1, **common)

    # the patch size follows the datalist; the deployable student is exported and scripted
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["class_names"] == list(CLASSES)
    assert info["spatial_dims"] == 3 and info["patch_size"] == [PATCH] * 3 and info["teacher"] == "i3resnet152"
    assert info["torchscript_max_abs_diff"] <= 1e-4
    scripted = torch.jit.load(str(ckpt / "model.ts"))
    assert scripted(torch.rand(2, 1, PATCH, PATCH, PATCH)).shape == (2, 3)

    # the disk feature cache holds one layer4 map per training and validation cube: the teacher ran once each
    entries = sorted((out / "feature_cache").rglob("*.safetensors"))
    assert len(entries) == N_TRAIN + N_VAL
    assert load_file(str(entries[0]))["features"].shape == (2048, 1, 1, 1)

    # MLflow: one FINISHED run with params, per-epoch metrics, artifacts and a registered model
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(f"tiny3d_{fmt}")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["teacher"] == "i3resnet152" and run.data.params["data_format"] == fmt
    for key in ("val_accuracy", "val_auc", "teacher_val_accuracy", "train_loss", "train_cka", "train_kd"):
        assert len(client.get_metric_history(run.info.run_id, key)) == 1, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, run.info.run_name)}
    assert {f"{run.info.run_name}/confusion_matrix.png", f"{run.info.run_name}/executed_config.json"} <= artifacts
    version = client.get_latest_versions(f"tiny3d_{fmt}")[0]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlruns.db'}")
    answer = mlflow.pyfunc.load_model(f"models:/tiny3d_{fmt}/{version.version}").predict(
        np.random.rand(2, 1, PATCH, PATCH, PATCH).astype(np.float32))
    assert answer.shape == (2, 4) and answer.columns[0] == "predicted_class"

    # evaluation on the test split (student only, no teacher): metrics JSON, its own FINISHED run
    run_bundle("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml"), tmp_path, **common)
    (metrics_file,) = out.glob("evaluate-*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["split"] == "test" and metrics["num_samples"] == N_TEST
    assert 0.0 <= metrics["metrics"]["test_accuracy"] <= 1.0
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)

    # inference: good volumes are predicted, each bad input gets a one-line reason
    good = _inference_inputs(tmp_path / "inputs", data_dir, fmt)
    run_bundle("", bundle_configs(BUNDLE, "inference.yaml"), tmp_path, ckpt_dir=str(ckpt),
               input_dir=str(tmp_path / "inputs"), output_dir=str(tmp_path / "pred"))
    rows = {r["file"]: r for r in csv.DictReader(open(tmp_path / "pred" / "predictions.csv"))}
    assert set(rows) == {*good, "notes.txt", "flat.nii.gz", "broken/"}
    for bad in ("notes.txt", "flat.nii.gz", "broken/"):
        assert rows[bad]["error"] and rows[bad]["predicted_class"] == "", bad
    assert "3D image" in rows["flat.nii.gz"]["error"] or "dimensionality" in rows["flat.nii.gz"]["error"]
    for name in good:
        row = rows[name]
        probs = [float(row[f"prob_{c}"]) for c in CLASSES]
        assert not row["error"] and abs(sum(probs) - 1) < 1e-4
        assert int(row["predicted_class"]) == max(range(3), key=probs.__getitem__)


def test_bundle_3d_nifti_end_to_end(tmp_path):
    _train_evaluate_infer(tmp_path, "nifti")


@pytest.mark.slow
def test_bundle_3d_dicom_end_to_end(tmp_path):
    _train_evaluate_infer(tmp_path, "dicom")
