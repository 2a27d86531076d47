"""The classifier shared by the reprogrammed teacher branch and the student."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["SharedClassifier"]


class SharedClassifier(nn.Module):
    """``Linear(d, num_classes)`` applied to both reprogrammed teacher and student features.

    Sharing it forces the two feature spaces to agree on what each direction means: the
    teacher branch trains the classifier, the student has to produce features it can read.

    Args:
        in_features: feature width ``d``.
        num_classes: number of classes ``C``.
        dropout: dropout on the features before the linear layer (training only).

    Shapes:
        input ``(B, d)``; output logits ``(B, C)``.
    """

    def __init__(self, in_features: int, num_classes: int, dropout: float = 0.0) -> None:
        super().__init__()
        if in_features < 1 or num_classes < 2:
            raise ValueError(f"SharedClassifier: need in_features >= 1 and num_classes >= 2, got {in_features}, {num_classes}.")
        self.in_features = in_features
        self.num_classes = num_classes
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes)`` from features ``(B, in_features)``."""
        if features.ndim != 2 or features.shape[1] != self.in_features:
            raise ValueError(f"SharedClassifier expects features (B, {self.in_features}), got {features.shape}.")
        return self.linear(self.dropout(features))
