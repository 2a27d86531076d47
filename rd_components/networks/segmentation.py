"""Deep Reprogramming Distillation (DRD) networks: a U-Net student with readable encoder stages,
and the per-stage projectors that map frozen teacher stage features onto them.

In DRD the student's decoder plays the shared classifier's role: it decodes the student's own
encoder stages (student logits) and, in a second pass, the projected teacher stages (hybrid
logits). The deployable model is the student alone (:meth:`SegmentationStudent.forward`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from monai.networks.layers import Conv
from monai.networks.nets import BasicUNet
from torch import nn

__all__ = ["SegmentationStudent", "DeepReprogrammer"]


class SegmentationStudent(nn.Module):
    """MONAI ``BasicUNet`` split into an encoder (five stages) and a decoder.

    Args:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        out_channels: classes, background included.
        features: ``BasicUNet`` widths ``(f0, f1, f2, f3, f4, f_out)``; stage ``s`` has ``f_s``
            channels at stride ``2**s``.
        kwargs: other ``BasicUNet`` arguments (``norm``, ``act``, ``dropout``, ``upsample``).

    Shapes:
        ``forward``: ``(B, in_channels, *spatial)`` -> logits ``(B, out_channels, *spatial)``;
        spatial sizes divisible by 16. :meth:`encode` returns ``[x0 .. x4]`` with ``x_s`` of
        shape ``(B, f_s, *spatial / 2**s)``; :meth:`decode` maps such a list to logits.
        ``distilled_stages`` are the indices (1..4, strides 2..16) that DRD aligns with the
        teacher's four stages.
    """

    distilled_stages = (1, 2, 3, 4)

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        features: Sequence[int] = (16, 16, 32, 64, 128, 16),
        **kwargs,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"SegmentationStudent: spatial_dims must be 2 or 3, got {spatial_dims}.")
        if out_channels < 2:
            raise ValueError(f"SegmentationStudent: out_channels counts the background too, so >= 2; got {out_channels}.")
        self.unet = BasicUNet(spatial_dims, in_channels, out_channels, features=tuple(features), **kwargs)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stage_channels = tuple(int(f) for f in features[:5])

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, C, *spatial)`` -> encoder stages ``[x0, x1, x2, x3, x4]`` (strides 1..16)."""
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"SegmentationStudent expects (B, {self.in_channels}, *spatial) with {self.spatial_dims} spatial dims, "
                f"got {x.shape}"
            )
        u = self.unet
        x0 = u.conv_0(x)
        x1 = u.down_1(x0)
        x2 = u.down_2(x1)
        x3 = u.down_3(x2)
        x4 = u.down_4(x3)
        return [x0, x1, x2, x3, x4]

    def decode(self, stages: list[torch.Tensor]) -> torch.Tensor:
        """Encoder stages ``[x0 .. x4]`` -> logits ``(B, out_channels, *spatial of x0)``."""
        u = self.unet
        u4 = u.upcat_4(stages[4], stages[3])
        u3 = u.upcat_3(u4, stages[2])
        u2 = u.upcat_2(u3, stages[1])
        u1 = u.upcat_1(u2, stages[0])
        return u.final_conv(u1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The deployable student: ``(B, C, *spatial)`` -> logits ``(B, out_channels, *spatial)``."""
        return self.decode(self.encode(x))


def resize_to(features: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``(B, C, *spatial)`` -> ``(B, C, *size)``, (bi/tri)linear; unchanged when already that size."""
    size = tuple(int(v) for v in size)
    if tuple(features.shape[2:]) == size:
        return features
    return F.interpolate(features, size=size, mode="bilinear" if features.ndim == 4 else "trilinear", align_corners=False)


class DeepReprogrammer(nn.Module):
    """One projector per stage, mapping frozen teacher stage maps to the student's stage shapes.

    Each projector is ``conv 1x1 (C_T -> C_S) + BatchNorm + ReLU, conv 3x3 (C_S -> C_S)``; the
    projected map is then resized (bilinear / trilinear) to the student stage's spatial size,
    since the teacher's strides (and its input upsampling) need not match the student's.
    Projecting before resizing keeps the cost at the teacher's (usually smaller) resolution.

    Args:
        spatial_dims: 2 or 3.
        teacher_channels: ``C_T`` of each teacher stage, shallow to deep.
        student_channels: ``C_S`` of the matching student stage, same length.

    Shapes:
        ``forward(teacher_stages, sizes)``: a list of ``(B, C_T[s], *t_s)`` and the student's
        stage sizes -> a list of ``(B, C_S[s], *sizes[s])``.
    """

    def __init__(self, spatial_dims: int, teacher_channels: Sequence[int], student_channels: Sequence[int]) -> None:
        super().__init__()
        if len(teacher_channels) != len(student_channels) or not teacher_channels:
            raise ValueError(
                f"DeepReprogrammer: one student stage per teacher stage, got {len(teacher_channels)} teacher and "
                f"{len(student_channels)} student stages."
            )
        self.spatial_dims = spatial_dims
        self.teacher_channels = tuple(int(c) for c in teacher_channels)
        self.student_channels = tuple(int(c) for c in student_channels)
        self.projectors = nn.ModuleList(
            nn.Sequential(
                Convolution(spatial_dims, ct, cs, kernel_size=1, bias=False, norm="batch", act="relu"),
                Conv[Conv.CONV, spatial_dims](cs, cs, kernel_size=3, padding=1),
            )
            for ct, cs in zip(self.teacher_channels, self.student_channels)
        )

    def forward(self, teacher_stages: Sequence[torch.Tensor], sizes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Project and resize every teacher stage (see the class docstring for shapes)."""
        if len(teacher_stages) != len(self.projectors) or len(sizes) != len(self.projectors):
            raise ValueError(
                f"DeepReprogrammer expects {len(self.projectors)} teacher stages and sizes, got "
                f"{len(teacher_stages)} and {len(sizes)}."
            )
        out = []
        for s, (features, projector, size) in enumerate(zip(teacher_stages, self.projectors, sizes)):
            if features.ndim != self.spatial_dims + 2 or features.shape[1] != self.teacher_channels[s]:
                raise ValueError(
                    f"DeepReprogrammer stage {s}: expected (B, {self.teacher_channels[s]}, *spatial) with "
                    f"{self.spatial_dims} spatial dims, got {tuple(features.shape)}"
                )
            out.append(resize_to(projector(features), size))
        return out


class StageResizer(nn.Module):
    """The teacher's stage maps resized to the student's stage sizes, channels untouched: no
    parameters, for the CKA-only baseline (CKA compares maps of any widths, so nothing needs
    learning; the maps cannot be decoded by the student's decoder).

    Args:
        spatial_dims: 2 or 3.

    Shapes:
        ``forward(teacher_stages, sizes)``: a list of ``(B, C_T[s], *t_s)`` and the student's
        stage sizes -> a list of ``(B, C_T[s], *sizes[s])``.
    """

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"StageResizer: spatial_dims must be 2 or 3, got {spatial_dims}")
        self.spatial_dims = spatial_dims

    def forward(self, teacher_stages: Sequence[torch.Tensor], sizes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
        """Resize every teacher stage (see the class docstring for shapes)."""
        if len(teacher_stages) != len(sizes):
            raise ValueError(f"StageResizer: {len(teacher_stages)} teacher stages but {len(sizes)} sizes.")
        out = []
        for s, (features, size) in enumerate(zip(teacher_stages, sizes)):
            if features.ndim != self.spatial_dims + 2:
                raise ValueError(f"StageResizer stage {s}: expected (B, C, *spatial) with {self.spatial_dims} spatial "
                                 f"dims, got {tuple(features.shape)}")
            out.append(resize_to(features, size))
        return out
