"""A tqdm progress bar for MONAI handler lists."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ignite.engine import Engine
from ignite.handlers import ProgressBar
from monai.utils.enums import CommonKeys as Keys

from ..engines.loss_terms import loss_terms

__all__ = ["ProgressBarHandler"]


class ProgressBarHandler:
    """ignite ``ProgressBar`` showing scalar output keys of each step.

    MONAI handler lists call ``attach(engine)`` with no options; this wrapper carries them.
    The bar is drawn only when stderr is a terminal: in log files (batch jobs, ``nohup``) the
    per-epoch ``StatsHandler`` lines say the same without thousands of carriage returns.

    Args:
        output_keys: the keys of ``state.output`` to show. ``None`` (default): every term the
            engine's loss returned on the step (``state.loss_terms``, see
            :mod:`rd_components.engines.loss_terms`), or ``loss`` on an engine that records no
            terms; ``[]``: the bar alone (e.g. an evaluator).
        persist: keep the bar after each epoch.
        enabled: ``False`` draws nothing (e.g. on non-zero ranks).
    """

    def __init__(self, output_keys: Sequence[str] | None = None, persist: bool = False, enabled: bool = True) -> None:
        self.output_keys = None if output_keys is None else tuple(output_keys)
        self.persist = persist
        self.enabled = enabled

    def values(self, engine: Engine) -> dict[str, float]:
        """The shown values of ``engine``'s last step: name -> float."""
        output = engine.state.output
        item = output[0] if isinstance(output, list) else output
        keys = self.output_keys if self.output_keys is not None else (loss_terms(engine) or (Keys.LOSS,))
        return {k: float(item[k]) for k in keys if k in item}

    def attach(self, engine: Engine) -> None:
        """Attach the bar to ``engine``."""
        if self.enabled and sys.stderr.isatty():
            ProgressBar(persist=self.persist).attach(engine, output_transform=lambda _: self.values(engine))
