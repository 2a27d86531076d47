"""The loss terms of a training step, named by the loss alone, and their per-epoch averages.

No list of term names exists outside the loss: each step the trainer records the keys of the
dict its loss returned (:func:`record_loss_terms`) and puts their values in ``state.output``;
the per-epoch averages (:class:`LossTermAverages`), the progress bar and every handler that
logs ``state.metrics`` (report, MLflow, stats) follow whatever the loss returned.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ignite.engine import Engine, Events
from ignite.metrics import Average
from monai.utils.enums import CommonKeys as Keys

__all__ = ["LossTermAverages", "loss_terms", "record_loss_terms"]


def record_loss_terms(engine: Engine, names: Iterable[str]) -> None:
    """Record the names of the terms this step's loss returned (``loss`` first, then the loss's order)."""
    # ``loss`` first keeps ``train_loss`` first in the metrics and the history, as before
    engine.state.loss_terms = tuple(sorted(names, key=lambda name: name != Keys.LOSS))


def loss_terms(engine: Engine) -> tuple[str, ...]:
    """The names recorded by :func:`record_loss_terms` on ``engine``'s last step (empty if none)."""
    return tuple(getattr(engine.state, "loss_terms", ()))


def _first(output: Any) -> dict:
    # after decollation the output is a list of per-sample dicts with scalars replicated
    return output[0] if isinstance(output, list) else output


class LossTermAverages:
    """Average every loss term of a trainer over each epoch into ``state.metrics["train_<term>"]``.

    One ignite ``Average`` per term (float64 accumulation, all-reduced across processes under
    DDP, as an attached ignite metric), created for the terms the steps of the epoch report.
    Attach it before the handlers that read the metrics at ``EPOCH_COMPLETED`` (MLflow, stats,
    report), so that they see this epoch's values.

    Args:
        prefix: prefix of the metric names.
    """

    def __init__(self, prefix: str = "train_") -> None:
        self.prefix = prefix
        self._averages: dict[str, Average] = {}

    def attach(self, engine: Engine) -> None:
        """Register on ``EPOCH_STARTED`` (reset), ``ITERATION_COMPLETED`` (update) and ``EPOCH_COMPLETED``."""
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.completed)
        engine.add_event_handler(Events.EPOCH_STARTED, self.started)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)

    def started(self, engine: Engine) -> None:
        """Forget the previous epoch's sums."""
        self._averages = {}

    def iteration_completed(self, engine: Engine) -> None:
        """Add this step's value of each recorded term (a 0-dim tensor or, decollated, a float)."""
        output = _first(engine.state.output)
        for name in loss_terms(engine):
            self._averages.setdefault(name, Average(device="cpu")).update(output[name])

    def completed(self, engine: Engine) -> None:
        """Write ``state.metrics[prefix + term]`` (a float) for each term of the epoch."""
        for name, average in self._averages.items():
            engine.state.metrics[self.prefix + name] = float(average.compute())
