"""Resumable training: the whole training state at every epoch end, written atomically.

Saving and restoring are ignite's (``Checkpoint``, ``Checkpoint.load_objects``, an atomic
``DiskSaver``); the state that has no ``state_dict`` of its own (RNGs, best metrics, MLflow run)
goes through the small objects of :mod:`.training_state`. This module holds the handler, the
check of the run's parameters and the checkpoint reading.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import Checkpoint

from ..overrides import as_bool
from .export import _AtomicDiskSaver
from .training_state import BestMetric, MLflowRun, RNGStates, checkpointable

__all__ = ["ResumableCheckpoint", "read_resume_checkpoint", "resumed_run_name"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 2


def read_resume_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (loaded on CPU with ``weights_only=True``), or ``None`` if there is none.

    Returns:
        ``{"resume": {"format", "completed", "parameters"}, "trainer": ignite ``Engine.state_dict()``,
        "trainer_best", "objects": {name: state_dict}, "rng", "mlflow": {"run_id", "run_name"}}``.

    Raises:
        ValueError: the file exists but cannot be read (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(f"Resume checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                         "delete it to start from scratch.") from None
    if not isinstance(state, dict) or state.get("resume", {}).get("format") != FORMAT_VERSION:
        raise ValueError(f"Resume checkpoint {path} is not a resume checkpoint of this version; delete it to start from scratch.")
    return state


def resumed_run_name(checkpoint_file: str | os.PathLike, resume: bool) -> str | None:
    """MLflow run name to continue: the unfinished run recorded in ``checkpoint_file``, else ``None``.

    Used by the bundles as ``run_name: "$resumed_run_name(@resume_file, @resume) or unique_run_name(...)"``,
    so a resumed run logs into the same MLflow run (MONAI's ``MLFlowHandler`` re-attaches to the
    unfinished run of that name).
    """
    if not as_bool(resume):
        return None
    state = read_resume_checkpoint(checkpoint_file)
    if state is None or state["resume"]["completed"]:
        return None
    return state["mlflow"]["run_name"]


class _RunRecord:
    """What the checkpoint says about itself: format, whether its run finished, the run's parameters."""

    def __init__(self, parameters: Any) -> None:
        # JSON-normalised (values that are not JSON types compared as str), so that a mismatch names its keys
        self.parameters = json.loads(json.dumps(parameters, sort_keys=True, default=str)) if parameters is not None else {}
        self.completed = False

    def state_dict(self) -> dict[str, Any]:
        return {"format": FORMAT_VERSION, "completed": self.completed, "parameters": self.parameters}


class ResumableCheckpoint:
    """Save the full training state at the end of every epoch; restore it when a run restarts.

    The checkpoint holds every object in ``objects`` through its ``state_dict`` (student and
    shared classifier, reprogrammer, loss, optimizer, LR scheduler, the best-model
    ``CheckpointSaver``'s ranking, report histories...), the trainer's iteration and epoch length,
    the engines' best metric, the RNG states of ``torch``, ``numpy``, ``random``, CUDA and of the
    random training transforms, the MLflow run id and name, and the run's parameters. ignite's
    ``Checkpoint`` writes it to a temporary file renamed onto ``checkpoint_file``, so a killed run
    never leaves a half-written checkpoint. A run killed mid-epoch restarts from its last
    completed epoch and, on CPU with the same seed, ends with the same metrics as an
    uninterrupted run.

    Attach it first among the trainer's handlers: it restores on ``STARTED`` before the
    others start, and registers its save on ``EPOCH_COMPLETED`` at that moment, so it runs after
    every other epoch handler (validation, LR step, MLflow logging) has finished.

    Args:
        checkpoint_file: path of the checkpoint (``.pt``); the only file written.
        objects: name -> object with ``state_dict``/``load_state_dict``; ignite engines other than
            the trainer keep their best metric; ``CheckpointSaver`` keeps its best-model ranking;
            ``None`` values are skipped (handlers disabled on other ranks).
        resume: restore from ``checkpoint_file`` when it exists and its run is unfinished; when
            it does not exist the run starts from scratch, so ``resume=True`` is safe for the
            first start too.
        fingerprint: run parameters (JSON-able); resuming with different ones is refused.
        mlflow_handler: MONAI ``MLFlowHandler`` whose run id is recorded.
        random_transforms: the training dataset's random transform(s), whose RNG states are kept.
        save: write checkpoints (``False`` on ranks other than 0; every rank still restores).
    """

    def __init__(
        self,
        checkpoint_file: str | os.PathLike,
        objects: Mapping[str, Any],
        resume: bool = False,
        fingerprint: Any = None,
        mlflow_handler: Any = None,
        random_transforms: Any = None,
        save: bool = True,
    ) -> None:
        self.checkpoint_file = Path(checkpoint_file)
        self.objects = {k: checkpointable(v) for k, v in objects.items() if v is not None}
        self.resume = as_bool(resume)
        self.record = _RunRecord(fingerprint)
        self.mlflow = MLflowRun(mlflow_handler)
        self.rng = RNGStates(random_transforms)
        self.save_enabled = save
        self.resumed_from_epoch: int | None = None
        self._checkpoint: Checkpoint | None = None
        self._saving_attached = False

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``STARTED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    def _to_load(self, engine: Engine) -> dict[str, Any]:
        return {"trainer": engine, "trainer_best": BestMetric(engine), "objects": self.objects, "rng": self.rng,
                "mlflow": self.mlflow}

    # ---- saving --------------------------------------------------------------------------------
    def save(self, engine: Engine) -> None:
        """Write the checkpoint of the epoch that just completed."""
        self.mlflow.check()
        if not self.save_enabled:
            return
        if self._checkpoint is None:
            # n_saved=None: every call writes (also COMPLETED, at the last epoch's iteration); the saver's
            # fixed file name makes that one file, replaced atomically, never removed first (the same atomic
            # DiskSaver as the best-model saver's)
            self._checkpoint = Checkpoint({"resume": self.record, **self._to_load(engine)},
                                          _AtomicDiskSaver(self.checkpoint_file.parent, self.checkpoint_file.name),
                                          filename_pattern=self.checkpoint_file.name, n_saved=None)
        self._checkpoint(engine)

    def _completed(self, engine: Engine) -> None:
        # a finished run is not resumed: the next start with resume=True begins a new run
        self.record.completed = True
        self.save(engine)

    # ---- restoring -----------------------------------------------------------------------------
    def _started(self, engine: Engine) -> None:
        if not self._saving_attached:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.save)
            self._saving_attached = True
        if not self.resume:
            return
        state = read_resume_checkpoint(self.checkpoint_file)
        if state is None:
            logger.info("No resume checkpoint at %s: training starts from scratch.", self.checkpoint_file)
            return
        if state["resume"]["completed"]:
            logger.info("The run in %s had finished: training starts a new run.", self.checkpoint_file)
            return
        self.restore(engine, state)

    def restore(self, engine: Engine, state: dict[str, Any]) -> None:
        """Load ``state`` (from :func:`read_resume_checkpoint`) into ``engine``, the objects and the RNGs.

        Raises:
            ValueError: the checkpoint was written with other parameters, epochs or epoch length.
        """
        saved, now = state["resume"]["parameters"], self.record.parameters
        changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
        if changed:
            raise ValueError(f"Resume checkpoint {self.checkpoint_file} was written with other parameters "
                             f"({', '.join(changed)} differ); resume with the same settings or delete it.")
        trainer = state["trainer"]
        if (trainer["epoch_length"], trainer.get("max_epochs")) != (engine.state.epoch_length, engine.state.max_epochs):
            raise ValueError(f"Resume checkpoint {self.checkpoint_file}: epoch length / epochs "
                             f"{trainer['epoch_length']}/{trainer.get('max_epochs')} differ from this run's "
                             f"{engine.state.epoch_length}/{engine.state.max_epochs}.")
        to_load = self._to_load(engine)
        to_load["objects"] = {k: v for k, v in self.objects.items() if k in state["objects"]}
        if missing := sorted(set(self.objects) - set(to_load["objects"])):
            logger.warning("Resume checkpoint %s holds no state for %s: they start afresh.", self.checkpoint_file,
                           ", ".join(missing))
        # ignite continues its epoch loop from the trainer's restored iteration and epoch
        Checkpoint.load_objects(to_load=to_load, checkpoint=state)
        self.resumed_from_epoch = engine.state.epoch
        logger.info("Resumed from %s after epoch %d of %d (MLflow run %s).", self.checkpoint_file, engine.state.epoch,
                    engine.state.max_epochs, self.mlflow.resumed_run_id)
