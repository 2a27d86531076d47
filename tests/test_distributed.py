"""Real torchrun: two CPU processes (gloo) train the 2D bundle with DDP, one MLflow run."""

from __future__ import annotations

import os
import subprocess
import sys

import mlflow
import pytest
from bundle_helpers import bundle_configs

from rd_components.embedded import build_dataset


def _torchrun_bundle(tmp_path, bundle: str, experiment: str, key_metric: str, *overrides: str):
    """Train ``bundle`` with train.yaml + multi_gpu_train.yaml as two torchrun CPU processes (gloo) for two
    epochs; check both ranks ran DDP, rank 0 exported and logged one FINISHED MLflow run; return that run."""
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "monai.bundle", "run", "training",
           "--config_file", bundle_configs(bundle, "train.yaml", "multi_gpu_train.yaml"),
           "--output_dir", str(out), "--ckpt_dir", str(ckpt), "--batch_size", "4", "--epochs", "2",
           "--experiment_name", experiment, *overrides]
    env = {**os.environ, "GLOO_SOCKET_IFNAME": "lo", "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    env.pop("MLFLOW_TRACKING_URI", None)
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    assert (ckpt / "model.pt").is_file() and (ckpt / "model.ts").is_file()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    assert len(client.get_metric_history(runs[0].info.run_id, key_metric)) == 2
    combined = result.stdout + result.stderr
    for rank in (0, 1):
        assert f"DistributedDataParallel over 2 processes (rank {rank})" in combined
    return runs[0]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    datalist = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=12, n_val=6, n_test=6,
                             progress=False)
    _torchrun_bundle(tmp_path, "rd_classification_2d", "ddp", "val_accuracy", "--dataset_dir", str(datalist.parent),
                     "--patch_size", "[32, 32]")


@pytest.mark.slow
def test_torchrun_two_cpu_processes_segmentation(tmp_path):
    """DRD under torchrun: both ranks train in DDP (the hybrid pass split by label included), rank 0 alone logs and exports.

    ``hybrid_interval 2``, ``cka_interval 3``: over the 4 steps, both teacher terms, none (no stage maps read),
    the hybrid pass only, CKA only; DDP (``find_unused_parameters=False``) must see a gradient for every
    projector parameter on each."""
    run = _torchrun_bundle(tmp_path, "rd_segmentation_2d", "ddp_seg", "val_mean_dice", "--dataset_dir", str(tmp_path / "data"),
                           "--patch_size", "32", "--num_train_patches", "16", "--label_fraction", "0.5",
                           "--hybrid_interval", "2", "--cka_interval", "3")
    assert run.data.metrics["train_sup_hybrid"] > 0  # the hybrid pass trained on both ranks' labelled items
