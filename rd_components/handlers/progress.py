"""A tqdm progress bar for MONAI handler lists."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from ignite.engine import Engine
from ignite.handlers import ProgressBar

__all__ = ["ProgressBarHandler"]


class ProgressBarHandler:
    """ignite ``ProgressBar`` showing the given scalar output keys (e.g. ``loss``).

    MONAI handler lists call ``attach(engine)`` with no options; this wrapper carries them.
    The bar is drawn only when stderr is a terminal: in log files (batch jobs, ``nohup``) the
    per-epoch ``StatsHandler`` lines say the same without thousands of carriage returns.
    """

    def __init__(self, output_keys: Sequence[str] = ("loss",), persist: bool = False, enabled: bool = True) -> None:
        self.output_keys = tuple(output_keys)
        self.persist = persist
        self.enabled = enabled

    def _transform(self, output: Any) -> dict[str, float]:
        item = output[0] if isinstance(output, list) else output
        return {k: float(item[k]) for k in self.output_keys if k in item}

    def attach(self, engine: Engine) -> None:
        """Attach the bar to ``engine``."""
        if self.enabled and sys.stderr.isatty():
            ProgressBar(persist=self.persist).attach(engine, output_transform=self._transform)
