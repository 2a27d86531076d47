"""Label-scarce training end to end: every image trains, labels of a fraction only; baselines see the same images."""

from __future__ import annotations

import mlflow
import pytest
from bundle_helpers import bundle_configs, run_bundle

from rd_components.embedded import build_dataset

BUNDLE = "rd_classification_2d"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scarce")
    return build_dataset(root, "mni152_tissue", 2, "nifti", patch_size=32, n_train=24, n_val=6, n_test=6, progress=False).parent


def _run(tmp_path, data_dir, method: str | None, **overrides):
    out = tmp_path / (method or "rd")
    configs = ["train.yaml"] + ([f"methods/{method}.yaml"] if method else [])
    run_bundle("training", bundle_configs(BUNDLE, *configs), tmp_path, dataset_dir=str(data_dir), output_dir=str(out),
               ckpt_dir=str(out / "models"), patch_size=[32, 32], batch_size=8, epochs=1, experiment_name="scarce",
               registered_model_name=None, **overrides)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("scarce").experiment_id])
    assert run.info.status == "FINISHED"
    return out, client, run


def test_rd_trains_on_unlabelled_images(tmp_path, tiny_data):
    out, client, run = _run(tmp_path, tiny_data, None, label_fraction=0.25, labeled_ratio="none", augment=False)
    params = run.data.params
    # 24 training images, a stratified quarter labelled (2 of each of 3 classes), all of them trained on
    assert (params["num_train"], params["num_train_labeled"], params["num_train_unlabeled"]) == ("24", "6", "18")
    assert params["labeled_ratio"] == "none" and params["distill_schedule"] == "warmup"
    # the teacher cache covers the unlabelled images too: 24 training + 6 validation entries (a plain
    # shuffle visits every image in one epoch; a labelled ratio above the natural share may not)
    assert len(list((out / "feature_cache").rglob("*.safetensors"))) == 30
    # 24 images / batch 8 = 3 steps, whatever the label fraction
    assert len(client.get_metric_history(run.info.run_id, "train_loss")) == 1
    assert (out / "models" / "teacher_branch.pt").is_file()


@pytest.mark.slow
def test_mean_teacher_baseline_runs(tmp_path, tiny_data):
    out, client, run = _run(tmp_path, tiny_data, "mean_teacher", label_fraction=0.25, augment=True)
    assert run.data.params["method"] == "mean_teacher" and run.data.params["num_train_unlabeled"] == "18"
    assert client.get_metric_history(run.info.run_id, "train_kd")  # the consistency term ran
    assert not (out / "feature_cache").exists() or not list((out / "feature_cache").rglob("*.safetensors"))
