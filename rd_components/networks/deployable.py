"""The deployable model: student followed by the shared classifier, as one module."""

from __future__ import annotations

import torch
from torch import nn

from .classifier import SharedClassifier

__all__ = ["DeployableStudent"]


class DeployableStudent(nn.Module):
    """Student backbone ``S`` followed by the shared classifier ``g``: image in, logits out.

    This is what is checkpointed as ``model.pt``, scripted as ``model.ts``, exported to ONNX and
    registered in MLflow. It holds no teacher or reprogrammer, so it loads without them.

    Args:
        student: module mapping images ``(B, C_in, *spatial)`` to features ``(B, d)``.
        classifier: the shared ``Linear(d, num_classes)``.

    Shapes:
        input ``(B, C_in, *spatial)``; output logits ``(B, num_classes)``.
    """

    def __init__(self, student: nn.Module, classifier: SharedClassifier) -> None:
        super().__init__()
        self.student = student
        self.classifier = classifier

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """Penultimate student features ``(B, d)``."""
        return self.student(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)``."""
        return self.classifier(self.student(images))
