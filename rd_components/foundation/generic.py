"""Teachers from any MONAI network (``monai:<NetName>``) or TorchScript file (``torchscript:<path>``).

Which output is the feature (``monai:``), first rule that applies:

1. ``feature_layer="a.b"``: the output of that submodule (dotted name).
2. the network has a ``features`` submodule (DenseNet, ...): its output.
3. the network has an ``nn.Linear``: the *input* of the last registered Linear, i.e. the
   network minus its final classifier (a vector ``(B, D)`` for most classifiers).
4. otherwise: the network's output.

The features are read with a forward hook that stops the forward pass right there, so the
layers after the feature layer (pooling, classifier) are not computed.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .base import FrozenTeacher
from .weights import load_checkpoint, unwrap_state_dict, verify_sha256

__all__ = ["MonaiTeacher", "TorchScriptTeacher", "resolve_feature_layer"]


class _Captured(Exception):
    """Raised by the feature hook to end the forward pass once the features exist."""

    def __init__(self, value: torch.Tensor) -> None:
        super().__init__()
        self.value = value


def resolve_feature_layer(net: nn.Module, feature_layer: str | None = None) -> tuple[str, str]:
    """Apply the rule of this module: ``(submodule name, "output" | "input")``.

    ``("", "output")`` stands for the whole network's output.
    """
    names = dict(net.named_modules())
    if feature_layer is not None:
        if feature_layer not in names or feature_layer == "":
            raise ValueError(
                f"feature_layer {feature_layer!r} is not a submodule of {type(net).__name__}; "
                f"top-level submodules: {[n for n, _ in net.named_children()]}"
            )
        return feature_layer, "output"
    if isinstance(getattr(net, "features", None), nn.Module):
        return "features", "output"
    linears = [n for n, m in names.items() if isinstance(m, nn.Linear)]
    if linears:
        return linears[-1], "input"
    return "", "output"


class _FeatureNet(nn.Module):
    """Wraps a network so that calling it returns the features chosen by :func:`resolve_feature_layer`."""

    def __init__(self, net: nn.Module, layer: str, where: str) -> None:
        super().__init__()
        self.net = net
        self.layer = layer
        self.where = where

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.layer:
            return self.net(x)
        module = self.net.get_submodule(self.layer)

        def hook_out(_m: nn.Module, _args: Any, out: Any) -> None:
            raise _Captured(out)

        def hook_in(_m: nn.Module, args: Any) -> None:
            raise _Captured(args[0])

        handle = (
            module.register_forward_hook(hook_out)
            if self.where == "output"
            else module.register_forward_pre_hook(hook_in)
        )
        try:
            self.net(x)
        except _Captured as c:
            return c.value
        finally:
            handle.remove()
        raise RuntimeError(f"feature layer {self.layer!r} was not called during the forward pass")


class MonaiTeacher(FrozenTeacher):
    """Frozen ``monai.networks.nets.<NetName>`` with an optional local state dict.

    ``forward``: ``(B, in_channels, *spatial)`` -> the features of the rule in this module's
    docstring, ``(B, C_T, *spatial')`` or ``(B, C_T)``. No channel or intensity mapping: the
    network is assumed to have been trained on the same preprocessing as the caller's data.

    Args:
        net_name: class name in ``monai.networks.nets``, e.g. ``"DenseNet121"``.
        checkpoint: local state dict file (bare, or under ``state_dict``/``model``/``network``).
        sha256: expected digest of ``checkpoint``.
        feature_layer: dotted submodule name whose output is the feature.
        min_size: smallest spatial size reaching the network (default 32 per axis).
        intensity_range: the caller's input range (documentation and range check).
        check_range: see :class:`FrozenTeacher`.
        net_kwargs: constructor arguments of the network (``spatial_dims``, ``in_channels``, ...).
    """

    def __init__(
        self,
        net_name: str,
        *,
        checkpoint: str | os.PathLike | None = None,
        sha256: str | None = None,
        feature_layer: str | None = None,
        min_size: Sequence[int] | None = None,
        intensity_range: tuple[float, float] = (0.0, 1.0),
        check_range: bool = True,
        **net_kwargs: Any,
    ) -> None:
        from monai.networks import nets

        cls = getattr(nets, net_name, None)
        if not callable(cls) or net_name.startswith("_"):
            raise ValueError(f"monai:{net_name}: no network {net_name!r} in monai.networks.nets")
        params = inspect.signature(cls).parameters
        net = cls(**net_kwargs)
        if not isinstance(net, nn.Module):
            raise ValueError(f"monai:{net_name}: monai.networks.nets.{net_name}(...) did not return an nn.Module")
        digest = None
        if checkpoint is not None:
            obj, digest = load_checkpoint(checkpoint, sha256)
            net.load_state_dict(unwrap_state_dict(obj), strict=True)

        def arg(keys: tuple[str, ...], fallback: int) -> int:
            for key in keys:
                if key in net_kwargs:
                    return int(net_kwargs[key])
                default = params[key].default if key in params else None
                if isinstance(default, int):
                    return default
            return fallback

        # MONAI nets spell these differently (ResNet: n_input_channels, BasicUNet: in_channels)
        spatial_dims = arg(("spatial_dims", "dimensions"), 3)
        in_channels = arg(("in_channels", "n_input_channels", "in_chns"), 1)
        layer, where = resolve_feature_layer(net, feature_layer)
        size = tuple(min_size) if min_size is not None else (32,) * spatial_dims
        super().__init__(
            _FeatureNet(net, layer, where),
            name=f"monai:{net_name}",
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            feature_channels=0,
            min_size=size,
            weights_digest=digest,
            intensity_range=intensity_range,
            check_range=check_range,
        )
        self.feature_layer = f"{layer or '<network>'}:{where}"
        self.feature_channels = self.feature_shape(size)[0]
        self.checkpoint = None if checkpoint is None else os.fspath(checkpoint)
        self.weight_files = (self.checkpoint,) if self.checkpoint else ()

    def extra_contract(self) -> dict:
        return {"feature_layer": getattr(self, "feature_layer", None)}


class TorchScriptTeacher(FrozenTeacher):
    """Frozen TorchScript module whose ``forward`` returns the features (the escape hatch).

    TorchScript archives are loaded with ``torch.jit.load``, which restores code and tensors
    without unpickling arbitrary Python objects; the file's SHA-256 is the weights digest.

    Args:
        path: local ``.pt`` TorchScript file.
        spatial_dims: 2 or 3 (required: a script does not declare it).
        in_channels: channels of the caller's input (passed through unchanged).
        feature_channels: ``C_T``; inferred by one forward on zeros of ``min_size`` if omitted.
        min_size: smallest spatial size reaching the module (default 32 per axis).
        sha256: expected digest of ``path``.
        intensity_range: the caller's input range.
        check_range: see :class:`FrozenTeacher`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        spatial_dims: int | None = None,
        in_channels: int = 1,
        feature_channels: int | None = None,
        min_size: Sequence[int] | None = None,
        sha256: str | None = None,
        intensity_range: tuple[float, float] = (0.0, 1.0),
        check_range: bool = True,
    ) -> None:
        path = os.fspath(path)
        if spatial_dims is None:
            raise ValueError(f"torchscript:{path}: pass spatial_dims=2 or 3 (a TorchScript file does not declare it)")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"torchscript:{path}: file does not exist (teachers load local files only)")
        digest = verify_sha256(path, sha256)
        module = torch.jit.load(path, map_location="cpu")
        size = tuple(min_size) if min_size is not None else (32,) * spatial_dims
        super().__init__(
            module,
            name=f"torchscript:{os.path.basename(path)}",
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            feature_channels=feature_channels or 0,
            min_size=size,
            weights_digest=digest,
            intensity_range=intensity_range,
            check_range=check_range,
        )
        if not feature_channels:
            self.feature_channels = self.feature_shape(size)[0]
        self.path = path
        self.weight_files = (path,)
