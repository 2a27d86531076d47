"""Networks of Reprogramming Distillation: reprogrammer, shared classifier, students; and the
parameters one optimizer trains (:func:`trainable_parameters`)."""

from __future__ import annotations

from typing import Any

from torch import nn

from .classifier import SharedClassifier
from .deployable import DeployableStudent
from .lora import AdaptedTeacherReprogrammer, LoRAClassifier, inject_lora, pointwise_layer_names
from .reprogrammer import Reprogrammer
from .segmentation import DeepReprogrammer, SegmentationStudent, StageResizer
from .stage_probe import StageProbe, StageProbeSegmenter
from .teacher_heads import FlippedViewTeacher, LinearProbe, PooledFeatures, SoftTargets
from .students import StudentFeatures, TinyCNN, create_student, list_students

__all__ = [
    "DeepReprogrammer",
    "SegmentationStudent",
    "StageResizer",
    "StageProbe",
    "StageProbeSegmenter",
    "DeployableStudent",
    "FlippedViewTeacher",
    "SoftTargets",
    "LinearProbe",
    "AdaptedTeacherReprogrammer",
    "LoRAClassifier",
    "inject_lora",
    "PooledFeatures",
    "Reprogrammer",
    "SharedClassifier",
    "StudentFeatures",
    "TinyCNN",
    "create_student",
    "list_students",
    "pointwise_layer_names",
    "trainable_parameters",
]


def trainable_parameters(*modules: Any) -> list[nn.Parameter]:
    """Parameters that require grad of the given modules, skipping ``None`` and duplicates.

    One optimizer covers student, shared classifier, reprogrammer and any loss with learned
    parts (the hint projection), whichever of them a method uses.
    """
    seen: set[int] = set()
    params = []
    for module in modules:
        if module is None:
            continue
        for p in module.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                params.append(p)
    return params
