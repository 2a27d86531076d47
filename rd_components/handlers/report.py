"""Training report: per-epoch history, training curves and confusion matrix as PNG files."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ignite.engine import Engine, Events

from ..atomic import atomic_write, atomic_write_text
from .predictions import PredictionCollector

__all__ = ["TrainingReportHandler", "plot_confusion_matrix", "plot_training_curves"]

logger = logging.getLogger(__name__)


def plot_training_curves(history: Sequence[dict], path: str | os.PathLike) -> None:
    """Plot losses (left) and validation metrics (right) of ``history`` (one dict per epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    keys = sorted({k for row in history for k in row if k != "epoch"})
    loss_keys = [k for k in keys if k.startswith("train_")]
    metric_keys = [k for k in keys if not k.startswith("train_")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for key in loss_keys:
        axes[0].plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key.removeprefix("train_"))
    axes[0].set(title="training loss terms", xlabel="epoch", ylabel="value")
    for key in metric_keys:
        axes[1].plot(epochs, [row.get(key, np.nan) for row in history], marker="o", label=key)
    axes[1].set(title="validation", xlabel="epoch", ylabel="metric", ylim=(0, 1.02))
    save_curves(fig, axes, path)


def save_curves(fig: Any, axes: Sequence[Any], path: str | os.PathLike) -> None:
    """Grid and legend on every panel of a curves figure, then save it atomically and close it."""
    import matplotlib.pyplot as plt

    for ax in axes:
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def plot_confusion_matrix(labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str], path: str | os.PathLike, title: str = "") -> np.ndarray:
    """Save a row-normalised confusion matrix of ``labels (N,)`` vs ``predicted (N,)``; return counts ``(K, K)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from sklearn.metrics import confusion_matrix

    k = len(class_names)
    counts = confusion_matrix(labels, predicted, labels=list(range(k)))
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * k, 0.8 + 0.6 * k))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(counts[i, j]), ha="center", va="center", color="white" if rates[i, j] > 0.5 else "black", fontsize=8)
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set(xlabel="predicted", ylabel="true", title=title or f"confusion matrix (accuracy {np.trace(counts) / max(counts.sum(), 1):.3f})")
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return counts


class TrainingReportHandler:
    """Record trainer and validator metrics per epoch; at the end write history and plots.

    Attach it to the trainer *after* the ``ValidationHandler`` so the validator's metrics of the
    epoch are already computed, and *before* the MLflow handlers that upload the files.
    Writes ``history.json``, ``training_curves.png`` and ``confusion_matrix.png`` (best epoch's
    validation predictions) under ``output_dir``.

    Args:
        output_dir: folder for the files.
        validator: the validation evaluator (its ``state.metrics`` are recorded), or ``None``.
        collector: the validator's :class:`PredictionCollector`, or ``None``.
        class_names: names of the ``K`` classes, for the confusion matrix.
        enabled: ``False`` on non-zero ranks.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        validator: Engine | None = None,
        collector: PredictionCollector | None = None,
        class_names: Sequence[str] | None = None,
        enabled: bool = True,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.validator = validator
        self.collector = collector
        self.class_names = list(class_names) if class_names else None
        self.enabled = enabled
        self.history: list[dict] = []

    def attach(self, engine: Engine) -> None:
        """Register on the trainer's ``EPOCH_COMPLETED`` and ``COMPLETED``."""
        if self.enabled:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self.record)
            engine.add_event_handler(Events.COMPLETED, self.write)

    def record(self, engine: Engine) -> None:
        """Append this epoch's scalar metrics."""
        row: dict = {"epoch": int(engine.state.epoch)}
        for source in (engine.state.metrics, self.validator.state.metrics if self.validator is not None else {}):
            row.update({k: float(v) for k, v in source.items() if np.isscalar(v) or getattr(v, "ndim", 1) == 0})
        self.history.append(row)

    def state_dict(self) -> dict:
        """The per-epoch history (for resumable checkpoints)."""
        return {"history": [dict(row) for row in self.history]}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.history = [dict(row) for row in state.get("history", [])]

    @property
    def paths(self) -> list[Path]:
        """Files this handler writes."""
        return [self.output_dir / n for n in ("history.json", "training_curves.png", "confusion_matrix.png")]

    def write(self, engine: Engine) -> None:
        """Write ``history.json`` and the plots."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.output_dir / "history.json", json.dumps(self.history, indent=2))
        if self.history:
            plot_training_curves(self.history, self.output_dir / "training_curves.png")
        best = self.collector.best if self.collector is not None else None
        if best is not None and len(best["labels"]):
            k = best["probs"].shape[1]
            names = self.class_names or [str(i) for i in range(k)]
            plot_confusion_matrix(best["labels"], best["probs"].argmax(1), names, self.output_dir / "confusion_matrix.png",
                                  title="validation, best epoch")
        logger.info("Training report written to %s", self.output_dir)


class EvaluationReportHandler:
    """On an evaluator's ``COMPLETED``: write ``metrics.json`` and ``confusion_matrix.png``.

    Attach it after the :class:`PredictionCollector` and before an ``MLFlowHandler`` whose
    ``artifacts`` point at ``output_dir``, so the files exist when they are uploaded.

    Args:
        output_dir: folder for the files.
        collector: the evaluator's :class:`PredictionCollector`.
        class_names: names of the ``K`` classes.
        extra: extra JSON fields (split, checkpoint, ...).
    """

    def __init__(self, output_dir: str | os.PathLike, collector: PredictionCollector, class_names: Sequence[str],
                 extra: dict | None = None) -> None:
        self.output_dir = Path(output_dir)
        self.collector = collector
        self.class_names = list(class_names)
        self.extra = dict(extra or {})

    def attach(self, engine: Engine) -> None:
        """Register on ``COMPLETED``."""
        engine.add_event_handler(Events.COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        metrics = {k: float(v) for k, v in engine.state.metrics.items() if np.isscalar(v) or getattr(v, "ndim", 1) == 0}
        result = {**self.extra, "metrics": metrics, "class_names": self.class_names}
        latest = self.collector.latest
        if latest is not None and len(latest["labels"]):
            counts = plot_confusion_matrix(latest["labels"], latest["probs"].argmax(1), self.class_names,
                                           self.output_dir / "confusion_matrix.png")
            result["num_samples"] = int(len(latest["labels"]))
            result["confusion_matrix"] = counts.tolist()
        atomic_write_text(self.output_dir / "metrics.json", json.dumps(result, indent=2))
        logger.info("Evaluation metrics %s written to %s", metrics, self.output_dir / "metrics.json")
