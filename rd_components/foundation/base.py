"""Frozen teacher base class: a frozen backbone plus its preprocessing contract.

A teacher is a frozen foundation-model backbone plus its *preprocessing contract*: what the
caller passes in (``in_channels``, ``spatial_dims``, ``intensity_range``) and what comes out
(``feature_channels``, :meth:`FrozenTeacher.feature_shape`). The teacher does its own
preprocessing (channel replication, intensity mapping, upsampling to ``min_size``) inside
``forward``, so a trainer only ever calls ``teacher(images)``. Loading and hashing weight
files lives in :mod:`rd_components.foundation.weights`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.networks.utils import freeze_layers
from torch import nn

from .weights import state_dict_digest

__all__ = ["FrozenTeacher"]

_AXES = ("H", "W", "D")


class FrozenTeacher(nn.Module):
    """A frozen backbone with a preprocessing contract; always in eval mode.

    ``forward`` takes ``x`` of shape ``(B, in_channels, *spatial)`` (``len(spatial) ==
    spatial_dims``), float in ``intensity_range`` (0..1 for every teacher of this package),
    and returns the backbone's feature map before global pooling, ``(B, C_T, *spatial')``
    (or ``(B, C_T)`` for teachers whose features are vectors). Inputs smaller than
    ``min_size`` along an axis are upsampled to ``min_size`` on that axis inside ``forward``.

    Every parameter has ``requires_grad=False`` and ``train(mode)`` keeps the module in eval
    mode, so BatchNorm statistics never update and dropout is off, whatever the trainer does.
    No autograd graph is built unless the input itself requires grad; callers may still wrap
    the call in ``torch.no_grad()``.

    Subclasses implement :meth:`extract` (backbone on preprocessed input) and usually
    :meth:`preprocess` and :meth:`feature_shape`, and list the files their weights came from in
    ``weight_files`` (what :class:`~rd_components.foundation.LazyTeacher` watches for changes).

    Args:
        backbone: the network; stored as ``self.backbone``.
        name: registry name, e.g. ``"efficientnet_lite0"``.
        spatial_dims: 2 or 3.
        in_channels: channels the caller passes (usually 1 for medical images).
        feature_channels: ``C_T``.
        min_size: per-axis minimum spatial size of what reaches the backbone.
        weights_digest: SHA-256 of the weight file(s); ``None`` hashes the state dict.
        intensity_range: the caller's input range.
        check_range: reject inputs far outside ``intensity_range`` (for example raw HU or
            0..255 images) with a ``ValueError``; the tolerance is one range width on each side,
            so ordinary intensity augmentation passes.
    """

    #: local files the weights were loaded from (empty: random initialisation)
    weight_files: tuple[str, ...] = ()

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        spatial_dims: int,
        in_channels: int,
        feature_channels: int,
        min_size: Sequence[int],
        weights_digest: str | None = None,
        intensity_range: tuple[float, float] = (0.0, 1.0),
        check_range: bool = True,
    ) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"spatial_dims must be 1, 2 or 3, got {spatial_dims}")
        min_size = tuple(int(s) for s in min_size)
        if len(min_size) != spatial_dims:
            raise ValueError(f"min_size {min_size} must have {spatial_dims} entries (spatial_dims)")
        self.backbone = backbone
        self.name = str(name)
        self.spatial_dims = int(spatial_dims)
        self.in_channels = int(in_channels)
        self.feature_channels = int(feature_channels)
        self.min_size = min_size
        self.intensity_range = (float(intensity_range[0]), float(intensity_range[1]))
        self.check_range = bool(check_range)
        self._feature_shapes: dict[tuple[int, ...], tuple[int, ...]] = {}
        self._freeze()
        self.weights_digest = weights_digest or state_dict_digest(self.backbone.state_dict())

    # ----------------------------------------------------------------- frozen behaviour
    def _freeze(self) -> None:
        freeze_layers(self, freeze_vars=".*")  # every parameter; train() below pins eval mode too
        super().train(False)

    def train(self, mode: bool = True) -> FrozenTeacher:
        """Ignore ``mode``: a frozen teacher stays in eval mode (BatchNorm never updates)."""
        return super().train(False)

    def requires_grad_(self, requires_grad: bool = True) -> FrozenTeacher:
        """Refuse to unfreeze: fine-tuning a teacher is not what this class is for."""
        if requires_grad:
            raise ValueError(f"teacher {self.name!r} is frozen; its parameters cannot require grad")
        return super().requires_grad_(False)

    # ----------------------------------------------------------------- contract
    @property
    def contract(self) -> dict[str, Any]:
        """The preprocessing contract as a JSON-serialisable dict."""
        return {
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "intensity_range": list(self.intensity_range),
            "min_size": list(self.min_size),
            "feature_channels": self.feature_channels,
            **self.extra_contract(),
        }

    def extra_contract(self) -> dict[str, Any]:
        """Subclass hook: preprocessing settings that change the features (e.g. input size)."""
        return {}

    @property
    def cache_key(self) -> str:
        """Short key for feature caches: weights digest *and* contract (input size matters too)."""
        blob = json.dumps({"name": self.name, "weights": self.weights_digest, **self.contract}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def describe(self) -> dict[str, Any]:
        """Summary for logging: name, class, parameter count, weights digest, cache key, contract."""
        return {
            "name": self.name,
            "class": type(self).__name__,
            "params": sum(p.numel() for p in self.parameters()),
            "weights_digest": self.weights_digest,
            "cache_key": self.cache_key,
            **self.contract,
        }

    def expected_input(self) -> str:
        """One-line description of the accepted input, used in error messages."""
        axes = ", ".join(_AXES[: self.spatial_dims])
        lo, hi = self.intensity_range
        return f"(B, {self.in_channels}, {axes}) float in [{lo:g}, {hi:g}]"

    def input_size(self, spatial_size: Sequence[int]) -> tuple[int, ...]:
        """Spatial size that reaches the backbone for a caller input of ``spatial_size``."""
        return tuple(max(int(s), m) for s, m in zip(spatial_size, self.min_size))

    def feature_shape(self, spatial_size: Sequence[int]) -> tuple[int, ...]:
        """``(C_T, *spatial')`` of the output for an input of spatial size ``spatial_size``.

        The default runs the teacher once on zeros (cached per size); subclasses with a known
        stride pattern override it with a formula.
        """
        key = tuple(int(s) for s in spatial_size)
        if len(key) != self.spatial_dims:
            raise ValueError(f"{self.name}: spatial size {key} must have {self.spatial_dims} entries")
        if key not in self._feature_shapes:
            dev, dtype = self._weights_device_dtype()
            with torch.no_grad():
                out = self(torch.full((1, self.in_channels, *key), self.intensity_range[0], device=dev, dtype=dtype))
            self._feature_shapes[key] = tuple(out.shape[1:])
        return self._feature_shapes[key]

    # ----------------------------------------------------------------- forward
    def _weights_device_dtype(self) -> tuple[torch.device, torch.dtype]:
        for t in (*self.parameters(), *self.buffers()):
            if t.is_floating_point():
                return t.device, t.dtype
        return torch.device("cpu"), torch.float32

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` (one line, naming the contract) when ``x`` breaks the contract."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"teacher {self.name!r} expects a tensor {self.expected_input()}, got {type(x).__name__}")
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"teacher {self.name!r} expects input {self.expected_input()}, got shape {tuple(x.shape)}"
            )
        if not x.is_floating_point():
            raise ValueError(f"teacher {self.name!r} expects input {self.expected_input()}, got dtype {x.dtype}")
        if self.check_range and x.numel():
            lo, hi = self.intensity_range
            tol = hi - lo
            xmin, xmax = float(x.min()), float(x.max())
            if xmin < lo - tol or xmax > hi + tol:
                raise ValueError(
                    f"teacher {self.name!r} expects input {self.expected_input()}, got values in "
                    f"[{xmin:g}, {xmax:g}] (scale intensities first, e.g. ScaleIntensityRange)"
                )

    def resize_to_min(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample (bi/trilinear) every axis shorter than ``min_size`` to ``min_size``."""
        size = self.input_size(x.shape[2:])
        if size == tuple(x.shape[2:]):
            return x
        mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[self.spatial_dims]
        return F.interpolate(x, size=size, mode=mode, align_corners=False)

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        """Map a contract-conforming input to what the backbone expects (default: resize only)."""
        return self.resize_to_min(x)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of a preprocessed input."""
        return self.backbone(x)

    @property
    def stage_channels(self) -> tuple[int, ...]:
        """Channels of each map of :meth:`stage_features` (empty: the teacher has no stages)."""
        return ()

    def extract_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Subclass hook: the stage maps of a preprocessed input."""
        raise NotImplementedError(f"teacher {self.name!r} exposes no stage features (dense distillation needs them)")

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Multi-stage features for dense (segmentation) distillation.

        ``(B, in_channels, *spatial)`` -> one map per stage, shallow to deep,
        ``(B, stage_channels[s], *spatial_s)`` at in-plane strides 4, 8, 16, 32 of what reaches
        the backbone (after upsampling to ``min_size``), in the caller's axis order.
        """
        self.check_input(x)
        x = x.to(self._weights_device_dtype()[1])
        return self.extract_stages(self.preprocess(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, in_channels, *spatial)`` in ``intensity_range`` -> ``(B, C_T, *spatial')``."""
        self.check_input(x)
        # match the weights' dtype: float64 or uint8-derived inputs would fail inside conv
        x = x.to(self._weights_device_dtype()[1])
        return self.extract(self.preprocess(x))
