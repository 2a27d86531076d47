"""Segmentation validation report: per-class Dice and HD95 curves, and an overlay of prediction and
ground truth, each validation epoch."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.metrics import compute_dice, compute_hausdorff_distance

from ..atomic import atomic_write, atomic_write_text
from .report import save_curves

__all__ = ["SegmentationReportHandler"]

logger = logging.getLogger(__name__)


class SegmentationReportHandler:
    """Per-class validation Dice and 95 % Hausdorff distance, written as curves and put in the metrics.

    Attached to the validation evaluator (before its ``MLFlowHandler``, which then logs
    ``val_dice_<class>`` and ``val_hd95_<class>`` with the epoch's other metrics). Each
    validation epoch it writes, into ``output_dir``: ``segmentation_history.json``,
    ``segmentation_curves.png`` (Dice left, HD95 in voxels right, one line per foreground class)
    and ``overlay_epoch_<n>.png`` (the first validation item's middle axial slice: image, ground
    truth, prediction). The run's report folder is uploaded to MLflow at the end of training.

    Reads ``engine.state.output``: decollated items with ``image`` ``(1, *spatial)`` and one-hot
    ``pred`` / ``label`` ``(C, *spatial)`` (the bundle's ``AsDiscreted`` postprocessing).

    Args:
        output_dir: folder of the report files.
        class_names: names of the classes, background first.
        enabled: ``False`` on ranks other than 0.
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], enabled: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.class_names = [str(c) for c in class_names]
        self.enabled = enabled
        self.history: list[dict[str, float]] = []
        # per-item values kept here, not in MONAI's cumulative metrics: those gather across ranks
        # when torch.distributed runs, and this handler runs on rank 0 only
        self._dice: list[torch.Tensor] = []
        self._hd95: list[torch.Tensor] = []
        self._overlay: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def attach(self, engine: Engine) -> None:
        """Collect on every iteration, report at the end of each validation epoch."""
        if not self.enabled:
            return
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._report)

    def _reset(self, engine: Engine) -> None:
        self._dice, self._hd95, self._overlay = [], [], None

    def _collect(self, engine: Engine) -> None:
        items = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        preds = torch.stack([torch.as_tensor(item["pred"]) for item in items]).float()
        labels = torch.stack([torch.as_tensor(item["label"]) for item in items]).float()
        self._dice.append(compute_dice(preds, labels, include_background=False, ignore_empty=True))
        self._hd95.append(compute_hausdorff_distance(preds, labels, include_background=False, percentile=95))
        if self._overlay is None:
            self._overlay = _middle_slices(items[0])

    def _report(self, engine: Engine) -> None:
        epoch = int(engine.state.epoch)  # MONAI's evaluator runs with the trainer's epoch number
        dice = _per_class(self._dice)
        hd95 = _per_class(self._hd95)
        row: dict[str, float] = {"epoch": epoch}
        for name, d, h in zip(self.class_names[1:], dice, hd95):
            key = _key(name)
            row[f"val_dice_{key}"], row[f"val_hd95_{key}"] = d, h
        engine.state.metrics.update({k: v for k, v in row.items() if k != "epoch"})
        self.history = [r for r in self.history if r["epoch"] != epoch] + [row]
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output_dir / "segmentation_history.json", json.dumps(self.history, indent=1))
        _plot_curves(self.history, self.class_names[1:], self.output_dir / "segmentation_curves.png")
        if self._overlay is not None:
            _plot_overlay(*self._overlay, self.output_dir / f"overlay_epoch_{epoch:03d}.png", epoch)

    def state_dict(self) -> dict[str, Any]:
        """The history, for a resumed run's curves."""
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.history = list(state.get("history", []))


def _key(name: str) -> str:
    return name.lower().replace(" ", "_").replace("/", "_")


def _per_class(batches: list[torch.Tensor]) -> list[float]:
    """Mean over the items of ``(B, C)`` batches, per class, ignoring NaN (a class absent from an item)."""
    values = torch.cat([b.float().cpu() for b in batches]) if batches else torch.zeros((0, 0))
    finite = torch.isfinite(values)
    means = torch.where(finite, values, 0.0).sum(0) / finite.sum(0).clamp_min(1)
    return [float(m) if n else float("nan") for m, n in zip(means, finite.sum(0))]


def _middle_slices(item: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(image, label, prediction)`` 2D arrays of an item's middle axial slice (class indices for the maps)."""
    image = np.asarray(torch.as_tensor(item["image"]).detach().cpu())[0]
    label = np.asarray(torch.as_tensor(item["label"]).detach().cpu()).argmax(0)
    pred = np.asarray(torch.as_tensor(item["pred"]).detach().cpu()).argmax(0)
    if image.ndim == 3:
        z = image.shape[2] // 2
        image, label, pred = image[..., z], label[..., z], pred[..., z]
    return image, label, pred


def _plot_curves(history: list[dict], foreground: Sequence[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name in foreground:
        key = _key(name)
        axes[0].plot(epochs, [row.get(f"val_dice_{key}", np.nan) for row in history], marker="o", label=name)
        axes[1].plot(epochs, [row.get(f"val_hd95_{key}", np.nan) for row in history], marker="o", label=name)
    axes[0].set(title="validation Dice per class", xlabel="epoch", ylabel="Dice", ylim=(0, 1.02))
    axes[1].set(title="validation HD95 per class", xlabel="epoch", ylabel="voxels")
    save_curves(fig, axes, path)


def _plot_overlay(image: np.ndarray, label: np.ndarray, pred: np.ndarray, path: Path, epoch: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    classes = max(int(label.max()), int(pred.max()), 1)
    for ax, (title, overlay) in zip(axes, (("image", None), ("ground truth", label), ("prediction", pred))):
        ax.imshow(image.T, cmap="gray", origin="lower")
        if overlay is not None:
            ax.imshow(np.ma.masked_equal(overlay.T, 0), cmap="tab10", vmin=0, vmax=max(classes, 9), alpha=0.5,
                      origin="lower", interpolation="nearest")
        ax.set_title(title)
        ax.axis("off")
    fig.suptitle(f"validation, epoch {epoch}")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=80))
    plt.close(fig)
