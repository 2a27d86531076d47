"""Collect an evaluator's predictions, keeping those of the best epoch."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["PredictionCollector"]


class PredictionCollector:
    """Gather labels and class probabilities of every evaluation pass.

    ``latest`` holds the last pass, ``best`` the pass whose epoch became the evaluator's
    best-metric epoch (what the best checkpoint predicts), so confusion matrices and reports
    need no second pass over the data.

    Args:
        pred_key: output key of the per-item prediction ``(K,)``.
        label_key: output key of the label.
        softmax: apply softmax to the prediction (``False`` when postprocessing already did).
    """

    def __init__(self, pred_key: str = "pred", label_key: str = "label", softmax: bool = False) -> None:
        self.pred_key = pred_key
        self.softmax = softmax
        self.label_key = label_key
        self._labels: list[int] = []
        self._probs: list[np.ndarray] = []
        self.latest: dict[str, np.ndarray] | None = None
        self.best: dict[str, np.ndarray] | None = None

    def attach(self, engine: Engine) -> None:
        """Register on ``EPOCH_STARTED``, ``ITERATION_COMPLETED``, ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._finish)

    def _reset(self, engine: Engine) -> None:
        self._labels, self._probs = [], []

    def _collect(self, engine: Engine) -> None:
        items: Any = engine.state.output
        items = items if isinstance(items, list) else [items]
        for item in items:
            probs = torch.as_tensor(item[self.pred_key]).detach().float().reshape(-1)
            probs = torch.softmax(probs, 0) if self.softmax else probs
            self._probs.append(probs.cpu().numpy())
            self._labels.append(int(torch.as_tensor(item[self.label_key]).reshape(-1)[0]))

    def _finish(self, engine: Engine) -> None:
        self.latest = {"labels": np.asarray(self._labels, dtype=np.int64), "probs": np.stack(self._probs) if self._probs else np.zeros((0, 0))}
        best_epoch = getattr(engine.state, "best_metric_epoch", -1)
        if self.best is None or best_epoch == engine.state.epoch or best_epoch == -1:
            self.best = self.latest

    def state_dict(self) -> dict[str, Any]:
        """``latest`` and ``best`` passes as tensors (for resumable checkpoints)."""
        def pack(result):
            return None if result is None else {k: torch.as_tensor(v) for k, v in result.items()}
        return {"latest": pack(self.latest), "best": pack(self.best)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""
        def unpack(result):
            return None if result is None else {k: torch.as_tensor(v).numpy() for k, v in result.items()}
        self.latest, self.best = unpack(state.get("latest")), unpack(state.get("best"))
