"""Deep Reprogramming Distillation loss for segmentation: supervised terms on the student and
hybrid logits, per-voxel KD from the hybrid to the student, and CKA per encoder stage."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from .cka import CKALoss
from .distillation import KDLoss

__all__ = ["DRDLoss", "grid_samples"]


def grid_samples(features: torch.Tensor, grid: int) -> torch.Tensor:
    """Dense map ``(B, C, *spatial)`` -> ``(B * grid**d, C)``: average-pooled to a ``grid`` per axis,
    each cell of each image one sample.

    This is the choice DRD needs for CKA on dense maps: CKA compares the similarity structure of
    a set of samples, and with locations as samples a batch of 8 images gives 8 * 16 samples
    (2D, grid 4) instead of 8, while pooling keeps the Gram matrices small whatever the map
    resolution. Axes shorter than ``grid`` keep their size.
    """
    size = [min(grid, int(s)) for s in features.shape[2:]]
    pooled = F.adaptive_avg_pool2d(features, size) if features.ndim == 4 else F.adaptive_avg_pool3d(features, size)
    return pooled.flatten(2).transpose(1, 2).reshape(-1, features.shape[1])


class DRDLoss(nn.Module):
    """``L = sup(S) + a * sup(H) + b * KD(S <- H) + c * sum_s (1 - CKA(P_s, S_s))``.

    ``S`` are the student's logits, ``H`` the hybrid logits (the student's decoder on the
    projected teacher stages), ``P_s`` / ``S_s`` the projected teacher and student maps of stage
    ``s``. ``sup`` is MONAI's Dice + cross-entropy on the *labelled* items of the batch; KD and
    CKA use every item (unlabelled ones included). ``a`` and ``b`` are ``hybrid_weight`` and
    ``kd_weight`` times ``distill_scale``, which a
    :class:`~rd_components.handlers.DistillationSchedule` in ``decay`` mode lowers linearly
    from 1 to 0 over training, as DRD does; the CKA weight ``c`` stays constant unless
    ``schedule_cka`` makes it follow ``distill_scale`` too. ``b`` is also multiplied by
    ``kd_gate`` (1 unless a :class:`~rd_components.handlers.KDGate` closes it while the student
    is ahead of the teacher branch on validation).

    Args:
        hybrid_weight: weight of the hybrid branch's supervised term.
        kd_weight: weight of the per-voxel KD term.
        cka_weight: weight of the summed stage CKA terms.
        temperature: KD temperature.
        cka_grid: cells per axis that each stage map is pooled to before CKA (see :func:`grid_samples`).
        detach_teacher: hybrid logits and projected maps enter KD / CKA detached, so those terms
            move the student only (the hybrid branch learns from its supervised term).
        cka_unbiased: unbiased HSIC estimator in CKA.
        cka_stages: positions in the stage lists that the CKA term aligns (``None``: all). The
            hybrid pass still uses every projected stage; e.g. ``(0, 1)`` aligns only the two
            finest distilled stages.
        schedule_cka: the CKA weight follows ``distill_scale`` as the hybrid and KD weights do
            (with ``decay``: the stage alignment guides early training and is gone at the end).

    Shapes:
        ``student_logits``, ``hybrid_logits``: ``(B, K, *spatial)``; ``labels``: ``(B, 1, *spatial)``
        class indices; ``labeled``: ``(B,)`` bool (``None``: all labelled); stage lists of
        ``(B, C_s, *spatial_s)`` with matching shapes per stage. Returns a dict of 0-dim
        tensors: ``loss`` and each term ``sup_student``, ``sup_hybrid``, ``kd``, ``cka``; the engines
        log every key of that dict, so a term is named here and nowhere else.
    """

    def __init__(
        self,
        hybrid_weight: float = 1.0,
        kd_weight: float = 1.0,
        cka_weight: float = 1.0,
        temperature: float = 1.0,
        cka_grid: int = 4,
        detach_teacher: bool = True,
        cka_unbiased: bool = False,
        cka_stages: Sequence[int] | None = None,
        schedule_cka: bool = False,
    ) -> None:
        super().__init__()
        if min(hybrid_weight, kd_weight, cka_weight) < 0:
            raise ValueError("DRDLoss: weights must be >= 0.")
        if cka_grid < 1:
            raise ValueError(f"DRDLoss: cka_grid must be >= 1, got {cka_grid}.")
        self.hybrid_weight, self.kd_weight, self.cka_weight = float(hybrid_weight), float(kd_weight), float(cka_weight)
        self.cka_grid = int(cka_grid)
        self.cka_stages = None if cka_stages is None else tuple(int(i) for i in cka_stages)
        if self.cka_stages is not None and (not self.cka_stages or min(self.cka_stages) < 0
                                            or len(set(self.cka_stages)) != len(self.cka_stages)):
            raise ValueError(f"DRDLoss: cka_stages must be distinct stage positions >= 0, got {cka_stages!r}.")
        self.schedule_cka = bool(schedule_cka)
        self.detach_teacher = bool(detach_teacher)
        self.distill_scale = 1.0  # set per iteration by DistillationSchedule
        self.kd_gate = 1.0  # set after each validation by KDGate, when one is attached
        self.supervised = DiceCELoss(to_onehot_y=True, softmax=True)
        self.kd = KDLoss(temperature)
        self.cka = CKALoss(unbiased=cka_unbiased)

    def _sup(self, logits: torch.Tensor, labels: torch.Tensor, labeled: torch.Tensor) -> torch.Tensor:
        if not bool(labeled.any()):
            return logits.sum() * 0.0  # a batch with no labelled item is fine: no supervised signal
        return self.supervised(logits[labeled], labels[labeled])

    def forward(
        self,
        student_logits: torch.Tensor,
        hybrid_logits: torch.Tensor | None,
        labels: torch.Tensor,
        labeled: torch.Tensor | None = None,
        student_stages: Sequence[torch.Tensor] = (),
        projected_stages: Sequence[torch.Tensor] = (),
        hybrid_scale: float = 1.0,
        cka_scale: float = 1.0,
    ) -> dict[str, torch.Tensor]:
        """The loss and its terms (see the class docstring for shapes).

        ``hybrid_scale`` multiplies the hybrid and KD weights of this call: a trainer that decodes
        the hybrid stages on one step in ``k`` passes ``k``, so that the two terms keep their
        weights on average over the steps (an unbiased estimate of the every-step loss's
        gradient; with an adaptive optimizer such as AdamW the trajectory still differs).
        ``cka_scale`` does the same for the CKA weight.
        """
        if labels.ndim != student_logits.ndim or labels.shape[1] != 1 or labels.shape[2:] != student_logits.shape[2:]:
            raise ValueError(
                f"DRDLoss: labels must be (B, 1, *spatial) class indices matching logits {tuple(student_logits.shape)}, "
                f"got {tuple(labels.shape)}"
            )
        if len(student_stages) != len(projected_stages):
            raise ValueError(f"DRDLoss: {len(student_stages)} student stages but {len(projected_stages)} projected ones.")
        if labeled is None:
            labeled = torch.ones(student_logits.shape[0], dtype=torch.bool, device=student_logits.device)
        labeled = labeled.to(student_logits.device).bool().reshape(-1)
        zero = student_logits.sum() * 0.0
        terms = {"sup_student": self._sup(student_logits, labels, labeled), "sup_hybrid": zero, "kd": zero, "cka": zero}
        if hybrid_logits is not None:
            terms["sup_hybrid"] = self._sup(hybrid_logits, labels, labeled)
            target = hybrid_logits.detach() if self.detach_teacher else hybrid_logits
            terms["kd"] = self.kd(student_logits, target)
        if student_stages and student_logits.shape[0] * self.cka_grid >= self.cka.min_batch_size:
            positions = range(len(student_stages)) if self.cka_stages is None else self.cka_stages
            if max(positions) >= len(student_stages):
                raise ValueError(f"DRDLoss: cka_stages {self.cka_stages} but only {len(student_stages)} stages.")
            stage_terms = []
            for s_map, p_map in ((student_stages[i], projected_stages[i]) for i in positions):
                if s_map.shape[0] != p_map.shape[0] or s_map.shape[2:] != p_map.shape[2:]:
                    raise ValueError(f"DRDLoss: stage maps {tuple(s_map.shape)} and {tuple(p_map.shape)} do not align.")
                p_map = p_map.detach() if self.detach_teacher else p_map
                stage_terms.append(self.cka(grid_samples(s_map, self.cka_grid), grid_samples(p_map, self.cka_grid)))
            terms["cka"] = torch.stack(stage_terms).sum()
        scale = self.distill_scale * float(hybrid_scale)
        cka_factor = float(cka_scale) * (self.distill_scale if self.schedule_cka else 1.0)
        terms["loss"] = (
            terms["sup_student"]
            + self.hybrid_weight * scale * terms["sup_hybrid"]
            + self.kd_weight * self.kd_gate * scale * terms["kd"]
            + self.cka_weight * cka_factor * terms["cka"]
        )
        return terms

    def extra_repr(self) -> str:
        return (f"hybrid_weight={self.hybrid_weight}, kd_weight={self.kd_weight}, cka_weight={self.cka_weight}, "
                f"cka_grid={self.cka_grid}, cka_stages={self.cka_stages}, schedule_cka={self.schedule_cka}, "
                f"detach_teacher={self.detach_teacher}")
