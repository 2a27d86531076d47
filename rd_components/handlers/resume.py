"""Resumable training: the whole training state at every epoch end, written atomically.

The RNG capture/restore, the parameter fingerprint and the atomic write are in
:mod:`.training_state`; this module holds the handler and the checkpoint reading.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events

from ..utils import as_bool
from .training_state import atomic_torch_save, capture_rng_state, config_fingerprint, restore_rng_state

__all__ = ["ResumableCheckpoint", "resumed_run_name", "read_resume_checkpoint"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def read_resume_checkpoint(path: str | os.PathLike) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (loaded with ``weights_only=True``), or ``None`` if there is none.

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
    if not isinstance(state, dict) or state.get("format") != FORMAT_VERSION:
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
    if state is None or state.get("completed"):
        return None
    return state.get("mlflow", {}).get("run_name")


class ResumableCheckpoint:
    """Save the full training state at the end of every epoch; restore it when a run restarts.

    The checkpoint holds every object in ``objects`` through its ``state_dict`` (student and
    shared classifier, reprogrammer, loss, optimizer, LR scheduler, the best-model
    ``CheckpointSaver``'s ranking, report histories...), the trainer's epoch and iteration, the
    validator's best metric, the RNG states of ``torch``, ``numpy``, ``random``, CUDA and of the
    random training transforms, the MLflow run id and name, and a fingerprint of the run's
    parameters. It is written to a temporary file and renamed, so a killed run never leaves a
    half-written checkpoint. A run killed mid-epoch restarts from its last completed epoch and,
    on CPU with the same seed, ends with the same metrics as an uninterrupted run.

    Attach it first among the trainer's handlers: it restores on ``STARTED`` before the
    others start, and registers its save on ``EPOCH_COMPLETED`` at that moment, so it runs after
    every other epoch handler (validation, LR step, MLflow logging) has finished.

    Args:
        checkpoint_file: path of the checkpoint (``.pt``).
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
        self.objects = {k: v for k, v in objects.items() if v is not None}
        self.resume = as_bool(resume)
        self.fingerprint, self.parameters = config_fingerprint(fingerprint)
        self.mlflow_handler = mlflow_handler
        self.random_transforms = random_transforms
        self.save_enabled = save
        self.resumed_from_epoch: int | None = None
        self._resumed_run_id: str | None = None
        self._saving_attached = False

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``STARTED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self._started)
        engine.add_event_handler(Events.COMPLETED, self._completed)

    # ---- saving --------------------------------------------------------------------------------
    def _object_state(self, obj: Any) -> Any:
        from monai.handlers import CheckpointSaver

        if isinstance(obj, Engine):
            return {"best_metric": float(getattr(obj.state, "best_metric", -1)),
                    "best_metric_epoch": int(getattr(obj.state, "best_metric_epoch", -1))}
        if isinstance(obj, CheckpointSaver):
            ranking = getattr(obj, "_key_metric_checkpoint", None)
            return None if ranking is None else ranking.state_dict()
        return obj.state_dict()

    def state(self, engine: Engine, completed: bool = False) -> dict[str, Any]:
        """Everything needed to continue training ``engine`` after its current epoch."""
        run = getattr(self.mlflow_handler, "cur_run", None)
        return {
            "format": FORMAT_VERSION,
            "completed": completed,
            "epoch": int(engine.state.epoch),
            "iteration": int(engine.state.iteration),
            "max_epochs": engine.state.max_epochs,
            "epoch_length": engine.state.epoch_length,
            "trainer_best": self._object_state(engine),
            "objects": {name: self._object_state(obj) for name, obj in self.objects.items()},
            "rng": capture_rng_state(self.random_transforms),
            "mlflow": {"run_id": run.info.run_id if run else None, "run_name": run.info.run_name if run else None},
            "fingerprint": self.fingerprint,
            "parameters": self.parameters,
        }

    def _write(self, state: dict[str, Any]) -> None:
        atomic_torch_save(state, self.checkpoint_file, prefix=".resume-")

    def save(self, engine: Engine) -> None:
        """Write the checkpoint of the epoch that just completed."""
        self._check_mlflow_run()
        if self.save_enabled:
            self._write(self.state(engine))

    def _completed(self, engine: Engine) -> None:
        # a finished run is not resumed: the next start with resume=True begins a new run
        if self.save_enabled:
            self._write(self.state(engine, completed=True))

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
        if state["completed"]:
            logger.info("The run in %s had finished: training starts a new run.", self.checkpoint_file)
            return
        self.restore(engine, state)

    def restore(self, engine: Engine, state: dict[str, Any]) -> None:
        """Load ``state`` (from :meth:`state`) into ``engine``, the objects and the RNGs."""
        if state["fingerprint"] != self.fingerprint:
            saved, now = state["parameters"], self.parameters
            changed = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            raise ValueError(f"Resume checkpoint {self.checkpoint_file} was written with other parameters "
                             f"({', '.join(changed)} differ); resume with the same settings or delete it.")
        if state["epoch_length"] != engine.state.epoch_length or state["max_epochs"] != engine.state.max_epochs:
            raise ValueError(f"Resume checkpoint {self.checkpoint_file}: epoch length / epochs "
                             f"{state['epoch_length']}/{state['max_epochs']} differ from this run's "
                             f"{engine.state.epoch_length}/{engine.state.max_epochs}.")
        for name, obj in self.objects.items():
            saved = state["objects"].get(name)
            if saved is None:
                continue
            if isinstance(obj, Engine):
                obj.state.best_metric, obj.state.best_metric_epoch = saved["best_metric"], saved["best_metric_epoch"]
            else:  # modules, optimizer, scheduler, CheckpointSaver (its best-model ranking), reports
                obj.load_state_dict(saved)
        engine.state.best_metric = state["trainer_best"]["best_metric"]
        engine.state.best_metric_epoch = state["trainer_best"]["best_metric_epoch"]
        # ignite continues its epoch loop from these counters
        engine.state.epoch, engine.state.iteration = state["epoch"], state["iteration"]
        if not restore_rng_state(state["rng"], self.random_transforms):
            logger.warning("Resume checkpoint %s: random transforms changed; augmentation will not replay exactly.",
                           self.checkpoint_file)
        self.resumed_from_epoch = state["epoch"]
        self._resumed_run_id = state["mlflow"]["run_id"]
        logger.info("Resumed from %s after epoch %d of %d (MLflow run %s).", self.checkpoint_file, state["epoch"],
                    state["max_epochs"], state["mlflow"]["run_id"])

    def _check_mlflow_run(self) -> None:
        # the MLflow handler starts after this one, so its run is known only from the first epoch on
        run = getattr(self.mlflow_handler, "cur_run", None)
        if self._resumed_run_id and run is not None and run.info.run_id != self._resumed_run_id:
            logger.warning("Resumed training logs to MLflow run %s, not to the checkpoint's run %s.", run.info.run_id,
                           self._resumed_run_id)
        self._resumed_run_id = None
