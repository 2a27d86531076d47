"""``results.png``: test accuracy (mean Dice) against the fraction of training labels, one line per method."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .kinds import reference_method, result_kind


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy or mean Dice (mean +- std over seeds) against label fraction, one line per method."""
    import matplotlib

    kind = result_kind(rows)

    # no display on a training machine: render to a file only
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        fractions = sorted({r["label_fraction"] for r in rows if r["method"] == method})
        means, stds = [], []
        for f in fractions:
            values = [100 * r[kind.primary] for r in rows if r["method"] == method and r["label_fraction"] == f]
            means.append(statistics.mean(values))
            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label=method)
    # label fractions span decades (0.01, 0.1, 1.0)
    ax.set(xscale="log", xlabel="fraction of training labels", ylabel=f"test {kind.primary_label} (%)",
           title=f"{reference_method(rows) or kind.reference} vs baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
