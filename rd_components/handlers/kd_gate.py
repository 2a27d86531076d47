"""KD only while the teacher branch is better than the student on validation."""

from __future__ import annotations

import logging
from typing import Any

from ignite.engine import Engine, Events

__all__ = ["KDGate"]

logger = logging.getLogger(__name__)


class KDGate:
    """Switch a segmentation loss's KD term off while the student is ahead of its teacher branch.

    KD pulls the student towards the teacher branch's predictions. Where that branch knows less
    than the student (the teacher's stage maps read poorly for the label, ``docs/RESULTS.md``,
    lobes), KD costs the student Dice; where it knows more (tissue), KD is the gain. The gate
    asks the validation set which holds: after each validator run it compares the teacher
    branch's metric with the student's and sets ``loss.kd_gate`` to 1 (teacher ahead) or 0
    (student level or ahead). The supervised terms and the stage CKA term are not gated: the
    teacher branch keeps learning, so the gate can open again.

    Before the first validation the gate is open. Its state (``state_dict``) goes into the
    resume checkpoint, so a resumed run gates the next steps as the interrupted one would have;
    ``kd_gate`` (the gate after the epoch's validation, i.e. for the next epoch's steps) is logged
    with the epoch's metrics when the handler is attached after the ``ValidationHandler``.

    Args:
        loss: a :class:`~rd_components.losses.DRDLoss` (anything with a ``kd_gate`` attribute).
        validator: the evaluator whose ``state.metrics`` hold both metrics after each run.
        metric_name: the teacher branch's validation metric (``teacher_val_mean_dice``).
        reference_metric: the student's (``val_mean_dice``).
        enabled: ``False`` leaves the loss ungated (the handler attaches nothing).
    """

    def __init__(self, loss: Any, validator: Engine, metric_name: str = "teacher_val_mean_dice",
                 reference_metric: str = "val_mean_dice", enabled: bool = True) -> None:
        if not hasattr(loss, "kd_gate"):
            raise ValueError(f"KDGate: {type(loss).__name__} has no kd_gate to set (use DRDLoss).")
        self.loss, self.validator = loss, validator
        self.metric_name, self.reference_metric = metric_name, reference_metric
        self.enabled = bool(enabled)
        self.open = True

    def attach(self, trainer: Engine) -> None:
        """Judge after every validator run; record the gate at the trainer's epoch ends."""
        if not self.enabled:
            return
        self.validator.add_event_handler(Events.COMPLETED, self.update)
        trainer.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def update(self, validator: Engine) -> None:
        """Open the gate when the teacher branch's metric is above the student's, else close it."""
        metrics = validator.state.metrics
        if self.metric_name not in metrics or self.reference_metric not in metrics:
            raise KeyError(f"KDGate: the validator reports no {self.metric_name!r} or {self.reference_metric!r}; "
                           f"it has {sorted(metrics)} (the gate needs the teacher branch's metrics: "
                           "teacher_branch_metrics: true)")
        teacher, student = float(metrics[self.metric_name]), float(metrics[self.reference_metric])
        was_open = self.open
        self._set(teacher > student)
        if self.open != was_open:
            logger.info("KD %s: teacher branch %s %.4f, student %s %.4f.", "on" if self.open else "off",
                        self.metric_name, teacher, self.reference_metric, student)

    def _set(self, is_open: bool) -> None:
        self.open = bool(is_open)
        self.loss.kd_gate = 1.0 if self.open else 0.0

    def _record(self, trainer: Engine) -> None:
        trainer.state.metrics["kd_gate"] = float(self.loss.kd_gate)

    def state_dict(self) -> dict[str, bool]:
        """``{"open": bool}``, for the resume checkpoint."""
        return {"open": self.open}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the gate (and the loss's ``kd_gate``) of a resumed run."""
        self._set(bool(state["open"]))
