"""RDEvaluator: student metrics (key metric) and, optionally, the reprogrammed-teacher branch."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils.enums import CommonKeys as Keys
from torch import nn

from ..foundation.teacher_features import TeacherFeatureSource
from ..networks.deployable import DeployableStudent
from .branches import teacher_branch

__all__ = ["RDEvaluator"]


class RDEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` whose ``pred`` is the deployable student's logits ``(B, K)``.

    When a teacher and reprogrammer are given, ``pred_teacher`` holds the reprogrammed teacher
    branch's logits ``(B, K)`` through the same shared classifier, so metrics with
    ``output_transform=from_engine(["pred_teacher", "label"])`` report the teacher branch beside
    the student's key metric. Postprocessing transforms must list ``pred_teacher`` among their
    keys (with ``allow_missing_keys=True`` when the teacher branch is optional).

    Args:
        network: :class:`DeployableStudent`.
        reprogrammer: reprogramming module, or ``None`` for student-only evaluation.
        teacher: frozen teacher or :class:`TeacherFeatureSource`, or ``None``.
        other args: as :class:`monai.engines.SupervisedEvaluator` (``val_data_loader``, ``device``,
            ``key_val_metric``, ``additional_metrics``, ``postprocessing``, ``val_handlers``, ...).
    """

    def __init__(
        self,
        *args: Any,
        network: DeployableStudent,
        reprogrammer: nn.Module | None = None,
        teacher: nn.Module | TeacherFeatureSource | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, network=network, **kwargs)
        if (reprogrammer is None) != (teacher is None):
            raise ValueError("RDEvaluator: give both a teacher and a reprogrammer, or neither.")
        self.reprogrammer = reprogrammer
        self.teacher_source = None if teacher is None else TeacherFeatureSource.wrap(teacher)
        if self.teacher_source is not None:
            self.teacher_source.to(self.state.device)

    def _iteration(self, engine: RDEvaluator, batchdata: dict[str, Any]) -> dict:
        """Student (and teacher-branch) logits of one batch in ``state.output``."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        autocast = torch.autocast("cuda", **engine.amp_kwargs) if engine.amp else torch.autocast("cpu", enabled=False)
        with engine.mode(engine.network), autocast:
            engine.state.output[Keys.PRED] = engine.inferer(inputs, engine.network)
            if engine.teacher_source is not None and engine.reprogrammer is not None:
                was_training = engine.reprogrammer.training
                engine.reprogrammer.eval()
                logits = engine.teacher_prediction(inputs, batchdata)
                if logits is not None:
                    engine.state.output["pred_teacher"] = logits
                engine.reprogrammer.train(was_training)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def teacher_prediction(self, inputs: torch.Tensor, batchdata: dict[str, Any]) -> torch.Tensor | None:
        """The reprogrammed teacher branch's logits ``(B, K)`` through the shared classifier (``None``
        when the reprogrammer gives none)."""
        features = self.teacher_source(inputs, batchdata)
        return teacher_branch(self.reprogrammer, self.network.classifier, features)[1]
