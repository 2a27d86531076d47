"""PEFT baseline: the foundation model itself, fine-tuned with LoRA adapters and a linear head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["LoRAClassifier", "pointwise_layer_names"]


def pointwise_layer_names(module: nn.Module) -> list[str]:
    """Names of the channel-mixing layers of ``module``: 1x1(x1) convolutions with ``groups=1``.

    These are where LoRA goes in a CNN: they play the part of a transformer's projections, they
    need no padding (so Hugging Face ``peft``'s convolution adapters fit them whatever padding
    rule the backbone uses), and depthwise or spatial kernels stay frozen.
    """
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [name for name, m in module.named_modules()
            if isinstance(m, convs) and m.groups == 1 and all(k == 1 for k in m.kernel_size)]


class LoRAClassifier(nn.Module):
    """Frozen foundation model + LoRA adapters (``peft``) + global pooling + a linear ``classifier``.

    The parameter-efficient fine-tuning (PEFT) reference that RD is compared with: the teacher
    is adapted rather than distilled, so what is deployed is the whole foundation model. Only the
    adapters and the head train; BatchNorm statistics stay frozen (the teacher stays in eval mode).

    Args:
        teacher: a :class:`~rd_components.foundation.FrozenTeacher`; adapters are injected into
            its ``backbone`` in place (the module is owned by this classifier from then on).
        num_classes: ``K``.
        rank: LoRA rank ``r``.
        alpha: LoRA scaling numerator (the update is scaled by ``alpha / r``).
        dropout: dropout on the adapters' input.
        target_modules: backbone layer names to adapt; default :func:`pointwise_layer_names`.

    Shapes:
        ``(B, C, *spatial)`` in the teacher's input contract -> logits ``(B, K)``.
    """

    def __init__(
        self,
        teacher: nn.Module,
        num_classes: int,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.0,
        target_modules: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        try:
            from peft import LoraConfig, inject_adapter_in_model
        except ImportError as error:  # pragma: no cover - peft is in requirements.txt
            raise ImportError("LoRAClassifier needs Hugging Face peft: pip install peft") from error
        backbone = teacher.backbone
        targets = list(target_modules) if target_modules is not None else pointwise_layer_names(backbone)
        if not targets:
            raise ValueError(f"LoRAClassifier: no layer of {type(backbone).__name__} to adapt; pass target_modules.")
        config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
        teacher.backbone = inject_adapter_in_model(config, backbone)
        for name, parameter in teacher.named_parameters():
            # per-parameter: FrozenTeacher.requires_grad_ refuses to unfreeze the whole teacher
            parameter.requires_grad = "lora_" in name
        self.teacher = teacher
        self.num_adapted_layers = len(targets)
        self.classifier = nn.Linear(int(teacher.feature_channels), int(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled adapted-teacher features ``(B, C_T)`` (the interface of ``DeployableStudent``)."""
        features = self.teacher(x)
        return torch.flatten(features, 2).mean(dim=2) if features.ndim > 2 else features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` -> logits ``(B, K)``."""
        return self.classifier(self.features(x))
