"""Engines: RDTrainer (one-stage RD co-training), DRDTrainer (its segmentation sibling), RDEvaluator, DRDEvaluator, the student and teacher branches,
the per-epoch averages of whatever terms the loss returns, and the output transform shared by the engines' ignite metrics.

The teacher feature source and the teacher linear probe live in :mod:`rd_components.foundation`
(``TeacherFeatureSource``, ``fit_linear_probe``, ``extract_pooled_features``), with the teacher.
"""

from .branches import RDBranches, teacher_branch
from .drd_evaluator import DRDEvaluator
from .drd_trainer import DRDBranches, DRDTrainer
from .loss_terms import LossTermAverages, loss_terms
from .outputs import stacked_output
from .rd_evaluator import RDEvaluator
from .rd_trainer import RDTrainer

__all__ = [
    "DRDBranches",
    "DRDEvaluator",
    "DRDTrainer",
    "LossTermAverages",
    "RDBranches",
    "RDEvaluator",
    "RDTrainer",
    "loss_terms",
    "stacked_output",
    "teacher_branch",
]
