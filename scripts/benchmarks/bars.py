"""Pass/fail bars of the benchmark figures, read from ``bars.yaml`` beside this module."""

from __future__ import annotations

import operator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BARS_FILE = Path(__file__).resolve().with_name("bars.yaml")
_COMPARE = {"<=": operator.le, ">=": operator.ge}


@dataclass(frozen=True)
class Bar:
    """One metric's bar: ``value <compare> bars[bundle]`` passes."""

    metric: str
    compare: str
    bars: dict[str, float]
    reason: str

    def label(self, bundle: str) -> str:
        """The bar as the reports write it, e.g. ``"<= 1.25"``."""
        return f"{self.compare} {self.bars[bundle]:g}"

    def passes(self, bundle: str, value: float | None) -> bool:
        """Whether ``value`` meets this bundle's bar; a missing value fails."""
        return value is not None and bool(_COMPARE[self.compare](value, self.bars[bundle]))


def load_bars(path: Path | str | None = None) -> dict[str, Bar]:
    """The bars of ``path`` (default :data:`BARS_FILE`, ``bars.yaml``), in file order, validated.

    Raises:
        ValueError: an entry without ``compare``, ``bars`` or ``reason``, an unknown comparison,
            or a bar that is not a number.
    """
    import yaml

    # BARS_FILE is read at call time, so that pointing it elsewhere changes every check
    path = BARS_FILE if path is None else Path(path)
    raw = yaml.safe_load(path.read_text()) or {}
    bars: dict[str, Bar] = {}
    for metric, entry in raw.items():
        missing = {"compare", "bars", "reason"} - set(entry if isinstance(entry, dict) else {})
        if missing:
            raise ValueError(f"{path}: {metric} lacks {', '.join(sorted(missing))}")
        if entry["compare"] not in _COMPARE:
            raise ValueError(f"{path}: {metric}: compare must be one of {list(_COMPARE)}, got {entry['compare']!r}")
        try:
            # float() also reads a bar YAML left as a string ("1e-4" without a dot)
            values = {str(bundle): float(bar) for bundle, bar in entry["bars"].items()}
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: {metric}: every bar must be a number ({error})") from error
        bars[metric] = Bar(metric=metric, compare=entry["compare"], bars=values, reason=str(entry["reason"]))
    return bars


def bar_checks(bundle: str, result: dict[str, Any], bars: dict[str, Bar] | None = None) -> dict[str, Any]:
    """Each metric with a bar for this bundle: ``{"value", "bar", "pass"}``.

    Args:
        bundle: ``"2d"`` or ``"3d"``.
        result: the bundle's JSON result; the metrics are its top-level keys.
        bars: the bars to check; default those of ``bars.yaml``.
    """
    checks: dict[str, Any] = {}
    for metric, bar in (load_bars() if bars is None else bars).items():
        if bundle not in bar.bars:
            continue
        value = result.get(metric)
        checks[metric] = {"value": value, "bar": bar.label(bundle), "pass": bar.passes(bundle, value)}
    return checks


def describe(bars: dict[str, Bar] | None = None) -> str:
    """The bars as text lines (metric, bar per bundle, reason), for ``--help``."""
    lines = []
    for metric, bar in (load_bars() if bars is None else bars).items():
        per_bundle = ", ".join(f"{bar.compare} {v:g} ({b.upper()})" for b, v in bar.bars.items())
        lines.append(f"  {metric:<36} {per_bundle}\n      {bar.reason}")
    return "\n".join(lines)
