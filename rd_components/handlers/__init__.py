"""Handlers: distillation schedule and KD gate, resumable checkpoints, progress, predictions, reports and plots,
export, MLflow registry."""

from .csv_writer import PredictionCSVWriter
from .distill_schedule import DistillationSchedule, distill_scale
from .export import AtomicCheckpointSaver, StudentExportHandler, export_torchscript
from .kd_gate import KDGate
from .label_maps import LabelMapWriter
from .mlflow_registry import MLflowRegistryHandler
from .predictions import PredictionCollector
from .progress import ProgressBarHandler
from .resume import ResumableCheckpoint, read_resume_checkpoint, resumed_run_name
from .segmentation_report import SegmentationReportHandler
from .teacher_branch_check import TeacherBranchCheck
from .report import EvaluationReportHandler, TrainingReportHandler, plot_confusion_matrix, plot_training_curves

__all__ = [
    "AtomicCheckpointSaver",
    "DistillationSchedule",
    "distill_scale",
    "EvaluationReportHandler",
    "KDGate",
    "LabelMapWriter",
    "MLflowRegistryHandler",
    "PredictionCSVWriter",
    "PredictionCollector",
    "ProgressBarHandler",
    "ResumableCheckpoint",
    "SegmentationReportHandler",
    "StudentExportHandler",
    "TeacherBranchCheck",
    "TrainingReportHandler",
    "export_torchscript",
    "plot_confusion_matrix",
    "plot_training_curves",
    "read_resume_checkpoint",
    "resumed_run_name",
]
