"""The trainable part of RD as one module, so DDP sees a single forward per step."""

from __future__ import annotations

import torch
from torch import nn

from ..networks.deployable import DeployableStudent

__all__ = ["RDBranches", "teacher_branch"]


def teacher_branch(head: nn.Module, classifier: nn.Module, teacher_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Teacher-branch features and logits: ``(z_T (B, d'), logits (B, K) or None)``.

    A head returning a tuple carries its own (frozen) classifier, e.g. a linear probe; a head
    with ``uses_shared_classifier = False`` gives features only; otherwise (the reprogrammer)
    the shared classifier reads the features.
    """
    out = head(teacher_features)
    if isinstance(out, tuple):
        return out[0], out[1]
    if getattr(head, "uses_shared_classifier", True):
        return out, classifier(out)
    return out, None


class RDBranches(nn.Module):
    """Student branch and reprogrammed-teacher branch sharing one classifier.

    Args:
        student: the deployable student ``S`` + shared classifier ``g``.
        reprogrammer: the teacher-branch head: RD's ``phi`` mapping teacher features to
            ``(B, d)``, or a baseline head (see :func:`teacher_branch`); ``None`` for methods
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
            z_t, logits_t = teacher_branch(self.reprogrammer, self.student.classifier, teacher_features)
            out["teacher_features"] = z_t
            if logits_t is not None:
                out["teacher_logits"] = logits_t
        return out
