"""The Reprogramming Distillation objective, every term reported separately."""

from __future__ import annotations

from typing import Callable, Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from rd_components.losses.cka import CKALoss, autocast_disabled
from rd_components.losses.distillation import HintLoss, KDLoss

#: label of an item without a label (mirrors ``rd_components.data.UNLABELED``; losses sit below data)
UNLABELED = -1

__all__ = ["RDLoss"]

#: the terms that need no label, scaled by ``RDLoss.distill_scale``
DISTILL_TERMS = ("kd", "cka", "hint")


class RDLoss(nn.Module):
    """Reprogramming Distillation loss (Zhou et al., MICCAI 2024), returning a dict of terms.

    ``L = w_ce_T * CE(g(z_T), y) + w_ce_S * CE(g(z_S), y)
    + w_kd * tau^2 * KL(softmax(g(z_T) / tau) || softmax(g(z_S) / tau))
    + w_cka * (1 - CKA(z_T, z_S))``

    where ``z_T`` are the reprogrammed teacher features, ``z_S`` the student features and
    ``g`` the shared classifier. The baselines are the same loss with other weights, e.g.
    student alone: only ``ce_student_weight=1``; CKA-only distillation: ``ce_student`` and
    ``cka``; RD without KD: ``kd_weight=0``; vanilla KD from a fixed teacher:
    ``ce_teacher_weight=0, cka_weight=0``.

    Args:
        ce_teacher_weight: weight of the cross-entropy on the teacher branch's logits (this
            term trains the reprogrammer and the shared classifier; never detached).
        ce_student_weight: weight of the cross-entropy on the student's logits.
        kd_weight: weight of the Hinton KD term (``tau^2`` is included in the term).
        cka_weight: weight of ``1 - CKA``.
        hint_weight: weight of the FitNet hint term (MSE between projected student features and
            teacher features); 0 by default, RD itself does not use it.
        hint_features: ``(student width, teacher width)`` of the hint projection.
        temperature: KD temperature ``tau``.
        detach_teacher: detach teacher logits and features in the KD and CKA terms, so that
            the distillation terms only move the student.
        cka_kernel: ``"linear"`` or ``"rbf"``.
        cka_unbiased: unbiased HSIC (batch of at least 4; otherwise at least 2).
        label_smoothing: label smoothing of both cross-entropies.

    Labels may be ``-1`` (unlabelled item): the cross-entropy terms average over the labelled
    items of the batch only, while KD, CKA and hint use every item. This is how RD learns from
    unlabelled images.

    ``distill_scale`` (an attribute, default 1) multiplies the KD, CKA and hint weights; a
    :class:`~rd_components.handlers.DistillationSchedule` sets it per iteration (warm-up).

    Terms with weight 0 are computed without gradient and still reported, so a baseline run
    logs the same quantities as RD. Inputs that only zero-weight terms need may be ``None``,
    and a batch too small for CKA is tolerated when ``cka_weight == 0``; a term that cannot be
    computed for either reason is reported as ``0.0``, so it never turns a run's logs into NaN.
    """

    def __init__(
        self,
        ce_teacher_weight: float = 1.0,
        ce_student_weight: float = 1.0,
        kd_weight: float = 1.0,
        cka_weight: float = 1.0,
        temperature: float = 4.0,
        detach_teacher: bool = True,
        cka_kernel: str = "linear",
        cka_unbiased: bool = False,
        label_smoothing: float = 0.0,
        hint_weight: float = 0.0,
        hint_features: Optional[tuple] = None,
    ) -> None:
        super().__init__()
        self.weights: Dict[str, float] = {
            "ce_teacher": float(ce_teacher_weight),
            "ce_student": float(ce_student_weight),
            "kd": float(kd_weight),
            "cka": float(cka_weight),
            "hint": float(hint_weight),
        }
        for name, w in self.weights.items():
            if not w >= 0:
                raise ValueError(f"RDLoss: {name}_weight must be >= 0, got {w}.")
        if not any(self.weights.values()):
            raise ValueError("RDLoss: at least one loss weight must be > 0.")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"RDLoss: label_smoothing must be in [0, 1), got {label_smoothing}.")
        self.detach_teacher = detach_teacher
        self.distill_scale = 1.0
        self.label_smoothing = float(label_smoothing)
        self.kd_loss = KDLoss(temperature=temperature, reduction="batchmean")
        self.cka_loss = CKALoss(kernel=cka_kernel, unbiased=cka_unbiased)
        # FitNet hint: a learned projection of student features onto the teacher's; its
        # parameters must join the optimizer (``list(loss.parameters())``)
        self.hint_loss: Optional[HintLoss] = None
        if hint_weight > 0:
            if hint_features is None:
                raise ValueError("RDLoss: hint_weight > 0 needs hint_features=(student width, teacher width).")
            self.hint_loss = HintLoss(int(hint_features[0]), int(hint_features[1]), detach_teacher=detach_teacher)

    def forward(
        self,
        student_logits: Optional[torch.Tensor],
        teacher_logits: Optional[torch.Tensor],
        student_features: Optional[torch.Tensor],
        teacher_features: Optional[torch.Tensor],
        labels: Optional[torch.Tensor],
    ) -> Dict[str, torch.Tensor]:
        """Args:
            student_logits: ``g(z_S)``, ``(B, C)``.
            teacher_logits: ``g(z_T)``, ``(B, C)``.
            student_features: ``z_S``, ``(B, d)`` (or ``(B, ...)``, flattened by CKA).
            teacher_features: ``z_T``, ``(B, d')``; widths may differ from the student's.
            labels: class indices ``(B,)`` or ``(B, 1)`` (as MONAI loaders give), integer or
                integral float; or class probabilities ``(B, C)`` (e.g. one-hot).

        Returns:
            dict with 0-dim float32 tensors: ``loss`` (the weighted sum, differentiable) and
            the unweighted terms ``ce_teacher``, ``ce_student``, ``kd``, ``cka``, ``hint``. The
            engines log every key of this dict (``state.output`` per step, ``train_<term>`` per
            epoch), so a subclass that returns one more term has it logged too.
        """
        t_logits_d = _maybe_detach(teacher_logits, self.detach_teacher)
        t_feats_d = _maybe_detach(teacher_features, self.detach_teacher)
        # each term once: how to compute it and the inputs it needs; the engines report whatever
        # names this dict holds, so a new term is added here and nowhere else
        terms: Dict[str, tuple[Callable[[], torch.Tensor], tuple]] = {
            "ce_teacher": (lambda: self._cross_entropy(teacher_logits, labels), (teacher_logits, labels)),
            "ce_student": (lambda: self._cross_entropy(student_logits, labels), (student_logits, labels)),
            "kd": (lambda: self.kd_loss(student_logits, t_logits_d), (student_logits, teacher_logits)),
            "cka": (lambda: self.cka_loss(t_feats_d, student_features), (student_features, teacher_features)),
            "hint": (lambda: self.hint_loss(student_features, teacher_features),
                     (student_features, teacher_features, self.hint_loss)),
        }
        out: Dict[str, torch.Tensor] = {}
        total: Optional[torch.Tensor] = None
        for name, (term_fn, needs) in terms.items():
            weight = self.weights[name] * (self.distill_scale if name in DISTILL_TERMS else 1.0)
            missing = [i for i, t in enumerate(needs) if t is None]
            if weight > 0:
                if missing:
                    raise ValueError(f"RDLoss: term {name!r} has weight {weight} but some of its inputs are None.")
                value = term_fn()
                total = weight * value if total is None else total + weight * value
                out[name] = value
                continue
            if missing or (name == "cka" and student_features.shape[0] < self.cka_loss.min_batch_size):
                out[name] = _zero_like(student_logits, student_features, teacher_logits, teacher_features)
                continue
            with torch.no_grad():
                out[name] = term_fn()
        if total is None:  # only distillation terms, scaled to 0 at the start of a warm-up
            total = 0.0 * student_logits.float().sum()
        out["loss"] = total
        return out

    def _cross_entropy(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Cross-entropy in float32 of logits ``(B, C)`` against labels (see :meth:`forward`).

        Items labelled ``UNLABELED`` (-1) are skipped: the mean runs over the labelled items of
        the batch, and a batch without any gives 0 (with a graph, so backward still works).
        """
        target = _as_target(labels, logits)
        with autocast_disabled(logits.device.type):
            if target.ndim == 2:  # class probabilities
                return F.cross_entropy(logits.float(), target, label_smoothing=self.label_smoothing)
            total = F.cross_entropy(logits.float(), target, ignore_index=UNLABELED, reduction="sum",
                                    label_smoothing=self.label_smoothing)
            return total / (target != UNLABELED).sum().clamp_min(1)

    def extra_repr(self) -> str:
        weights = ", ".join(f"{k}_weight={v}" for k, v in self.weights.items())
        return f"{weights}, detach_teacher={self.detach_teacher}, label_smoothing={self.label_smoothing}"


def _maybe_detach(t: Optional[torch.Tensor], detach: bool) -> Optional[torch.Tensor]:
    return t.detach() if (detach and t is not None) else t


def _zero_like(*candidates: Optional[torch.Tensor]) -> torch.Tensor:
    device = next((t.device for t in candidates if t is not None), None)
    return torch.zeros((), dtype=torch.float32, device=device)


def _as_target(labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Turn MONAI-style labels into what ``F.cross_entropy`` takes.

    ``(B,)`` or ``(B, 1)`` class indices become ``(B,)`` long; a float ``(B, C)`` matching the
    logits (C > 1) is taken as class probabilities.
    """
    labels = labels.to(logits.device)
    if labels.is_floating_point() and labels.ndim == 2 and labels.shape == logits.shape and logits.shape[1] > 1:
        return labels.float()
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1 or labels.shape[0] != logits.shape[0]:
        raise ValueError(
            f"RDLoss: labels must be (B,) or (B, 1) class indices or (B, C) probabilities for logits "
            f"{tuple(logits.shape)}, got shape {tuple(labels.shape)}."
        )
    if labels.is_floating_point():
        if not torch.equal(labels, labels.round()):
            raise ValueError("RDLoss: float class-index labels must hold integral values.")
    return labels.long()
