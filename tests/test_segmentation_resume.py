"""Resume of segmentation (DRD) training: killed and resumed, it ends as an uninterrupted run, in the same
MLflow run (train.yaml's ResumableCheckpoint, listed by segmentation.yaml)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from bundle_helpers import REPO, bundle_configs, run_bundle
from ignite.engine import Events
from test_drd import FEATURES, _ToyStageTeacher
from test_resume import _epoch, _kill_after_epoch, _last_per_step, _run_metrics

from rd_components.data import build_segmentation_dataset
from rd_components.engines import DRDTrainer
from rd_components.handlers import (
    DistillationSchedule,
    ResumableCheckpoint,
    read_resume_checkpoint,
    resumed_run_name,
)
from rd_components.losses import DRDLoss
from rd_components.networks import DeepReprogrammer, SegmentationStudent

BUNDLE = "rd_segmentation_2d"
EPOCHS = 3
TERMS = ("train_loss", "train_sup_student", "train_sup_hybrid", "train_kd", "train_cka")


def _drd_training(checkpoint, crash_after_epoch: int | None = None):
    """4 epochs of 3 shuffled batches (half the items unlabelled) of DRD with every per-step schedule on:
    the decaying distillation weights and hybrid / CKA terms on one step in 2 / 3, whose cycles cross
    epoch ends. Returns ``(handler, student, reprogrammer, per-epoch metrics)``; ``crash_after_epoch``
    stops the run after that epoch's checkpoint, as a kill would."""
    torch.manual_seed(0), random.seed(0), np.random.seed(0)  # a fresh process with the same seed
    images = torch.rand(12, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[6:] = -1
    loader = torch.utils.data.DataLoader([{"image": i, "label": lab} for i, lab in zip(images, labels)], batch_size=4,
                                         shuffle=True)
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    reprogrammer = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
    optimizer = torch.optim.Adam([*student.parameters(), *reprogrammer.parameters()], lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    loss = DRDLoss(cka_grid=2)
    handler = ResumableCheckpoint(checkpoint, {"network": student, "reprogrammer": reprogrammer, "loss": loss,
                                               "optimizer": optimizer, "lr_scheduler": scheduler}, resume=True)
    trainer = DRDTrainer("cpu", 4, loader, student, optimizer, loss, reprogrammer=reprogrammer,
                         teacher=_ToyStageTeacher(), hybrid_interval=2, cka_interval=3, decollate=False,
                         train_handlers=[handler, DistillationSchedule(loss, mode="decay")])
    metrics = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: scheduler.step())
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: metrics.append({k: e.state.metrics[k] for k in TERMS}))

    @trainer.on(Events.EPOCH_STARTED)
    def _crash(engine):
        if crash_after_epoch is not None and engine.state.epoch > crash_after_epoch:
            raise KeyboardInterrupt("killed")

    trainer.run()
    return handler, student, reprogrammer, metrics


def test_resumed_drd_training_ends_like_an_uninterrupted_one_in_process(tmp_path):
    _, ref_student, ref_reprogrammer, reference = _drd_training(tmp_path / "ref" / "resume.pt")
    checkpoint = tmp_path / "res" / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        _drd_training(checkpoint, crash_after_epoch=2)
    assert _epoch(read_resume_checkpoint(checkpoint)) == 2
    torch.manual_seed(123), random.seed(1), np.random.seed(2)  # another process's RNG states

    handler, student, reprogrammer, metrics = _drd_training(checkpoint)
    assert handler.resumed_from_epoch == 2
    assert metrics == reference[2:]
    for resumed, uninterrupted in ((student, ref_student), (reprogrammer, ref_reprogrammer)):
        for name, tensor in uninterrupted.state_dict().items():
            assert torch.equal(resumed.state_dict()[name], tensor), name


def test_segmentation_config_resumes_what_it_trains():
    from bundle_helpers import parse_bundle

    config = parse_bundle(BUNDLE, "train.yaml")
    handlers = config["train"]["handlers"]
    assert handlers[0] == "@resume_handler" and handlers.index("@registry") < handlers.index("@mlflow_train")
    assert set(config["resume_handler"]["objects"]) == {"network", "reprogrammer", "loss", "optimizer", "lr_scheduler",
                                                        "validator", "best_model_saver", "segmentation_report"}
    assert "resumed_run_name" in config["run_name"]  # the base's: a resumed run continues its MLflow run


def _overrides(datalist, out, name):
    return {"datalist": str(datalist), "output_dir": str(out / "eval"), "ckpt_dir": str(out / "models"), "patch_size": 32,
            "batch_size": 4, "epochs": EPOCHS, "resume": True, "experiment_name": name, "registered_model_name": name}


@pytest.mark.slow
def test_killed_segmentation_run_resumes_into_same_mlflow_run_with_same_results(tmp_path, monkeypatch):
    import test_resume

    monkeypatch.setattr(test_resume, "BUNDLE", BUNDLE)  # _kill_after_epoch runs this variant
    datalist = build_segmentation_dataset(tmp_path / "data", "mni152_tissue", 2, 32, n_train=12, n_val=4)
    ref_out = tmp_path / "uninterrupted"
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **_overrides(datalist, ref_out, "ref"))

    out = tmp_path / "resumed"
    checkpoint = out / "models" / "resume.pt"
    killed_at = _kill_after_epoch(_overrides(datalist, out, "res"), checkpoint, epoch=1)
    assert 1 <= killed_at < EPOCHS
    state = read_resume_checkpoint(checkpoint)
    assert not state["resume"]["completed"] and not (out / "models" / "model_info.json").exists()
    client, runs = _run_metrics(out, "res")
    assert len(runs) == 1 and runs[0].info.status == "RUNNING"
    run_id = runs[0].info.run_id

    result = run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **_overrides(datalist, out, "res"))
    assert f"after epoch {killed_at} of {EPOCHS}" in result.stdout + result.stderr

    client, runs = _run_metrics(out, "res")
    assert len(runs) == 1 and runs[0].info.run_id == run_id and runs[0].info.status == "FINISHED"
    ref_client, (ref_run,) = _run_metrics(ref_out, "ref")
    for key in (*TERMS, "val_mean_dice"):
        resumed = _last_per_step(client, run_id, key)
        reference = _last_per_step(ref_client, ref_run.info.run_id, key)
        assert sorted(resumed) == list(range(1, EPOCHS + 1)), key
        for step in reference:
            assert abs(resumed[step] - reference[step]) <= 1e-6, (key, step, resumed[step], reference[step])
    ref_weights = torch.load(ref_out / "models" / "model.pt", weights_only=True)
    weights = torch.load(out / "models" / "model.pt", weights_only=True)
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=1e-6)
    assert json.loads((out / "models" / "model_info.json").read_text())["task_kind"] == "segmentation"
    assert read_resume_checkpoint(checkpoint)["resume"]["completed"]
    assert resumed_run_name(checkpoint, True) is None
