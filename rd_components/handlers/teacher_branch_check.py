"""Say so when RD's reprogrammed teacher branch has nothing to give the student."""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["TeacherBranchCheck"]

logger = logging.getLogger(__name__)


class TeacherBranchCheck:
    """At the end of training, warn when the teacher branch's best validation accuracy stayed
    near chance (or, with ``reference_metric``, no better than the student's).

    RD's student learns from the reprogrammed teacher branch through KD and CKA; a branch that
    never rises above chance (the frozen features do not carry the label, e.g. globally pooled
    ImageNet features for the tissue at a patch centre) pulls the student towards noise, and the
    student alone is then the better choice (``docs/RESULTS.md``, MNI152 tissue). The check
    tracks the best ``metric_name`` over the validator's runs and, on the trainer's
    ``COMPLETED``, logs one warning and tags the MLflow run ``teacher_branch_weak=true`` when it
    is below ``1 / num_classes + margin``.

    Args:
        validator: the evaluator whose ``state.metrics`` hold ``metric_name`` after each run.
        num_classes: number of classes (chance accuracy is ``1 / num_classes``).
        metric_name: the teacher branch's validation accuracy.
        margin: accuracy above chance below which the branch counts as weak.
        mlflow_handler: MONAI ``MLFlowHandler`` of the run to tag, or ``None``.
        enabled: ``False`` for methods without a teacher branch, or on ranks other than 0.
        reference_metric: the student's validation metric (DRD: ``val_mean_dice``, where chance has
            no meaning): the branch counts as weak when its best value is no better than the
            student's best, the segmentation twin of "near chance".
    """

    def __init__(self, validator: Engine, num_classes: int, metric_name: str = "teacher_val_accuracy",
                 margin: float = 0.1, mlflow_handler: Any = None, enabled: bool = True,
                 reference_metric: str | None = None) -> None:
        self.validator = validator
        self.chance = 1.0 / max(int(num_classes), 1)
        self.metric_name = metric_name
        self.margin = float(margin)
        self.mlflow_handler = mlflow_handler
        self.enabled = enabled
        self.reference_metric = reference_metric
        self.best: float | None = None
        self.best_reference: float | None = None

    def attach(self, trainer: Engine) -> None:
        """Track the validator's metric on its ``COMPLETED``; judge on the trainer's ``COMPLETED``."""
        if not self.enabled:
            return
        self.validator.add_event_handler(Events.COMPLETED, self.record)
        trainer.add_event_handler(Events.COMPLETED, self.judge)

    def record(self, validator: Engine) -> None:
        """Keep the best value of the teacher branch's validation accuracy."""
        value = validator.state.metrics.get(self.metric_name)
        if value is not None:
            self.best = float(value) if self.best is None else max(self.best, float(value))
        reference = validator.state.metrics.get(self.reference_metric) if self.reference_metric else None
        if reference is not None:
            self.best_reference = float(reference) if self.best_reference is None else max(self.best_reference, float(reference))

    @property
    def weak(self) -> bool:
        """Whether the best accuracy seen stayed below ``chance + margin`` (``False`` before any)."""
        if self.best is None:
            return False
        if self.reference_metric is not None:
            return self.best_reference is not None and self.best <= self.best_reference
        return self.best < self.chance + self.margin

    def judge(self, trainer: Engine | None = None) -> None:
        """Warn and tag the MLflow run when the branch is weak."""
        if not self.weak:
            return
        if self.reference_metric is not None:
            logger.warning(
                "The teacher branch was never better than the student on validation (best %s %.3f, student's %s "
                "%.3f): the foundation model's stage features do not seem to add to this task; compare with the "
                "student alone (configs/methods/segmentation/student.yaml).",
                self.metric_name, self.best, self.reference_metric, self.best_reference)
        else:
            logger.warning(
                "The teacher branch never rose above chance on validation (best %s %.3f, chance %.3f): the "
                "foundation model's features do not seem to carry this label, so distillation gives the student "
                "little; compare with the student alone (configs/methods/student.yaml).",
                self.metric_name, self.best, self.chance)
        run = getattr(self.mlflow_handler, "cur_run", None)
        if run is not None:
            self.mlflow_handler.client.set_tag(run.info.run_id, "teacher_branch_weak", "true")
