"""DRDEvaluator: the segmentation student's validation and, beside it, DRD's hybrid (teacher) branch."""

from __future__ import annotations

from typing import Any

import torch
from monai.utils import convert_to_tensor
from torch import nn

from ..foundation.teacher_features import TeacherFeatureSource
from .drd_trainer import DRDBranches
from .rd_evaluator import RDEvaluator

__all__ = ["DRDEvaluator"]


class DRDEvaluator(RDEvaluator):
    """:class:`RDEvaluator` for a :class:`~rd_components.networks.SegmentationStudent`: ``pred`` is
    the student's logits ``(B, K, *spatial)`` and, when a teacher and reprogrammer are given,
    ``pred_teacher`` the hybrid logits: the student's decoder on the reprogrammed teacher stages,
    as :class:`DRDTrainer` trains them. Metrics reading ``pred_teacher`` then report how much the
    teacher branch knows beside the student's key metric (postprocessing must list
    ``pred_teacher`` among its keys, ``allow_missing_keys=True``).

    Args:
        network: the segmentation student.
        reprogrammer: :class:`~rd_components.networks.DeepReprogrammer`, or ``None`` (student only).
        teacher: frozen teacher with ``stage_features`` or a :class:`TeacherFeatureSource` with
            ``stages=True`` (its cache then serves the validation items' stage maps), or ``None``.
        hybrid_pass: ``False`` when the method trains no hybrid pass (CKA-only, whose resizer keeps
            the teacher's widths): the teacher then does not run here at all.
        other args: as :class:`monai.engines.SupervisedEvaluator`.
    """

    def __init__(self, *args: Any, network: nn.Module, reprogrammer: nn.Module | None = None,
                 teacher: nn.Module | TeacherFeatureSource | None = None, hybrid_pass: bool = True,
                 **kwargs: Any) -> None:
        if (reprogrammer is None) != (teacher is None):
            raise ValueError("DRDEvaluator: give both a teacher and a reprogrammer, or neither.")
        if not hybrid_pass:
            reprogrammer = teacher = None
        if teacher is not None and not isinstance(teacher, TeacherFeatureSource):
            teacher = TeacherFeatureSource(teacher, stages=True)
        super().__init__(*args, network=network, reprogrammer=reprogrammer, teacher=teacher, **kwargs)
        self.branches = None if reprogrammer is None else DRDBranches(network, reprogrammer)

    def teacher_prediction(self, inputs: torch.Tensor, batchdata: dict[str, Any]) -> torch.Tensor | None:
        """The hybrid logits ``(B, K, *spatial)`` of the batch (no gradients)."""
        with torch.no_grad():
            stages = [convert_to_tensor(s, track_meta=False) for s in self.teacher_source(inputs, batchdata)]
            out = self.branches(convert_to_tensor(inputs, track_meta=False), stages)
        return out.get("teacher_logits")
