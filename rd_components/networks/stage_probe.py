"""A per-voxel linear probe on a frozen teacher's stage maps: the segmentation reference row.

It says how much the teacher's dense features know about the labels on their own: a task where
the probe is no better than the student trained alone is one where DRD has little to distil.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.layers import Conv
from torch import nn

__all__ = ["StageProbe", "StageProbeSegmenter"]


class StageProbe(nn.Module):
    """Linear in the standardised stage maps: ``logits = b + sum_s up(W_s . (x_s - m_s) / d_s)``.

    A 1x1 convolution per stage, then linear interpolation to the output size. Both are linear
    and commute, so this is a linear classifier of each voxel's concatenated, interpolated stage
    features, computed at the stages' own (coarse) resolution.

    Args:
        spatial_dims: 2 or 3.
        stage_channels: ``C_s`` of each stage map, shallow to deep.
        num_classes: ``K``, background included.

    Shapes:
        ``stages`` a list of ``(B, C_s, *spatial_s)``, ``size`` the output's spatial size ->
        logits ``(B, K, *size)``.
    """

    #: read by :class:`~rd_components.engines.DRDBranches`: this head turns stage maps into logits itself
    gives_logits = True

    def __init__(self, spatial_dims: int, stage_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"StageProbe: spatial_dims must be 2 or 3, got {spatial_dims}.")
        channels = [int(c) for c in stage_channels]
        self.spatial_dims = spatial_dims
        self.heads = nn.ModuleList(Conv[Conv.CONV, spatial_dims](c, num_classes, 1, bias=False) for c in channels)
        self.bias = nn.Parameter(torch.zeros(num_classes))
        for s, c in enumerate(channels):  # standardisation, set from the training features by the fit
            self.register_buffer(f"mean_{s}", torch.zeros(c))
            self.register_buffer(f"std_{s}", torch.ones(c))

    def standardise(self, stages: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Each stage map ``(B, C_s, *spatial_s)`` minus its channel mean, over its channel std."""
        if len(stages) != len(self.heads):
            raise ValueError(f"StageProbe: {len(self.heads)} stage heads but {len(stages)} stage maps.")
        shape = (1, -1) + (1,) * self.spatial_dims
        return [(x.float() - getattr(self, f"mean_{s}").view(shape)) / getattr(self, f"std_{s}").view(shape)
                for s, x in enumerate(stages)]

    def teacher_logits(self, stages: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """The probe's logits ``(B, K, *size)`` as a segmentation trainer's KD targets (no gradient to a frozen probe)."""
        return self(stages, size)

    def forward(self, stages: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        mode = "bilinear" if self.spatial_dims == 2 else "trilinear"
        logits = sum(F.interpolate(head(x), size=tuple(int(v) for v in size), mode=mode, align_corners=False)
                     for head, x in zip(self.heads, self.standardise(stages)))
        return logits + self.bias.view((1, -1) + (1,) * self.spatial_dims)


class StageProbeSegmenter(nn.Module):
    """The frozen teacher and a fitted :class:`StageProbe`, as one segmentation network.

    Evaluated like a student (sliding windows over whole images). The teacher is held outside
    the module tree, so ``state_dict`` is the probe's only: its checkpoint stays small and the
    teacher's weights come from the registry, as in training.

    Shapes:
        ``(B, C, *spatial)`` -> logits ``(B, K, *spatial)``.
    """

    def __init__(self, teacher: nn.Module, probe: StageProbe) -> None:
        super().__init__()
        self._teacher = (teacher,)  # a tuple: not a submodule, so not in state_dict
        self.probe = probe

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher whose ``stage_features`` the probe reads."""
        return self._teacher[0]

    def _apply(self, fn, *args, **kwargs):  # noqa: ANN001, ANN202 - nn.Module's hook: .to(device) moves the teacher too
        self.teacher._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.teacher.eval()  # frozen: outside the module tree, so eval() of this module does not reach it
        with torch.no_grad():
            stages = self.teacher.stage_features(images)
        return self.probe(stages, images.shape[2:])
