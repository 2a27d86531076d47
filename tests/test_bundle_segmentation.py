"""The DRD segmentation bundles (preview) end to end at tiny size: train, export, evaluate on a held-out volume."""

from __future__ import annotations

import csv

import mlflow
import pytest
from bundle_helpers import bundle_configs, copy_bundle, run_bundle


@pytest.mark.slow
@pytest.mark.parametrize("bundle,patch,n_train", [("rd_segmentation_3d", 32, 8), ("rd_segmentation_2d", 32, 16)])
def test_train_export_and_evaluate(bundle, patch, n_train, tmp_path):
    copy = copy_bundle(bundle, tmp_path / bundle)
    common = dict(dataset_dir=str(tmp_path / "data"), patch_size=patch, num_train_patches=n_train, batch_size=4)
    first = run_bundle("training", bundle_configs(copy, "train.yaml"), tmp_path, epochs=1, label_fraction=0.5, **common)
    assert "building teacher" in first.stdout + first.stderr  # cold cache: the teacher is loaded
    models = copy / "models"
    assert (models / "model.pt").is_file() and (models / "model.ts").is_file()  # export checked against eager inside
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'eval' / 'mlruns.db'}")
    run = client.search_runs([client.get_experiment_by_name(bundle).experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    assert int(run.data.params["num_train_labeled"]) == n_train // 2
    assert int(run.data.params["num_train_unlabeled"]) == n_train - n_train // 2
    for term in ("train_sup_student", "train_sup_hybrid", "train_kd", "train_cka"):
        assert term in run.data.metrics
    if bundle == "rd_segmentation_3d":  # where the teacher is heavy: a warm cache never builds it
        second = run_bundle("training", bundle_configs(copy, "train.yaml"), tmp_path, epochs=1, **common)
        assert "building teacher" not in second.stdout + second.stderr

    run_bundle("evaluating", bundle_configs(copy, "train.yaml", "evaluate.yaml"), tmp_path, **common)
    [eval_dir] = [p for p in (copy / "eval").iterdir() if p.name.startswith("evaluate-")]
    metrics = dict(csv.reader(open(eval_dir / "metrics.csv"), delimiter=","))
    assert 0.0 < float(metrics["test_mean_dice"]) <= 1.0 and float(metrics["test_hd95"]) >= 0.0
    rows = list(csv.DictReader(open(eval_dir / "test_mean_dice_raw.csv"), delimiter=","))
    assert rows and all("test" in r["filename"] for r in rows)  # whole held-out images, not patches


@pytest.mark.slow
def test_student_alone_overlay_never_builds_the_teacher(tmp_path):
    copy = copy_bundle("rd_segmentation_2d", tmp_path / "seg2d")
    result = run_bundle("training", bundle_configs(copy, "train.yaml", "methods/segmentation/student.yaml"), tmp_path,
                        dataset_dir=str(tmp_path / "data"), patch_size=32, num_train_patches=16, batch_size=4, epochs=1,
                        label_fraction=0.5)
    assert "building teacher" not in result.stdout + result.stderr
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'eval' / 'mlruns.db'}")
    run = client.search_runs([client.get_experiment_by_name("rd_segmentation_2d").experiment_id])[0]
    assert run.data.params["method"] == "student" and run.info.status == "FINISHED"
    assert run.data.metrics["train_kd"] == 0.0 and run.data.metrics["train_sup_hybrid"] == 0.0
    assert (copy / "models" / "model.ts").is_file()
