"""Students of any architecture that expose their penultimate features ``(B, d)``."""

from __future__ import annotations

from collections.abc import Callable

import torch
from monai.networks.blocks import Convolution
from monai.networks.nets import DenseNet121, resnet10, resnet18, resnet34
from torch import nn

__all__ = ["StudentFeatures", "TinyCNN", "create_student", "list_students"]


class StudentFeatures(nn.Module):
    """A backbone that returns pooled features, followed by a linear neck to width ``d``.

    Args:
        backbone: module mapping images ``(B, C_in, *spatial)`` to ``(B, backbone_dim)``.
        backbone_dim: width of the backbone's pooled features.
        feature_dim: the width ``d`` shared with the reprogrammer and the classifier; when it
            differs from ``backbone_dim`` a ``Linear`` neck is added.

    Shapes:
        input ``(B, C_in, *spatial)``; output ``(B, feature_dim)``.
    """

    def __init__(self, backbone: nn.Module, backbone_dim: int, feature_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.neck: nn.Module = nn.Identity() if backbone_dim == feature_dim else nn.Linear(backbone_dim, feature_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Features ``(B, feature_dim)``."""
        return self.neck(self.backbone(images))


class TinyCNN(nn.Module):
    """Three conv-BN-ReLU stages with stride 2 and global average pooling.

    The "tiny CNN from scratch" of the calibration table; useful as the smallest student.

    Shapes:
        input ``(B, in_channels, *spatial)``; output ``(B, channels[-1])``.
    """

    def __init__(self, spatial_dims: int, in_channels: int, channels: tuple[int, ...] = (16, 32, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            # stride-2 conv -> BatchNorm -> ReLU, MONAI's block
            layers.append(Convolution(spatial_dims, previous, width, strides=2, kernel_size=3, bias=False, norm="batch", act="relu"))
            previous = width
        self.layers = nn.Sequential(*layers)
        self.out_channels = previous

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(B, channels[-1])``."""
        return torch.flatten(self.layers(images), 2).mean(dim=2)


class _DenseNetFeatures(nn.Module):
    """MONAI DenseNet121 without its final linear layer: ``(B, C_in, *sp) -> (B, 1024 * growth scale)``."""

    def __init__(self, net: DenseNet121) -> None:
        super().__init__()
        self.features = net.features
        # class_layers = relu, pool, flatten, out: keep all but the last Linear
        self.pool = nn.Sequential(*list(net.class_layers.children())[:-1])
        self.out_channels = int(net.class_layers[-1].in_features)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.pool(self.features(images))


def _monai_resnet(factory: Callable[..., nn.Module]) -> Callable[..., tuple[nn.Module, int]]:
    def build(spatial_dims: int, in_channels: int, widen_factor: float = 1.0, **kwargs) -> tuple[nn.Module, int]:
        # small medical patches: keep the stem's max pool off so 32-64 px inputs keep spatial extent
        kwargs.setdefault("no_max_pool", True)
        kwargs.setdefault("conv1_t_stride", 2)
        kwargs.setdefault("conv1_t_size", 3)
        net = factory(
            spatial_dims=spatial_dims,
            n_input_channels=in_channels,
            widen_factor=widen_factor,
            feed_forward=False,
            **kwargs,
        )
        return net, int(net.in_planes)

    return build


def _densenet121(spatial_dims: int, in_channels: int, **kwargs) -> tuple[nn.Module, int]:
    net = _DenseNetFeatures(DenseNet121(spatial_dims=spatial_dims, in_channels=in_channels, out_channels=2, **kwargs))
    return net, net.out_channels


def _tiny_cnn(spatial_dims: int, in_channels: int, channels: tuple[int, ...] = (16, 32, 64)) -> tuple[nn.Module, int]:
    net = TinyCNN(spatial_dims, in_channels, tuple(channels))
    return net, net.out_channels


_STUDENTS: dict[str, Callable[..., tuple[nn.Module, int]]] = {
    "resnet10": _monai_resnet(resnet10),
    "resnet18": _monai_resnet(resnet18),
    "resnet34": _monai_resnet(resnet34),
    "densenet121": _densenet121,
    "tiny_cnn": _tiny_cnn,
}


def list_students() -> list[str]:
    """Names accepted by :func:`create_student`."""
    return sorted(_STUDENTS)


def create_student(name: str, spatial_dims: int, in_channels: int, feature_dim: int, **kwargs) -> StudentFeatures:
    """Build a student whose forward gives penultimate features ``(B, feature_dim)``.

    Args:
        name: one of :func:`list_students` (MONAI ``resnet10/18/34``, ``densenet121``, ``tiny_cnn``).
        spatial_dims: 2 or 3.
        in_channels: image channels.
        feature_dim: output width ``d`` (a linear neck is added if the backbone's width differs).
        kwargs: passed to the backbone (e.g. ``widen_factor=0.25`` for a small ResNet).

    Returns:
        :class:`StudentFeatures`, input ``(B, in_channels, *spatial)``, output ``(B, feature_dim)``.
    """
    if name not in _STUDENTS:
        raise ValueError(f"Unknown student '{name}'; known students: {', '.join(list_students())}.")
    if spatial_dims not in (2, 3):
        raise ValueError(f"Students are 2D or 3D networks, got spatial_dims={spatial_dims}.")
    backbone, width = _STUDENTS[name](spatial_dims, in_channels, **kwargs)
    return StudentFeatures(backbone, width, feature_dim)
