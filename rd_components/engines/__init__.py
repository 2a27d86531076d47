"""Engines: RDTrainer (one-stage RD co-training), DRDTrainer (its segmentation sibling), RDEvaluator, the student and teacher branches
and the output transform shared by the engines' ignite metrics.

The teacher feature source and the teacher linear probe live in :mod:`rd_components.foundation`
(``TeacherFeatureSource``, ``fit_linear_probe``, ``extract_pooled_features``), with the teacher.
"""

from .branches import RDBranches, teacher_branch
from .drd_trainer import DRD_LOSS_TERMS, DRDBranches, DRDTrainer
from .outputs import stacked_output
from .rd_evaluator import RDEvaluator
from .rd_trainer import LOSS_TERMS, RDTrainer

__all__ = [
    "DRD_LOSS_TERMS",
    "DRDBranches",
    "DRDTrainer",
    "LOSS_TERMS",
    "RDBranches",
    "RDEvaluator",
    "RDTrainer",
    "stacked_output",
    "teacher_branch",
]
