"""Engines: RDTrainer (one-stage RD co-training), RDEvaluator, the teacher feature source, the
teacher linear-probe fit and the output transform shared by the engines' ignite metrics."""

from .branches import RDBranches, teacher_branch
from .linear_probe import extract_pooled_features, fit_linear_probe
from .outputs import stacked_output
from .rd_evaluator import RDEvaluator
from .rd_trainer import LOSS_TERMS, RDTrainer
from .teacher_features import TeacherFeatureSource

__all__ = [
    "LOSS_TERMS",
    "RDBranches",
    "RDEvaluator",
    "RDTrainer",
    "TeacherFeatureSource",
    "extract_pooled_features",
    "fit_linear_probe",
    "stacked_output",
    "teacher_branch",
]
