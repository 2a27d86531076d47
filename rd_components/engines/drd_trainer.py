"""DRDTrainer: Deep Reprogramming Distillation for segmentation, RDTrainer's sibling."""

from __future__ import annotations

from typing import Any

import torch
from monai.utils import convert_to_tensor
from torch import nn

from ..foundation.teacher_features import TeacherFeatureSource
from ..networks.segmentation import SegmentationStudent
from .rd_trainer import RDTrainer

__all__ = ["DRDTrainer", "DRDBranches", "labeled_mask"]


class DRDBranches(nn.Module):
    """The student's encoder and decoder, and the hybrid pass of the decoder over projected teacher stages.

    Args:
        student: :class:`SegmentationStudent`.
        reprogrammer: :class:`DeepReprogrammer` mapping the teacher's stages onto the student's
            ``distilled_stages``; ``None`` trains the student alone; a head with
            ``gives_logits`` gives the hybrid logits itself, ``head.teacher_logits(teacher_stages,
            spatial size)`` (:class:`~rd_components.networks.SoftTargets` for the mean teacher,
            a fitted :class:`~rd_components.networks.StageProbe` for KD from the probed teacher).
        hybrid: decode the projected stages (the hybrid logits). ``False`` skips that pass, for
            losses without hybrid or KD terms (CKA-only, whose
            :class:`~rd_components.networks.StageResizer` keeps the teacher's widths).

    Shapes:
        ``images (B, C, *spatial)``, ``teacher_stages`` a list of ``(B, C_T[s], *t_s)``,
        ``hybrid_grad`` ``(B,)`` bool or ``None`` -> dict with ``student_logits (B, K, *spatial)``,
        ``student_stages`` (the distilled stages) and, with a teacher, ``teacher_logits`` (the
        hybrid logits) and ``projected_stages``. ``decode_hybrid=False`` skips the hybrid pass for
        this call (no ``teacher_logits``; a 0-dim zero ``graph_anchor`` that ties the projectors
        into the loss's graph instead); ``teacher_stages=None`` skips the projections as well.

    ``hybrid_grad`` marks the items whose hybrid logits need gradients; the others are decoded
    without autograd (no graph kept, no backward). The trainer passes the labelled items when
    the loss detaches the hybrid logits for KD (:class:`~rd_components.losses.DRDLoss`'s
    default), because then only the labelled items' supervised term trains the hybrid pass and
    the rest only serve as KD targets: same gradients, about a third of the hybrid cost for each
    unlabelled item. Exact for per-item normalisation (instance norm, the ``BasicUNet``
    default); with batch norm in the decoder the two parts are normalised separately.
    """

    def __init__(self, student: SegmentationStudent, reprogrammer: nn.Module | None, hybrid: bool = True) -> None:
        super().__init__()
        self.student = student
        self.reprogrammer = reprogrammer
        self.hybrid = bool(hybrid)

    def forward(self, images: torch.Tensor, teacher_stages: list[torch.Tensor] | None = None,
                hybrid_grad: torch.Tensor | None = None, decode_hybrid: bool = True) -> dict[str, Any]:
        stages = self.student.encode(images)
        distilled = list(self.student.distilled_stages)
        out: dict[str, Any] = {"student_logits": self.student.decode(stages),
                               "student_stages": [stages[i] for i in distilled]}
        if getattr(self.reprogrammer, "gives_logits", False) and teacher_stages is not None:
            # a head that reads the teacher's stages as logits itself (the mean teacher's EMA on the
            # mirrored view; a linear probe of the stage maps): nothing to project or decode
            out["teacher_logits"] = self.reprogrammer.teacher_logits(teacher_stages, images.shape[2:])
        elif self.reprogrammer is not None and teacher_stages is not None:
            projected = self.reprogrammer(teacher_stages, [tuple(stages[i].shape[2:]) for i in distilled])
            if self.hybrid and decode_hybrid:
                hybrid = list(stages)
                for index, p in zip(distilled, projected):
                    hybrid[index] = p  # the finest stage (stride 1) has no teacher counterpart: the student's own
                out["teacher_logits"] = self._decode_hybrid(hybrid, hybrid_grad)
            out["projected_stages"] = projected
        if self.reprogrammer is not None and "teacher_logits" not in out:
            # without the hybrid pass (DRDTrainer's intervals, CKA-only) the projectors get no
            # gradient (CKA reads the projections detached): a zero term keeps them in the loss's
            # graph, as DDP (find_unused_parameters=False) requires of every step
            out["graph_anchor"] = sum((p.sum() for p in self.reprogrammer.parameters()), images.new_zeros(())) * 0.0
        return out

    def _decode_hybrid(self, hybrid: list[torch.Tensor], grad_items: torch.Tensor | None) -> torch.Tensor:
        """Hybrid stages ``[(B, C_s, *spatial_s)]`` -> logits ``(B, K, *spatial)``, with autograd only for the
        items of ``grad_items`` ``(B,)`` bool (all items when ``None`` or grad is off)."""
        if grad_items is None or not torch.is_grad_enabled() or bool(grad_items.all()):
            return self.student.decode(hybrid)
        grad_items = grad_items.to(hybrid[0].device).bool().reshape(-1)
        if not bool(grad_items.any()):
            # one item keeps every decoder and projector parameter in the graph (DDP requires it)
            grad_items = torch.zeros_like(grad_items)
            grad_items[0] = True
        with torch.no_grad():
            rest = self.student.decode([h[~grad_items] for h in hybrid])
        logits = self.student.decode([h[grad_items] for h in hybrid])
        full = logits.new_empty((grad_items.shape[0], *logits.shape[1:]))
        full[grad_items] = logits
        full[~grad_items] = rest
        return full


def labeled_mask(labels: torch.Tensor) -> torch.Tensor:
    """``(B, 1, *spatial)`` class maps -> ``(B,)`` bool: the items whose map is not hidden (-1)."""
    return (labels >= 0).flatten(1).all(dim=1)


class DRDTrainer(RDTrainer):
    """MONAI ``Trainer`` for Deep Reprogramming Distillation (segmentation).

    Per iteration: the frozen teacher gives its stage maps (``teacher.stage_features``, no
    grad); the :class:`DeepReprogrammer` projects them onto the student's encoder stages; the
    student's decoder decodes its own stages (student logits, ``pred``) and the projected ones
    (hybrid logits, ``pred_teacher``); ``loss_function`` (a
    :class:`~rd_components.losses.DRDLoss`) returns a dict of terms whose ``loss`` is
    back-propagated. Every ``IterationEvents`` fires and each term is averaged per epoch into
    ``state.metrics["train_<term>"]``, as in :class:`RDTrainer`, whose arguments it takes
    (``network`` is the :class:`SegmentationStudent`, ``reprogrammer`` the
    :class:`DeepReprogrammer`).

    Labels are ``(B, 1, *spatial)`` class maps; an item whose map holds ``-1`` (a hidden label)
    is unlabelled: it trains through KD and CKA only. ``teacher`` is a frozen teacher with
    ``stage_features`` or a :class:`TeacherFeatureSource` with ``stages=True`` (its cache then
    holds each item's stage maps, so a warm epoch never runs the teacher).

    ``hybrid_pass=False`` skips the hybrid decoding (a loss without hybrid and KD terms, such as
    the CKA-only baseline, never reads it). ``hybrid_interval=k`` decodes the hybrid stages on
    one step in ``k`` (iterations 1, 1 + k, ...) and weighs the hybrid and KD terms ``k`` times on
    those steps, so that their average weight is DRD's; the stage CKA term runs on every step.
    The hybrid pass is most of DRD's cost over the student's: ``k = 3`` takes a warm 3D DRD
    epoch from 1.52x to 1.22x the student's (``docs/PERFORMANCE.md``). The per-epoch
    ``train_sup_hybrid`` and ``train_kd`` averages then count the skipped steps as 0.

    ``cka_interval=k`` does the same for the stage CKA term (iterations 1, 1 + k, ..., weighed
    ``k`` times). A step with neither term reads no teacher stage maps and projects nothing: it
    costs what a step of the student alone costs. In 2D, where the projections and CKA are a
    larger share of DRD's extra cost, both intervals at 3 bring DRD to 1.25x (hybrid alone: 1.49x).
    """

    def __init__(self, *args: Any, hybrid_pass: bool = True, hybrid_interval: int = 1, cka_interval: int = 1,
                 **kwargs: Any) -> None:
        for name, value in (("hybrid_interval", hybrid_interval), ("cka_interval", cka_interval)):
            if int(value) < 1:
                raise ValueError(f"DRDTrainer: {name} must be >= 1, got {value!r}")
        self.hybrid_pass = bool(hybrid_pass)  # read by make_branches, which RDTrainer.__init__ calls
        self.hybrid_interval = int(hybrid_interval)
        self.cka_interval = int(cka_interval)
        teacher = kwargs.get("teacher")
        if teacher is not None and not isinstance(teacher, TeacherFeatureSource):
            kwargs["teacher"] = TeacherFeatureSource(teacher, stages=True)
        super().__init__(*args, **kwargs)

    def make_branches(self, network: nn.Module, reprogrammer: nn.Module | None) -> nn.Module:
        if not isinstance(network, SegmentationStudent):
            raise ValueError(f"DRDTrainer: network must be a SegmentationStudent, got {type(network).__name__}")
        return DRDBranches(network, reprogrammer, hybrid=self.hybrid_pass)

    def teacher_inputs(self, inputs: torch.Tensor, batchdata: dict[str, Any]) -> list[torch.Tensor] | None:
        if not self.teacher_source.stages:
            raise ValueError("DRDTrainer: the teacher source must give stage features (TeacherFeatureSource(stages=True))")
        if not (self.decodes_hybrid() or self.aligns_stages()):
            return None  # no teacher term on this step: the stage maps are not even read
        with torch.no_grad():
            stages = self.teacher_source(inputs, batchdata)
        return [convert_to_tensor(s, track_meta=False) for s in stages]

    def decodes_hybrid(self) -> bool:
        """Whether this iteration (1-based ``state.iteration``) runs the hybrid pass."""
        return self.hybrid_pass and (self.state.iteration - 1) % self.hybrid_interval == 0

    def aligns_stages(self) -> bool:
        """Whether this iteration (1-based ``state.iteration``) computes the stage CKA term (never at CKA weight 0)."""
        if float(getattr(self.loss_function, "cka_weight", 1.0)) == 0.0:
            return False
        return (self.state.iteration - 1) % self.cka_interval == 0

    def branch_arguments(self, images: torch.Tensor, teacher_features: Any, targets: torch.Tensor) -> tuple:
        # with detached KD targets only the labelled items' hybrid logits need gradients (DRDBranches)
        hybrid_grad = labeled_mask(targets) if getattr(self.loss_function, "detach_teacher", False) else None
        return images, teacher_features, hybrid_grad, self.decodes_hybrid()

    def compute_loss(self, outputs: dict[str, Any], targets: torch.Tensor) -> dict[str, torch.Tensor]:
        labels = targets.long()
        labeled = labeled_mask(labels)
        aligned = "projected_stages" in outputs and self.aligns_stages()
        terms = self.loss_function(
            outputs["student_logits"],
            outputs.get("teacher_logits"),
            labels.clamp_min(0),  # hidden (-1) maps are masked out of the supervised terms by `labeled`
            labeled,
            outputs["student_stages"] if aligned else (),
            outputs["projected_stages"] if aligned else (),
            hybrid_scale=float(self.hybrid_interval) if "teacher_logits" in outputs else 1.0,
            cka_scale=float(self.cka_interval) if aligned else 1.0,
        )
        if "graph_anchor" in outputs:
            terms["loss"] = terms["loss"] + outputs["graph_anchor"]
        return terms
