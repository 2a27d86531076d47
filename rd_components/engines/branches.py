"""The trainable part of RD as one module, so DDP sees a single forward per step."""

from __future__ import annotations

import torch
from torch import nn

from ..networks.deployable import DeployableStudent

__all__ = ["RDBranches"]


class RDBranches(nn.Module):
    """Student branch and reprogrammed-teacher branch sharing one classifier.

    Args:
        student: the deployable student ``S`` + shared classifier ``g``.
        reprogrammer: ``phi`` mapping teacher features to ``(B, d)``; ``None`` for methods
            that use no teacher branch (plain student training).

    Shapes:
        ``images (B, C_in, *spatial)``, ``teacher_features (B, C_T[, *spatial'])`` ->
        dict with ``student_logits (B, K)``, ``student_features (B, d)`` and, when a teacher
        branch exists, ``teacher_logits (B, K)``, ``teacher_features (B, d)``.
    """

    def __init__(self, student: DeployableStudent, reprogrammer: nn.Module | None) -> None:
        super().__init__()
        self.student = student
        self.reprogrammer = reprogrammer

    def forward(self, images: torch.Tensor, teacher_features: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        z_s = self.student.features(images)
        out = {"student_features": z_s, "student_logits": self.student.classifier(z_s)}
        if self.reprogrammer is not None and teacher_features is not None:
            z_t = self.reprogrammer(teacher_features)
            out["teacher_features"] = z_t
            out["teacher_logits"] = self.student.classifier(z_t)
        return out
