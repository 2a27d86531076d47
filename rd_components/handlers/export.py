"""Export the best deployable student: state dict and TorchScript, checked against eager."""

from __future__ import annotations

import copy
import json
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["StudentExportHandler", "export_torchscript"]

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
    torch.jit.save(exported, str(path))
    return diff


class StudentExportHandler:
    """At the end of training, write the best student as ``model.pt`` and ``model.ts``.

    The best weights are those the validator's ``CheckpointSaver`` kept as ``model.pt`` (a
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
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), self.best_path)
        return model

    def __call__(self, engine: Engine | None = None) -> None:
        model = self.best_model()
        diff = export_torchscript(model, self.script_path, torch.rand(self.example_shape))
        self.exported = model
        info = {**self.model_info, "input_shape": list(self.example_shape), "torchscript_max_abs_diff": diff}
        (self.ckpt_dir / "model_info.json").write_text(json.dumps(info, indent=2, default=str))
        logger.info("Exported best student to %s and %s (TorchScript vs eager max abs diff %.1e).", self.best_path, self.script_path, diff)
