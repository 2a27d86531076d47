"""Networks of Reprogramming Distillation: reprogrammer, shared classifier, students."""

from .classifier import SharedClassifier
from .deployable import DeployableStudent
from .lora import LoRAClassifier, pointwise_layer_names
from .reprogrammer import Reprogrammer
from .segmentation import DeepReprogrammer, SegmentationStudent, StageResizer
from .teacher_heads import FlippedViewTeacher, LinearProbe, PooledFeatures, SoftTargets
from .students import StudentFeatures, TinyCNN, create_student, list_students

__all__ = [
    "DeepReprogrammer",
    "SegmentationStudent",
    "StageResizer",
    "DeployableStudent",
    "FlippedViewTeacher",
    "SoftTargets",
    "LinearProbe",
    "LoRAClassifier",
    "PooledFeatures",
    "Reprogrammer",
    "SharedClassifier",
    "StudentFeatures",
    "TinyCNN",
    "create_student",
    "list_students",
    "pointwise_layer_names",
]
