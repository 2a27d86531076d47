"""End to end: the 2D bundle trains, evaluates and predicts on tiny real NIfTI and DICOM data."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mlflow
import numpy as np
import pytest
from bundle_helpers import bundle_configs, copy_bundle, run_bundle
from pydicom.data import get_testdata_file

from rd_components.embedded import build_dataset

BUNDLE = "rd_classification_2d"


def _tiny_dataset(root, fmt):
    datalist = build_dataset(root, "mni152_tissue", 2, fmt, patch_size=32, n_train=12, n_val=6, n_test=6, progress=False)
    return datalist.parent


def _train_evaluate_infer(tmp_path, fmt):
    data_dir = _tiny_dataset(tmp_path / "data", fmt)
    # run from a copy of the bundle folder placed elsewhere, as a model-zoo user does: outputs,
    # checkpoints and the inference model are found in the copy with no path given
    bundle = copy_bundle(tmp_path / "elsewhere" / "my_bundle")
    out, ckpt = bundle / "eval", bundle / "models"
    common = dict(dataset_dir=str(data_dir), patch_size=[32, 32], data_format=fmt,
                  batch_size=6, registered_model_name=f"tiny_{fmt}", experiment_name=f"tiny_{fmt}")
    # NIfTI trains with flip augmentation: the cache then holds (sample, view) entries
    augment = fmt == "nifti"
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml", bundle=bundle), bundle, epochs=2, augment=augment, **common)
    cached = len(list((out / "feature_cache").rglob("*.safetensors")))
    # 12 training and 6 validation items; flipped training views add entries
    assert (18 < cached <= 30) if augment else cached == 18, cached

    # deployable student: state dict + TorchScript, equal outputs
    assert (ckpt / "model.pt").is_file() and (ckpt / "model.ts").is_file()
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["class_names"] == ["grey matter", "white matter", "CSF/other"]
    assert info["torchscript_max_abs_diff"] <= 1e-4

    # MLflow: one FINISHED run with params, per-epoch metrics, artifacts and a registered model
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(f"tiny_{fmt}")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["method"] == "rd" and run.data.params["teacher"] == "efficientnet_lite0"
    for key in ("val_accuracy", "val_auc", "val_macro_f1", "teacher_val_accuracy", "train_loss", "train_cka", "train_kd",
                "train_ce_student", "train_ce_teacher"):
        history = client.get_metric_history(run.info.run_id, key)
        assert len(history) == 2, key
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, run.info.run_name)}
    assert {f"{run.info.run_name}/confusion_matrix.png", f"{run.info.run_name}/training_curves.png",
            f"{run.info.run_name}/executed_config.json"} <= artifacts
    version = client.get_latest_versions(f"tiny_{fmt}")[0]
    mlflow.set_tracking_uri(f"sqlite:///{out / 'mlruns.db'}")
    model_uri = f"models:/tiny_{fmt}/{version.version}"
    # TorchScript behind a pyfunc logged as code (no pickle): class names and probabilities, any batch
    answer = mlflow.pyfunc.load_model(model_uri).predict(np.random.rand(5, 1, 32, 32).astype(np.float32))
    names = ["grey matter", "white matter", "CSF/other"]
    assert list(answer.columns) == ["predicted_class"] + [f"prob_{n}" for n in names] and len(answer) == 5
    assert np.allclose(answer[[f"prob_{n}" for n in names]].sum(axis=1), 1.0, atol=1e-5)
    assert set(answer["predicted_class"]) <= set(names)
    assert mlflow.models.get_model_info(model_uri).metadata["class_names"] == names
    stored = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path / "registered")))
    assert not list(stored.rglob("*.pkl")) and list(stored.rglob("model.ts"))

    # evaluation on the test split: metrics JSON, its own FINISHED run
    run_bundle("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml", bundle=bundle), bundle, **common)
    (metrics_file,) = out.glob("evaluate-*/metrics.json")
    metrics = json.loads(metrics_file.read_text())
    assert metrics["split"] == "test" and metrics["num_samples"] == 6
    assert 0.0 <= metrics["metrics"]["test_accuracy"] <= 1.0
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)

    # inference over a folder with good images, a corrupt DICOM and a text file
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    test_images = sorted(p for p in data_dir.rglob("*") if p.is_file() and p.parent.name == "test")
    for image in test_images[:3]:
        (inputs / image.name).write_bytes(image.read_bytes())
    (inputs / "truncated.dcm").write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read()[:2000])
    (inputs / "notes.txt").write_text("not an image")
    run_bundle("", bundle_configs(BUNDLE, "inference.yaml", bundle=bundle), bundle, input_dir=str(inputs),
               output_dir=str(tmp_path / "pred"))
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert len(rows) == 5
    by_file = {r["file"]: r for r in rows}
    assert by_file["notes.txt"]["error"] and by_file["notes.txt"]["predicted_class"] == ""
    assert by_file["truncated.dcm"]["error"]
    good = [r for r in rows if not r["error"]]
    assert len(good) == 3
    for row in good:
        probs = [float(row[f"prob_{n}"]) for n in ("grey matter", "white matter", "CSF/other")]
        assert abs(sum(probs) - 1) < 1e-4 and int(row["predicted_class"]) == max(range(3), key=probs.__getitem__)


def test_bundle_2d_nifti_end_to_end(tmp_path):
    _train_evaluate_infer(tmp_path, "nifti")


@pytest.mark.slow
def test_bundle_2d_dicom_end_to_end(tmp_path):
    _train_evaluate_infer(tmp_path, "dicom")
