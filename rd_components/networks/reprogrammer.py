"""Reprogramming module: maps frozen foundation-model features to the student's feature space."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.blocks import Convolution
from monai.networks.layers import Conv
from torch import nn

__all__ = ["Reprogrammer"]


class Reprogrammer(nn.Module):
    """Residual block in the teacher's feature space, then global pooling and a projection.

    The last layer of the residual branch is zero-initialised, so at the start of training the
    block is the identity and the reprogrammed features are a linear projection of the pooled
    teacher features (a linear probe); training then bends the teacher space towards one that
    the shared classifier and the student can both use.

    Args:
        spatial_dims: 0 for vector teacher features ``(B, C)``, 2 or 3 for feature maps
            ``(B, C, H, W)`` / ``(B, C, D, H, W)``.
        in_channels: width ``C`` of the teacher features.
        out_features: width ``d`` of the student features (the shared classifier's input).
        hidden_channels: bottleneck width of the residual branch (default ``min(C, 64)``). The
            bottleneck is what makes RD's training cost close to the student's own: with 256
            channels the reprogrammer cost 1.5x the student's epoch time on a warm feature
            cache, with 64 about 1.2x (``scripts/benchmark.py``).
        num_blocks: number of residual blocks.
        dropout: dropout before the projection.
        feature_size: spatial size of the teacher's feature map, if known. Axes of size 1 then
            get kernel 1 instead of 3: the dropped taps would only ever multiply zero padding
            (the 3D teacher's 2048 x 1 x 1 x 2 map needs a 1x1x3 kernel: 9x fewer weights than
            3x3x3), so the function class is the same.
        pooling: how the map becomes a vector. ``"avg"``: global average pooling. ``"learned"``:
            a softmax-weighted mean with one learnable logit per position of the map (needs
            ``feature_size``), zero-initialised so that it starts as the average. It keeps
            *where* a feature fires, which global pooling throws away: a label that is a
            property of the patch centre (tissue at the centre voxel) is not a property of
            the whole patch.

    Shapes:
        input ``(B, C)`` or ``(B, C, *spatial)``; output ``(B, out_features)``.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_features: int,
        hidden_channels: int | None = None,
        num_blocks: int = 1,
        dropout: float = 0.0,
        feature_size: Sequence[int] | None = None,
        pooling: str = "avg",
    ) -> None:
        super().__init__()
        if spatial_dims not in (0, 1, 2, 3):
            raise ValueError(f"Reprogrammer: spatial_dims must be 0 (vectors), 1, 2 or 3, got {spatial_dims}.")
        if in_channels < 1 or out_features < 1:
            raise ValueError(f"Reprogrammer: in_channels and out_features must be positive, got {in_channels}, {out_features}.")
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.out_features = out_features
        hidden = hidden_channels or min(in_channels, 64)
        if feature_size is not None and len(feature_size) != spatial_dims:
            raise ValueError(f"Reprogrammer: feature_size {tuple(feature_size)} must have {spatial_dims} entries.")
        if pooling not in ("avg", "learned"):
            raise ValueError(f"Reprogrammer: pooling must be 'avg' or 'learned', got {pooling!r}.")
        if pooling == "learned" and (spatial_dims == 0 or feature_size is None):
            raise ValueError("Reprogrammer: pooling='learned' needs a feature map (spatial_dims > 0) and its feature_size.")
        self.pooling = pooling
        # one logit per map position; zeros = uniform weights = global average pooling
        num_positions = int(torch.tensor([int(v) for v in feature_size]).prod()) if pooling == "learned" else 0
        self.position_logits = nn.Parameter(torch.zeros(num_positions)) if pooling == "learned" else None
        kernel = tuple(1 if feature_size is not None and int(feature_size[a]) == 1 else 3 for a in range(spatial_dims))
        self.blocks = nn.ModuleList([self._residual_branch(spatial_dims, in_channels, hidden, kernel) for _ in range(num_blocks)])
        self.dropout = nn.Dropout(dropout)
        self.projection = nn.Linear(in_channels, out_features)

    @staticmethod
    def _residual_branch(spatial_dims: int, channels: int, hidden: int, kernel: tuple[int, ...]) -> nn.Sequential:
        if spatial_dims == 0:
            last = nn.Linear(hidden, channels)
            branch = nn.Sequential(nn.LayerNorm(channels), nn.Linear(channels, hidden), nn.GELU(), last)
        else:
            # conv -> BatchNorm -> ReLU units in MONAI's own block (norm / act by name)
            last = Conv[Conv.CONV, spatial_dims](hidden, channels, kernel_size=1)
            branch = nn.Sequential(
                Convolution(spatial_dims, channels, hidden, kernel_size=1, bias=False, norm="batch", act="relu"),
                Convolution(spatial_dims, hidden, hidden, kernel_size=kernel, bias=False, norm="batch", act="relu"),
                last,
            )
        # zero-initialised last layer: the block starts as the identity
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        return branch

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Map teacher features ``(B, C[, *spatial])`` to reprogrammed features ``(B, out_features)``."""
        expected_ndim = 2 + self.spatial_dims
        if features.ndim != expected_ndim or features.shape[1] != self.in_channels:
            raise ValueError(
                f"Reprogrammer expects teacher features of shape (B, {self.in_channels}"
                f"{', *spatial' * (self.spatial_dims > 0)}) with {expected_ndim} dims, got {tuple(features.shape)}: "
                "the teacher's feature width or dimensionality does not fit this reprogrammer."
            )
        x = features
        for block in self.blocks:
            x = x + block(x)
        if self.position_logits is not None:
            flat = torch.flatten(x, 2)
            if flat.shape[2] != self.position_logits.numel():
                raise ValueError(
                    f"Reprogrammer: pooling='learned' was built for {self.position_logits.numel()} map positions, "
                    f"got a map of {tuple(x.shape[2:])}."
                )
            x = (flat * torch.softmax(self.position_logits, dim=0)).sum(dim=2)
        elif self.spatial_dims > 0:
            x = torch.flatten(x, 2).mean(dim=2)
        return self.projection(self.dropout(x))
