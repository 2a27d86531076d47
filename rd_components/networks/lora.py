"""LoRA on the foundation model: the PEFT baseline (adapted teacher + linear head) and RD's
teacher branch with an adapted teacher."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["AdaptedTeacherReprogrammer", "LoRAClassifier", "inject_lora", "pointwise_layer_names"]


def pointwise_layer_names(module: nn.Module) -> list[str]:
    """Names of the channel-mixing layers of ``module``: 1x1(x1) convolutions with ``groups=1``.

    These are where LoRA goes in a CNN: they play the part of a transformer's projections, they
    need no padding (so Hugging Face ``peft``'s convolution adapters fit them whatever padding
    rule the backbone uses), and depthwise or spatial kernels stay frozen.
    """
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [name for name, m in module.named_modules()
            if isinstance(m, convs) and m.groups == 1 and all(k == 1 for k in m.kernel_size)]


def inject_lora(teacher: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                target_modules: Sequence[str] | None = None) -> int:
    """Put LoRA adapters (Hugging Face ``peft``) into ``teacher.backbone`` in place; only they train.

    Args:
        teacher: a :class:`~rd_components.foundation.FrozenTeacher` (it stays in eval mode, so
            BatchNorm statistics never update).
        rank, alpha, dropout: the adapters' rank ``r``, scaling numerator (``alpha / r``) and input dropout.
        target_modules: backbone layer names to adapt; default :func:`pointwise_layer_names`.

    Returns:
        the number of adapted layers.
    """
    try:
        from peft import LoraConfig, inject_adapter_in_model
    except ImportError as error:  # pragma: no cover - peft is in requirements.txt
        raise ImportError("LoRA needs Hugging Face peft: pip install peft") from error
    backbone = teacher.backbone
    targets = list(target_modules) if target_modules is not None else pointwise_layer_names(backbone)
    if not targets:
        raise ValueError(f"inject_lora: no layer of {type(backbone).__name__} to adapt; pass target_modules.")
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets)
    teacher.backbone = inject_adapter_in_model(config, backbone)
    for name, parameter in teacher.named_parameters():
        # per-parameter: FrozenTeacher.requires_grad_ refuses to unfreeze the whole teacher
        parameter.requires_grad = "lora_" in name
    return len(targets)


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
        self.num_adapted_layers = inject_lora(teacher, rank, alpha, dropout, target_modules)
        self.teacher = teacher
        self.classifier = nn.Linear(int(teacher.feature_channels), int(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Globally pooled adapted-teacher features ``(B, C_T)`` (the interface of ``DeployableStudent``)."""
        features = self.teacher(x)
        return torch.flatten(features, 2).mean(dim=2) if features.ndim > 2 else features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, *spatial)`` -> logits ``(B, K)``."""
        return self.classifier(self.features(x))


class AdaptedTeacherReprogrammer(nn.Module):
    """RD's teacher branch with the foundation model itself adapted: LoRA adapters in the teacher,
    then the reprogrammer, trained jointly with the student by RD's loss.

    The trainer's teacher source then hands the images through unchanged (an uncached
    ``TeacherFeatureSource(nn.Identity())``): the teacher runs inside this module, forward and
    backward on every batch, so its features cannot be cached. What is deployed is still the
    student alone.

    Args:
        teacher: a :class:`~rd_components.foundation.FrozenTeacher` (adapters injected in place).
        reprogrammer: RD's reprogrammer on the teacher's feature map.
        rank, alpha: the adapters' rank and scaling numerator (see :func:`inject_lora`).

    Shapes:
        ``(B, C, *spatial)`` images in the teacher's input contract -> the reprogrammer's output
        ``(B, d)``.
    """

    def __init__(self, teacher: nn.Module, reprogrammer: nn.Module, rank: int = 8, alpha: float = 16.0) -> None:
        super().__init__()
        self.num_adapted_layers = inject_lora(teacher, rank, alpha)
        self.teacher = teacher
        self.reprogrammer = reprogrammer

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``(B, C, *spatial)`` -> reprogrammed features ``(B, d)``."""
        images = images.as_tensor() if hasattr(images, "as_tensor") else images  # MONAI MetaTensor -> plain
        return self.reprogrammer(self.teacher(images))
