"""Teacher-branch heads for the baselines: frozen pooled features and a frozen linear probe.

RD's teacher branch is the trainable :class:`~rd_components.networks.Reprogrammer`, read by the
shared classifier. The KD baselines use a frozen teacher instead: :class:`PooledFeatures` gives
its globally pooled features (hint and CKA-only distillation) and :class:`LinearProbe` adds a
frozen linear classifier fitted beforehand (vanilla KD from the linearly probed teacher).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["PooledFeatures", "LinearProbe", "SoftTargets", "FlippedViewTeacher"]


def _pool(features: torch.Tensor) -> torch.Tensor:
    return features if features.ndim == 2 else torch.flatten(features, 2).mean(dim=2)


class PooledFeatures(nn.Module):
    """Global average pooling of teacher features; no parameters, no classifier.

    ``uses_shared_classifier = False`` tells the trainer not to read these features with the
    shared classifier (their width is the teacher's, not the student's).

    Shapes:
        ``(B, C_T[, *spatial])`` -> ``(B, C_T)``.
    """

    uses_shared_classifier = False

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, C_T)``."""
        return _pool(features)


class LinearProbe(nn.Module):
    """Frozen linear classifier on standardised, pooled teacher features.

    Args:
        mean: per-channel mean ``(C_T,)`` of the training features.
        std: per-channel standard deviation ``(C_T,)``.
        weight: ``(K, C_T)`` classifier weights; bias ``(K,)``.

    Shapes:
        ``(B, C_T[, *spatial])`` -> ``(pooled features (B, C_T), logits (B, K))``.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))
        self.linear = nn.Linear(weight.shape[1], weight.shape[0])
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.requires_grad_(False)

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Probe logits ``(B, K)``."""
        return self.linear((_pool(features) - self.mean) / self.std)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pooled features (B, C_T), logits (B, K))``."""
        return _pool(features), self.logits(features)


class SoftTargets(nn.Module):
    """Teacher-branch head for a teacher that already gives logits (the mean-teacher baseline).

    ``gives_logits = True`` tells :class:`~rd_components.engines.DRDBranches` that the
    teacher's output is the target itself (dense logits, :meth:`teacher_logits`): nothing to
    project or decode.

    Shapes:
        ``(B, K[, *spatial])`` logits -> ``(features, logits)``, the same tensor twice.
    """

    gives_logits = True

    def forward(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, logits)``: the KD term reads the second."""
        return logits, logits

    def teacher_logits(self, stages: list[torch.Tensor], size: tuple[int, ...]) -> torch.Tensor:
        """Dense targets for a segmentation trainer: the teacher's last "stage" ``(B, K, *size)`` as it is."""
        return stages[-1]


class FlippedViewTeacher(nn.Module):
    """A network (e.g. the EMA copy of the student) run on the other flip view of each image.

    The teacher-free semi-supervised baseline (mean teacher, Tarvainen and Valpola 2017) asks
    the student to agree with an exponential moving average of itself on a differently
    augmented input; with the bundles' flip augmentation the other view is the mirrored image.

    Args:
        model: ``(B, C, *spatial) -> (B, K)`` logits (``dense``: ``(B, K, *spatial)``), e.g.
            ``ignite.handlers.EMAHandler(...).ema_model``.
        flip_axes: spatial axes flipped (0: the first spatial axis, left-right in the bundles).
        dense: the model segments: its output is flipped back, so that each voxel's target is
            the prediction for that voxel seen mirrored (flip consistency). :meth:`stage_features`
            then gives that map as the one "stage" a segmentation trainer reads.

    Shapes:
        ``(B, C, *spatial)`` -> ``(B, K)`` (``dense``: ``(B, K, *spatial)``).
    """

    def __init__(self, model: nn.Module, flip_axes: tuple[int, ...] = (0,), dense: bool = False) -> None:
        super().__init__()
        self.model = model
        self.flip_axes = tuple(2 + int(a) for a in flip_axes)
        self.dense = bool(dense)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of the flipped images, ``(B, K)``, or ``(B, K, *spatial)`` flipped back (``dense``)."""
        images = images.as_tensor() if hasattr(images, "as_tensor") else images  # MONAI MetaTensor -> plain
        if not self.flip_axes:
            return self.model(images)
        logits = self.model(torch.flip(images, self.flip_axes))
        return torch.flip(logits, self.flip_axes) if self.dense else logits

    def stage_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """``[(B, K, *spatial)]``: the dense logits, for a source that reads stage maps (``dense`` only)."""
        if not self.dense:
            raise ValueError("FlippedViewTeacher: stage_features needs dense=True (a segmentation model)")
        return [self(images)]
