"""TeacherBranchCheck: a near-chance teacher branch is reported, a useful one is not."""

from __future__ import annotations

import logging

import pytest
from ignite.engine import Engine, Events

from rd_components.handlers import TeacherBranchCheck


class _Run:
    class info:  # noqa: N801 (mimics mlflow.entities.Run.info)
        run_id = "run-1"


class _Client:
    def __init__(self) -> None:
        self.tags: dict[str, str] = {}

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tags[f"{run_id}/{key}"] = value


class _MLflowHandler:
    def __init__(self) -> None:
        self.cur_run, self.client = _Run(), _Client()


def _train(accuracies: list[float], num_classes: int, caplog) -> tuple[TeacherBranchCheck, _MLflowHandler]:
    """Two-epoch trainer whose validator reports ``accuracies`` in turn as teacher_val_accuracy."""
    values = iter(accuracies)
    validator = Engine(lambda engine, batch: None)

    @validator.on(Events.COMPLETED)
    def _metrics(engine):
        engine.state.metrics["teacher_val_accuracy"] = next(values)

    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: validator.run([0]))
    mlflow_handler = _MLflowHandler()
    check = TeacherBranchCheck(validator, num_classes, mlflow_handler=mlflow_handler)
    check.attach(trainer)
    with caplog.at_level(logging.WARNING):
        trainer.run([0], max_epochs=len(accuracies))
    return check, mlflow_handler


def test_near_chance_branch_is_reported_and_tagged(caplog):
    check, mlflow_handler = _train([0.30, 0.39], num_classes=3, caplog=caplog)
    assert check.best == pytest.approx(0.39) and check.weak
    assert "never rose above chance" in caplog.text
    assert mlflow_handler.client.tags == {"run-1/teacher_branch_weak": "true"}


def test_useful_branch_is_not_reported(caplog):
    # best epoch counts: 0.20 then 0.60 with 8 classes (chance 0.125)
    check, mlflow_handler = _train([0.20, 0.60], num_classes=8, caplog=caplog)
    assert check.best == pytest.approx(0.60) and not check.weak
    assert "never rose above chance" not in caplog.text and mlflow_handler.client.tags == {}


def _train_segmentation(teacher: list[float], student: list[float], caplog) -> tuple[TeacherBranchCheck, _MLflowHandler]:
    """Two-epoch trainer whose validator reports the hybrid branch's and the student's Dice in turn."""
    values = iter(zip(teacher, student))
    validator = Engine(lambda engine, batch: None)

    @validator.on(Events.COMPLETED)
    def _metrics(engine):
        engine.state.metrics["teacher_val_mean_dice"], engine.state.metrics["val_mean_dice"] = next(values)

    trainer = Engine(lambda engine, batch: None)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: validator.run([0]))
    mlflow_handler = _MLflowHandler()
    check = TeacherBranchCheck(validator, 4, metric_name="teacher_val_mean_dice", reference_metric="val_mean_dice",
                               mlflow_handler=mlflow_handler)
    check.attach(trainer)
    with caplog.at_level(logging.WARNING):
        trainer.run([0], max_epochs=len(teacher))
    return check, mlflow_handler


def test_hybrid_branch_no_better_than_the_student_is_reported_and_tagged(caplog):
    """DRD: Dice has no chance level; the branch is weak when its best never beats the student's best."""
    check, mlflow_handler = _train_segmentation([0.30, 0.42], [0.35, 0.45], caplog)
    assert check.weak and "never better than the student" in caplog.text
    assert mlflow_handler.client.tags == {"run-1/teacher_branch_weak": "true"}


def test_hybrid_branch_ahead_of_the_student_is_not_reported(caplog):
    check, mlflow_handler = _train_segmentation([0.30, 0.55], [0.35, 0.45], caplog)
    assert not check.weak and "never better" not in caplog.text and mlflow_handler.client.tags == {}
