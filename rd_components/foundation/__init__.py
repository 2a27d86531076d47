"""Frozen foundation-model teachers: registry, backbones, weight files, the teacher feature cache,
the feature source in front of it and the teacher linear probe.

A teacher registry name -> frozen foundation-model backbone with its preprocessing contract
(:mod:`.registry`, :mod:`.base`); weight-file hashing and safe loading (:mod:`.weights`); the
store of frozen-teacher outputs, so the teacher runs once per (sample, view) (:mod:`.feature_cache`);
the frozen teacher behind that optional cache, which the engines and the probe read features from
(:mod:`.teacher_features`); a logistic-regression probe on pooled teacher features (:mod:`.linear_probe`).
This package sits below the engines and handlers and imports neither.

>>> from rd_components.foundation import create_teacher, list_teachers
>>> teacher = create_teacher("efficientnet_lite0")   # doctest: +SKIP
>>> teacher(images)  # (B, 1, H, W) in 0..1 -> (B, 1280, h, w)   # doctest: +SKIP
"""

from .base import FrozenTeacher
from .efficientnet_lite import LITE_VARIANTS, LITE_WEIGHTS, EfficientNetLite, EfficientNetLiteTeacher
from .feature_cache import TeacherFeatureCache
from .generic import MonaiTeacher, TorchScriptTeacher, resolve_feature_layer
from .lazy_teacher import LazyTeacher
from .i3resnet import I3RESNET_WEIGHTS, I3ResNet152, I3ResNetTeacher, extract_backbone_state_dict, i3resnet_output_size
from .linear_probe import extract_pooled_features, fit_linear_probe, fit_stage_probe
from .registry import TEACHER_PREFIXES, create_teacher, list_teachers, native_spacing_args, register_teacher
from .teacher_features import TeacherFeatureSource
from .weights import load_checkpoint, sha256_file, state_dict_digest, unwrap_state_dict, verify_sha256

__all__ = [
    "FrozenTeacher",
    "LazyTeacher",
    "create_teacher",
    "list_teachers",
    "register_teacher",
    "native_spacing_args",
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
    "TeacherFeatureSource",
    "extract_pooled_features",
    "fit_linear_probe",
    "fit_stage_probe",
    "load_checkpoint",
    "unwrap_state_dict",
    "sha256_file",
    "state_dict_digest",
    "verify_sha256",
]
