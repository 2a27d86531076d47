"""Finish an MLflow run: upload report files, register the deployable student, mark failures."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import mlflow
import numpy as np
import torch
from ignite.engine import Engine, Events
from mlflow.models import ModelSignature
from mlflow.types import Schema, TensorSpec
from monai.handlers import MLFlowHandler

from .export import StudentExportHandler

__all__ = ["MLflowRegistryHandler"]

logger = logging.getLogger(__name__)


def student_requirements() -> list[str]:
    """Pip requirements of the served student (:mod:`rd_components.serving`): torch (the version
    it was saved with, without a local ``+cpu`` / ``+cu121`` label), numpy, pandas and mlflow."""
    from importlib.metadata import version

    return [f"torch=={torch.__version__.split('+')[0]}", f"numpy=={version('numpy')}", f"pandas=={version('pandas')}",
            f"mlflow=={version('mlflow')}"]


def segmentation_signature(example_shape: Sequence[int], class_names: Sequence[str]) -> ModelSignature:
    """Signature of a served segmentation student: input ``(-1, C, -1, ...)`` float32 (any batch and
    spatial size, as it is segmented in windows), output ``label_map`` ``(-1, -1, ...)`` int64 and one
    ``prob_<class>`` float32 map of that shape per class (:mod:`rd_components.serving`)."""
    free = (-1,) * (len(example_shape) - 2)
    maps = (-1, *free)
    return ModelSignature(
        inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, int(example_shape[1]), *free))]),
        outputs=Schema([TensorSpec(np.dtype(np.int64), maps, "label_map"),
                        *(TensorSpec(np.dtype(np.float32), maps, f"prob_{name}") for name in class_names)]))


class MLflowRegistryHandler:
    """Companion of MONAI's ``MLFlowHandler`` for the end of a training run.

    On ``COMPLETED`` (attach it *before* the ``MLFlowHandler`` that closes the run): uploads
    ``artifacts`` (files or folders that exist), logs the exported best student and registers
    it as ``registered_model_name``: the TorchScript ``model.ts`` behind the small pyfunc of
    :mod:`rd_components.serving` (logged as model from code, so loading it deserialises no
    pickle), answering ``(N, C, *spatial)`` arrays with the predicted class name and one
    probability per class (classification) or a label map and one probability map per class
    (``model_info["task_kind"] == "segmentation"``), also through ``mlflow models serve``. On
    ``EXCEPTION_RAISED``: marks the run FAILED, so a crashed run is never left RUNNING, and re-raises.

    Args:
        mlflow_handler: the trainer's ``MLFlowHandler`` (its run and client are reused).
        exporter: the :class:`StudentExportHandler` that produced the best student.
        registered_model_name: model registry name; ``None`` logs the model without registering.
        artifacts: paths uploaded to the run (missing ones are skipped), or a callable giving them.
        enabled: ``False`` on non-zero ranks.
    """

    def __init__(
        self,
        mlflow_handler: MLFlowHandler | None,
        exporter: StudentExportHandler | None = None,
        registered_model_name: str | None = None,
        artifacts: Sequence[str | os.PathLike] | Callable[[], Sequence[str | os.PathLike]] = (),
        enabled: bool = True,
    ) -> None:
        self.mlflow_handler = mlflow_handler
        self.exporter = exporter
        self.registered_model_name = registered_model_name
        self.artifacts = artifacts
        self.enabled = enabled and mlflow_handler is not None
        self.model_uri: str | None = None
        self.model_version: str | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``COMPLETED`` and ``EXCEPTION_RAISED``."""
        if self.enabled:
            engine.add_event_handler(Events.COMPLETED, self.completed)
            engine.add_event_handler(Events.EXCEPTION_RAISED, self.failed)

    @property
    def run_id(self) -> str | None:
        run = getattr(self.mlflow_handler, "cur_run", None)
        return None if run is None else run.info.run_id

    def completed(self, engine: Engine) -> None:
        """Upload artifacts and register the student in the run of the ``MLFlowHandler``."""
        run_id = self.run_id
        if run_id is None:
            logger.warning("No active MLflow run: nothing registered.")
            return
        client = self.mlflow_handler.client
        paths = self.artifacts() if callable(self.artifacts) else self.artifacts
        for path in map(Path, paths):
            if path.is_dir():
                client.log_artifacts(run_id, str(path), artifact_path=path.name)
            elif path.is_file():
                client.log_artifact(run_id, str(path))
        if self.exporter is None or self.exporter.exported is None:
            return
        from .. import serving

        exporter = self.exporter
        task_kind = exporter.model_info.get("task_kind", "classification")
        # a segmentation student takes any spatial size: the signature MLflow would infer from the example fixes it
        signature = (segmentation_signature(exporter.example_shape, exporter.model_info["class_names"])
                     if task_kind == "segmentation" else None)
        mlflow.set_tracking_uri(client.tracking_uri)
        # MLflow records each artifact's source path in MLmodel: log copies from a neutral
        # temporary folder, so that no folder of the user's (perhaps named after a patient) is recorded
        with mlflow.start_run(run_id=run_id), tempfile.TemporaryDirectory(prefix="rd-student-") as staging:
            artifacts = {"model": shutil.copy2(exporter.script_path, Path(staging) / "model.ts"),
                         "model_info": shutil.copy2(exporter.ckpt_dir / "model_info.json", Path(staging) / "model_info.json")}
            info = mlflow.pyfunc.log_model(
                name="student",
                python_model=serving.__file__,
                artifacts={name: str(path) for name, path in artifacts.items()},
                # batch 2 and the bundle's patch: the signature MLflow infers keeps the batch free
                input_example=torch.rand((2, *exporter.example_shape[1:])).numpy(),
                signature=signature,
                registered_model_name=self.registered_model_name,
                metadata={"class_names": exporter.model_info.get("class_names"), "task_kind": task_kind},
                # stated, not inferred: MLflow's inference imports the model in a subprocess
                # (about 20 s per run on 2 CPU cores) to find what it needs
                pip_requirements=student_requirements(),
            )
        self.model_uri = info.model_uri
        self.model_version = None if info.registered_model_version is None else str(info.registered_model_version)
        logger.info("Student logged to MLflow run %s as %s (registered: %s v%s).", run_id, info.model_uri,
                    self.registered_model_name, self.model_version)

    def failed(self, engine: Engine, error: Exception) -> None:
        """Mark the run FAILED and re-raise ``error``."""
        run_id = self.run_id
        if run_id is not None:
            try:
                self.mlflow_handler.client.set_terminated(run_id, "FAILED")
                self.mlflow_handler.cur_run = None
            except Exception as mlflow_error:  # the original error matters more
                logger.warning("Could not mark MLflow run %s FAILED: %s", run_id, mlflow_error)
        raise error
