"""The parts of a training run's state that have no ``state_dict`` of their own, as small objects that do.

ignite's ``Checkpoint`` saves and ``Checkpoint.load_objects`` restores objects with
``state_dict``/``load_state_dict``; :class:`~rd_components.handlers.ResumableCheckpoint` gives it
these next to the config's modules, optimizer and scheduler: the random number generators, the
engines' best metric, the best-model ranking of MONAI's ``CheckpointSaver`` and the MLflow run.
What their ``state_dict`` returns is stored as is (``resume.FORMAT_VERSION``), and loads with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import random
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import CheckpointSaver

__all__ = ["BestMetric", "MLflowRun", "RNGStates", "SaverRanking", "checkpointable"]

logger = logging.getLogger(__name__)


def _pack_numpy_state(state: tuple) -> tuple:
    # torch.load(weights_only=True) refuses numpy arrays: the uint32 key array is kept as an int64 tensor
    name, keys, pos, has_gauss, cached = state
    return name, torch.from_numpy(np.asarray(keys, dtype=np.int64)), int(pos), int(has_gauss), float(cached)


def _unpack_numpy_state(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return name, keys.numpy().astype(np.uint32), pos, has_gauss, cached


def _randomizables(transform: Any) -> list:
    """MONAI ``Randomizable`` transforms inside ``transform`` (a Compose, a transform or ``None``), in order."""
    from monai.transforms import Compose, Randomizable

    if transform is None:
        return []
    if isinstance(transform, Compose):
        return [r for t in transform.transforms for r in _randomizables(t)]
    return [transform] if isinstance(transform, Randomizable) else []


class RNGStates:
    """Every random number generator a training run draws from: torch, CUDA, numpy, ``random`` and
    each MONAI ``Randomizable`` inside ``random_transforms`` (the training dataset's random
    transform(s): a ``Compose``, a transform or ``None``).

    ``state_dict()`` is ``{"torch": ByteTensor, "cuda": [ByteTensor per device] (empty without
    CUDA), "numpy": numpy's global state, "python": random.getstate(), "transforms": [numpy state
    per random transform]}``. ``load_state_dict`` restores the CUDA states only when the number of
    visible devices matches, and the transforms' states only when their number matches (otherwise
    augmentation does not replay exactly, which is logged).
    """

    def __init__(self, random_transforms: Any = None) -> None:
        self.random_transforms = random_transforms

    def state_dict(self) -> dict[str, Any]:
        return {
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": _pack_numpy_state(np.random.get_state()),
            "python": random.getstate(),
            "transforms": [_pack_numpy_state(t.R.get_state()) for t in _randomizables(self.random_transforms)],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        np.random.set_state(_unpack_numpy_state(state["numpy"]))
        random.setstate(state["python"])
        transforms = _randomizables(self.random_transforms)
        if len(transforms) != len(state["transforms"]):
            logger.warning("Resume: the random transforms changed; augmentation will not replay exactly.")
            return
        for transform, saved in zip(transforms, state["transforms"]):
            transform.R.set_state(_unpack_numpy_state(saved))


class BestMetric:
    """An engine's best metric and its epoch (``state.best_metric``, ``state.best_metric_epoch``),
    which MONAI's workflows keep across epochs but ignite's ``Engine.state_dict`` leaves out
    (-1 before the first)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def state_dict(self) -> dict[str, float | int]:
        return {"best_metric": float(getattr(self.engine.state, "best_metric", -1)),
                "best_metric_epoch": int(getattr(self.engine.state, "best_metric_epoch", -1))}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.engine.state.best_metric = state["best_metric"]
        self.engine.state.best_metric_epoch = state["best_metric_epoch"]


class SaverRanking:
    """The best-model ranking of a MONAI ``CheckpointSaver`` (its key-metric ``Checkpoint``), which
    has ``load_state_dict`` but no ``state_dict``: ignite ``Checkpoint.state_dict()``, ``(priority,
    file name)`` pairs, or ``{}`` when it keeps no key-metric model."""

    def __init__(self, saver: CheckpointSaver) -> None:
        self.saver = saver

    def state_dict(self) -> dict[str, Any]:
        ranking = getattr(self.saver, "_key_metric_checkpoint", None)
        return {} if ranking is None else ranking.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.saver.load_state_dict(state)


class MLflowRun:
    """The MLflow run of a MONAI ``MLFlowHandler`` (``None`` on other ranks): ``{"run_id", "run_name"}``.

    Restoring only records the saved run id: the run itself is re-attached by name before the
    handler starts (:func:`~rd_components.handlers.resumed_run_name`); :meth:`check` warns when
    the run the handler opened is another one.
    """

    def __init__(self, mlflow_handler: Any = None) -> None:
        self.mlflow_handler = mlflow_handler
        self.resumed_run_id: str | None = None

    def state_dict(self) -> dict[str, str | None]:
        run = getattr(self.mlflow_handler, "cur_run", None)
        return {"run_id": run.info.run_id if run else None, "run_name": run.info.run_name if run else None}

    def load_state_dict(self, state: dict[str, str | None]) -> None:
        self.resumed_run_id = state["run_id"]

    def check(self) -> None:
        """Warn, once, if the handler logs to another run than the resumed one (called at the first epoch
        end: the MLflow handler starts after the resume handler, so its run is known only then)."""
        run = getattr(self.mlflow_handler, "cur_run", None)
        if self.resumed_run_id and run is not None and run.info.run_id != self.resumed_run_id:
            logger.warning("Resumed training logs to MLflow run %s, not to the checkpoint's run %s.", run.info.run_id,
                           self.resumed_run_id)
        self.resumed_run_id = None


def checkpointable(obj: Any) -> Any:
    """``obj`` itself, or the adapter above that gives it ``state_dict``/``load_state_dict``: an ignite
    engine keeps its best metric (:class:`BestMetric`), a ``CheckpointSaver`` its ranking
    (:class:`SaverRanking`)."""
    if isinstance(obj, Engine):
        return BestMetric(obj)
    if isinstance(obj, CheckpointSaver):
        return SaverRanking(obj)
    return obj
