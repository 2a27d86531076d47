"""Classic knowledge-distillation losses: Hinton's logit KD and FitNet's hint regression."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from monai.networks.layers.factories import Conv
from torch import nn

from rd_components.losses.cka import autocast_disabled

__all__ = ["KDLoss", "HintLoss"]

_KD_REDUCTIONS = ("batchmean", "mean", "sum", "none")


class KDLoss(nn.Module):
    """Hinton et al. (2015) distillation: ``tau^2 * KL(softmax(t / tau) || softmax(s / tau))``.

    The ``tau^2`` factor keeps the gradient scale comparable to a cross-entropy term when the
    temperature changes. Computed in float32 (autocast disabled) whatever the logits' dtype.
    Gradients reach the teacher logits too unless the caller detaches them.

    Args:
        temperature: softening temperature ``tau > 0``.
        reduction: ``"batchmean"`` (default; mean over samples of the per-sample KL, the
            mathematically correct KL), ``"mean"`` (same as ``"batchmean"``, unlike
            ``torch.nn.KLDivLoss`` which would also divide by the number of classes),
            ``"sum"``, or ``"none"`` (per-sample KL, shape ``(B, *spatial)``).
    """

    def __init__(self, temperature: float = 4.0, reduction: str = "batchmean") -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"KDLoss: temperature must be > 0, got {temperature}.")
        if reduction not in _KD_REDUCTIONS:
            raise ValueError(f"KDLoss: reduction must be one of {_KD_REDUCTIONS}, got {reduction!r}.")
        self.temperature = float(temperature)
        self.reduction = reduction

    def forward(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """Args:
            student_logits: ``(B, C)``, or ``(B, C, *spatial)`` for dense predictions (the KL
                is then per location and averaged over locations too).
            teacher_logits: same shape as ``student_logits``.

        Returns:
            0-dim float32 tensor, or ``(B, *spatial)`` with ``reduction="none"``.
        """
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"KDLoss: student and teacher logits must have the same shape, got "
                f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}."
            )
        if student_logits.ndim < 2:
            raise ValueError(f"KDLoss: logits must be (B, C, ...), got shape {tuple(student_logits.shape)}.")
        tau = self.temperature
        with autocast_disabled(student_logits.device.type):
            log_p_s = F.log_softmax(student_logits.float() / tau, dim=1)
            log_p_t = F.log_softmax(teacher_logits.float() / tau, dim=1)
            # log_target: the teacher side stays a log-probability, so a probability that
            # underflows to 0 still has a finite log (0 * finite = 0, not 0 * log(0) = NaN)
            kl = F.kl_div(log_p_s, log_p_t, reduction="none", log_target=True).sum(dim=1) * tau**2
        if self.reduction == "none":
            return kl
        if self.reduction == "sum":
            return kl.sum()
        return kl.mean()

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, reduction={self.reduction!r}"


class HintLoss(nn.Module):
    """FitNets (Romero et al., 2015) hint loss: MSE between projected student and teacher features.

    A learned regressor maps student features to the teacher's width: ``nn.Linear`` for
    vectors ``(B, d_s) -> (B, d_t)``, or, when ``spatial_dims`` is given, a convolution of
    kernel size 1 for maps ``(B, d_s, *spatial) -> (B, d_t, *spatial)`` (spatial sizes must
    already match). The regressor has parameters: add ``hint_loss.parameters()`` to the
    student's optimizer.

    Args:
        student_features: student feature width (channels) ``d_s``.
        teacher_features: teacher feature width (channels) ``d_t``.
        spatial_dims: ``None`` for vectors, 1, 2 or 3 for feature maps.
        detach_teacher: treat teacher features as a fixed target (no gradient to them).
    """

    def __init__(
        self,
        student_features: int,
        teacher_features: int,
        spatial_dims: Optional[int] = None,
        detach_teacher: bool = True,
    ) -> None:
        super().__init__()
        if student_features < 1 or teacher_features < 1:
            raise ValueError(
                f"HintLoss: feature widths must be >= 1, got {student_features} and {teacher_features}."
            )
        if spatial_dims not in (None, 1, 2, 3):
            raise ValueError(f"HintLoss: spatial_dims must be None, 1, 2 or 3, got {spatial_dims}.")
        self.spatial_dims = spatial_dims
        self.detach_teacher = detach_teacher
        if spatial_dims is None:
            self.regressor: nn.Module = nn.Linear(student_features, teacher_features)
        else:
            self.regressor = Conv[Conv.CONV, spatial_dims](student_features, teacher_features, kernel_size=1)

    def forward(self, student_features: torch.Tensor, teacher_features: torch.Tensor) -> torch.Tensor:
        """Args:
            student_features: ``(B, d_s)``, or ``(B, d_s, *spatial)`` with ``spatial_dims``.
            teacher_features: ``(B, d_t)``, or ``(B, d_t, *spatial)`` with ``spatial_dims``.

        Returns:
            0-dim float32 tensor: mean squared error over all elements.
        """
        expected_ndim = 2 if self.spatial_dims is None else 2 + self.spatial_dims
        for name, t in (("student", student_features), ("teacher", teacher_features)):
            if t.ndim != expected_ndim:
                raise ValueError(
                    f"HintLoss: {name} features must have {expected_ndim} dims "
                    f"(spatial_dims={self.spatial_dims}), got shape {tuple(t.shape)}."
                )
        projected = self.regressor(student_features)
        if projected.shape != teacher_features.shape:
            raise ValueError(
                f"HintLoss: projected student features {tuple(projected.shape)} do not match "
                f"teacher features {tuple(teacher_features.shape)}."
            )
        target = teacher_features.detach() if self.detach_teacher else teacher_features
        with autocast_disabled(projected.device.type):
            return F.mse_loss(projected.float(), target.float())
