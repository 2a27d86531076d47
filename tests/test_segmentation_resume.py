"""Resume of segmentation (DRD) training: killed and resumed, it ends as an uninterrupted run, in the same
MLflow run (train.yaml's ResumableCheckpoint, listed by segmentation.yaml)."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from ignite.engine import Events
from test_drd import FEATURES, _ToyStageTeacher
from test_resume import _epoch

from rd_components.engines import DRDTrainer
from rd_components.handlers import (
    DistillationSchedule,
    ResumableCheckpoint,
    read_resume_checkpoint,
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
                                                        "validator", "best_model_saver", "segmentation_report", "kd_gate"}
    assert handlers.index("@validation_handler") < handlers.index("@kd_gate_handler")  # the gate reads that validation
    assert "resumed_run_name" in config["run_name"]  # the base's: a resumed run continues its MLflow run


# The killed-and-resumed bundle run (a real SIGKILL) is tests/test_segmentation_user_journey.py, on a user's MSD folder.
