"""``results.png``: test accuracy (mean Dice) against the fraction of training labels, one line per
method; a grid at one label fraction is drawn per seed instead, so that the pairing shows."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .kinds import reference_method, result_kind


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Accuracy or mean Dice against label fraction (mean +- std over seeds, one line per method);
    at a single label fraction, every seed's value per method, each seed's line joining its methods."""
    import matplotlib

    kind = result_kind(rows)

    # no display on a training machine: render to a file only
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fractions = sorted({r["label_fraction"] for r in rows})
    title = f"{reference_method(rows) or kind.reference} vs baselines"
    if len(fractions) == 1:
        _plot_paired_seeds(ax, rows, methods, kind.primary)
        ax.set(ylabel=f"test {kind.primary_label} (%)", title=f"{title}, {fractions[0]:g} labels (lines: one seed)")
    else:
        for method in methods:
            own = sorted({r["label_fraction"] for r in rows if r["method"] == method})
            means, stds = [], []
            for f in own:
                values = [100 * r[kind.primary] for r in rows if r["method"] == method and r["label_fraction"] == f]
                means.append(statistics.mean(values))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            ax.errorbar(own, means, yerr=stds, marker="o", capsize=3, label=method)
        # label fractions span decades (0.01, 0.1, 1.0)
        ax.set(xscale="log", xlabel="fraction of training labels", ylabel=f"test {kind.primary_label} (%)", title=title)
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_paired_seeds(ax: Any, rows: list[dict[str, Any]], methods: list[str], metric: str) -> None:
    """One column per method: a dot per seed, a grey line per seed across the methods, the mean as a bar."""
    value = {(r["method"], r["seed"]): 100 * r[metric] for r in rows}
    for seed in sorted({r["seed"] for r in rows}):
        xs = [i for i, m in enumerate(methods) if (m, seed) in value]
        ax.plot(xs, [value[(methods[i], seed)] for i in xs], color="0.75", linewidth=0.8, zorder=1)
    for i, method in enumerate(methods):
        values = [v for (m, _), v in value.items() if m == method]
        ax.scatter([i] * len(values), values, zorder=2, s=18)
        ax.hlines(statistics.mean(values), i - 0.25, i + 0.25, color="black", zorder=3)
    ax.set_xticks(range(len(methods)), methods, rotation=20, fontsize=8)
