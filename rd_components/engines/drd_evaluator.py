"""DRDEvaluator: the segmentation student's validation and, beside it, DRD's hybrid (teacher) branch."""

from __future__ import annotations

from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.utils import convert_to_tensor
from monai.utils.enums import CommonKeys as Keys
from torch import nn

from ..foundation.teacher_features import TeacherFeatureSource
from .drd_trainer import DRDBranches

__all__ = ["DRDEvaluator"]


class DRDEvaluator(SupervisedEvaluator):
    """``SupervisedEvaluator`` of a :class:`~rd_components.networks.SegmentationStudent` whose ``pred``
    is the student's logits ``(B, K, *spatial)`` and, when a teacher and reprogrammer are given,
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
        super().__init__(*args, network=network, **kwargs)
        if (reprogrammer is None) != (teacher is None):
            raise ValueError("DRDEvaluator: give both a teacher and a reprogrammer, or neither.")
        if not hybrid_pass:
            reprogrammer = teacher = None
        self.branches = None if reprogrammer is None else DRDBranches(network, reprogrammer)
        source = None if teacher is None else teacher if isinstance(teacher, TeacherFeatureSource) else \
            TeacherFeatureSource(teacher, stages=True)
        self.teacher_source = source
        if source is not None:
            source.to(self.state.device)

    def _iteration(self, engine: DRDEvaluator, batchdata: dict[str, Any]) -> dict:
        """Student (and hybrid) logits of one batch in ``state.output``."""
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        batch = engine.prepare_batch(batchdata, engine.state.device, engine.non_blocking, **engine.to_kwargs)
        inputs, targets = batch[0], batch[1]
        engine.state.output = {Keys.IMAGE: inputs, Keys.LABEL: targets}
        autocast = torch.autocast("cuda", **engine.amp_kwargs) if engine.amp else torch.autocast("cpu", enabled=False)
        with engine.mode(engine.network), autocast:
            engine.state.output[Keys.PRED] = engine.inferer(inputs, engine.network)
            if engine.branches is not None:
                was_training = engine.branches.reprogrammer.training
                engine.branches.reprogrammer.eval()
                with torch.no_grad():
                    stages = [convert_to_tensor(s, track_meta=False) for s in engine.teacher_source(inputs, batchdata)]
                    out = engine.branches(convert_to_tensor(inputs, track_meta=False), stages)
                if "teacher_logits" in out:
                    engine.state.output["pred_teacher"] = out["teacher_logits"]
                engine.branches.reprogrammer.train(was_training)
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output
