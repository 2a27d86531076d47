"""Frozen foundation-model teachers: registry, backbones, weight files and the teacher feature cache.

A teacher registry name -> frozen foundation-model backbone with its preprocessing contract
(:mod:`.registry`, :mod:`.base`); weight-file hashing and safe loading (:mod:`.weights`); the
store of frozen-teacher outputs, so the teacher runs once per (sample, view) (:mod:`.feature_cache`).

>>> from rd_components.foundation import create_teacher, list_teachers
>>> teacher = create_teacher("efficientnet_lite0")   # doctest: +SKIP
>>> teacher(images)  # (B, 1, H, W) in 0..1 -> (B, 1280, h, w)   # doctest: +SKIP
"""

from .base import FrozenTeacher
from .efficientnet_lite import LITE_VARIANTS, LITE_WEIGHTS, EfficientNetLite, EfficientNetLiteTeacher
from .feature_cache import TeacherFeatureCache
from .generic import MonaiTeacher, TorchScriptTeacher, resolve_feature_layer
from .i3resnet import I3RESNET_WEIGHTS, I3ResNet152, I3ResNetTeacher, extract_backbone_state_dict, i3resnet_output_size
from .registry import TEACHER_PREFIXES, UnknownTeacherError, create_teacher, list_teachers, register_teacher
from .weights import load_checkpoint, sha256_file, state_dict_digest, unwrap_state_dict, verify_sha256

__all__ = [
    "FrozenTeacher",
    "create_teacher",
    "list_teachers",
    "register_teacher",
    "UnknownTeacherError",
    "TEACHER_PREFIXES",
    "EfficientNetLite",
    "EfficientNetLiteTeacher",
    "LITE_VARIANTS",
    "LITE_WEIGHTS",
    "I3ResNet152",
    "I3ResNetTeacher",
    "I3RESNET_WEIGHTS",
    "extract_backbone_state_dict",
    "i3resnet_output_size",
    "MonaiTeacher",
    "TorchScriptTeacher",
    "resolve_feature_layer",
    "TeacherFeatureCache",
    "load_checkpoint",
    "unwrap_state_dict",
    "sha256_file",
    "state_dict_digest",
    "verify_sha256",
]
