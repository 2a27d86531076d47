"""Per-iteration schedule of the distillation weights (KD, CKA, hint) of an RD loss."""

from __future__ import annotations

from typing import Any

from ignite.engine import Engine, Events

__all__ = ["DistillationSchedule", "distill_scale"]

MODES = ("constant", "warmup", "decay")


def distill_scale(progress: float, mode: str = "warmup", warmup: float = 0.1) -> float:
    """Factor on the distillation weights at ``progress`` in ``[0, 1]`` of training.

    - ``constant``: 1 throughout.
    - ``warmup``: linear ramp from 0 to 1 over the first ``warmup`` share of training, then 1.
      The student is not pulled towards a reprogrammed branch that is still random.
    - ``decay``: linear decay from 1 to 0 over training (DRD's weights on its hybrid terms).
    """
    if mode == "constant":
        return 1.0
    if mode == "warmup":
        return 1.0 if warmup <= 0 else min(1.0, progress / warmup)
    if mode == "decay":
        return max(0.0, 1.0 - progress)
    raise ValueError(f"distillation schedule must be one of {MODES}, got {mode!r}")


class DistillationSchedule:
    """Set ``loss.distill_scale`` before every training iteration (see :func:`distill_scale`).

    The factor depends on the iteration only, so a resumed run recomputes it exactly; it is
    also written to ``engine.state.metrics["distill_scale"]`` at each epoch end for the logs.

    Args:
        loss: an :class:`~rd_components.losses.RDLoss` (anything with a ``distill_scale``
            attribute).
        mode: ``"constant"``, ``"warmup"`` or ``"decay"``.
        warmup: share of all training iterations over which ``warmup`` ramps up, in ``[0, 1]``.
    """

    def __init__(self, loss: Any, mode: str = "warmup", warmup: float = 0.1) -> None:
        if mode not in MODES:
            raise ValueError(f"DistillationSchedule: mode must be one of {MODES}, got {mode!r}.")
        if not 0.0 <= float(warmup) <= 1.0:
            raise ValueError(f"DistillationSchedule: warmup must be in [0, 1], got {warmup}.")
        self.loss, self.mode, self.warmup = loss, mode, float(warmup)

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_STARTED, self)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._record)

    def __call__(self, engine: Engine) -> None:
        total = max(1, (engine.state.max_epochs or 1) * (engine.state.epoch_length or 1))
        self.loss.distill_scale = distill_scale((engine.state.iteration - 1) / total, self.mode, self.warmup)

    def _record(self, engine: Engine) -> None:
        engine.state.metrics["distill_scale"] = float(self.loss.distill_scale)
