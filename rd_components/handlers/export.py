"""Save and export the best deployable student: state dict (atomically, also while training) and
TorchScript, checked against eager."""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver
from torch import nn

from ..atomic import atomic_torch_save, atomic_write, atomic_write_text

__all__ = ["AtomicCheckpointSaver", "StudentExportHandler", "export_torchscript"]

logger = logging.getLogger(__name__)


def export_torchscript(model: nn.Module, path: str | os.PathLike, example: torch.Tensor, atol: float = 1e-4) -> float:
    """Script ``model`` (eval mode) to ``path``; return the max abs difference to eager on ``example``.

    Models that cannot be scripted (Python-only code such as ``peft`` adapters or input checks)
    are traced on ``example`` instead, which fixes their control flow to that input's shape;
    the fallback is logged. Raises ``RuntimeError`` when the exported model disagrees with eager
    by more than ``atol``.
    """
    from monai.networks.utils import convert_to_torchscript

    model = model.eval()
    try:
        exported = convert_to_torchscript(model)
    except Exception as error:
        logger.warning("TorchScript scripting of %s failed (%s: %s); tracing it on a %s input instead.",
                       type(model).__name__, type(error).__name__, str(error).splitlines()[0][:120], tuple(example.shape))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            exported = convert_to_torchscript(model, use_trace=True, inputs=[example], check_trace=False)
    with torch.no_grad():
        diff = float((exported(example) - model(example)).abs().max())
    if diff > atol:
        raise RuntimeError(f"TorchScript export of {type(model).__name__} differs from eager by {diff:.2e} > {atol}.")
    atomic_write(path, lambda tmp: torch.jit.save(exported, str(tmp)))
    return diff


class _AtomicDiskSaver(DiskSaver):
    """ignite's ``DiskSaver(atomic=True)`` (temporary file, then ``os.replace``) with MONAI's fixed file name.

    With a fixed name, ignite's ``Checkpoint`` removes the previous file right before saving the
    new one under the same name; that removal is skipped, as the atomic replace overwrites it.
    """

    def __init__(self, dirname: str | os.PathLike, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        if self.filename is None:
            super().remove(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` (same arguments) whose files are replaced atomically.

    MONAI's saver deletes the previous best ``model.pt`` and then writes the new one in place
    (its ``DiskSaver`` has ``atomic=False``, not configurable), so a run killed in between leaves
    no model or half a file. Here every save goes through ignite's atomic ``DiskSaver``: the
    previous file stays until the new one is complete (ignite also makes it group/other readable).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                old = checkpoint.save_handler
                checkpoint.save_handler = _AtomicDiskSaver(old.dirname, getattr(old, "filename", None))


class StudentExportHandler:
    """At the end of training, write the best student as ``model.pt`` and ``model.ts``.

    The best weights are those the validator's :class:`AtomicCheckpointSaver` kept as ``model.pt`` (a
    state dict of :class:`~rd_components.networks.DeployableStudent`); if none exists the final
    weights are used and saved there. The live network is left untouched.

    Args:
        network: the deployable student being trained.
        ckpt_dir: folder of ``model.pt`` / ``model.ts``.
        example_shape: input shape for the export check, e.g. ``(1, 1, 64, 64)``.
        model_info: JSON-serialisable facts the inference bundle needs (class names, patch
            size, spatial dims, ...), written as ``model_info.json`` beside the model.
        enabled: ``False`` on non-zero ranks.
    """

    def __init__(
        self,
        network: nn.Module,
        ckpt_dir: str | os.PathLike,
        example_shape: Sequence[int],
        best_filename: str = "model.pt",
        script_filename: str = "model.ts",
        model_info: dict | None = None,
        enabled: bool = True,
    ) -> None:
        self.network = network
        self.ckpt_dir = Path(ckpt_dir)
        self.example_shape = tuple(int(s) for s in example_shape)
        self.best_path = self.ckpt_dir / best_filename
        self.script_path = self.ckpt_dir / script_filename
        self.model_info = dict(model_info or {})
        self.enabled = enabled
        self.exported: nn.Module | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``COMPLETED``."""
        if self.enabled:
            engine.add_event_handler(Events.COMPLETED, self)

    def best_model(self) -> nn.Module:
        """A CPU copy of the network holding the best weights."""
        model = copy.deepcopy(self.network).cpu().eval()
        if self.best_path.exists():
            model.load_state_dict(torch.load(self.best_path, map_location="cpu", weights_only=True))
        else:
            atomic_torch_save(model.state_dict(), self.best_path)
        return model

    def __call__(self, engine: Engine | None = None) -> None:
        model = self.best_model()
        diff = export_torchscript(model, self.script_path, torch.rand(self.example_shape))
        self.exported = model
        info = {**self.model_info, "input_shape": list(self.example_shape), "torchscript_max_abs_diff": diff}
        atomic_write_text(self.ckpt_dir / "model_info.json", json.dumps(info, indent=2, default=str))
        logger.info("Exported best student to %s and %s (TorchScript vs eager max abs diff %.1e).", self.best_path, self.script_path, diff)
