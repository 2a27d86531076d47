"""Results tables: ``results.csv`` (read, merged, written), the markdown summaries and ``results.md``.

The summary is mean +- std over seeds per method and label fraction of accuracy, macro-F1 and
AUC (classification) or mean Dice and 95 % Hausdorff distance (segmentation); when RD (DRD)
ran with other methods, RD (DRD) minus each method follows on accuracy (mean Dice), paired by
seed and label fraction, with a 95 % t-interval.
"""

from __future__ import annotations

import csv
import io
import statistics
from pathlib import Path
from typing import Any

from rd_components.atomic import atomic_write

from . import PROBE
from .kinds import CLASSIFICATION, SEGMENTATION, reference_method, result_kind
from .plots import plot

FLOAT_COLUMNS = ("accuracy", "macro_f1", "auc", "latency_ms", "teacher_accuracy", "teacher_val_accuracy", "mean_dice",
                 "hd95", "val_mean_dice")


def describe(row: dict[str, Any]) -> str:
    """One cell's test figures for the grid's log, e.g. ``mean Dice 0.812  HD95 2.10``."""
    if result_kind([row]) is SEGMENTATION:
        return f"mean Dice {row['mean_dice']:.3f}  HD95 {row['hd95']:.2f}"
    return f"accuracy {row['accuracy']:.3f}  macro-F1 {row['macro_f1']:.3f}  AUC {row['auc']:.3f}"


def interval95(diffs: list[float]) -> float:
    """Half-width of the 95 % t-interval of the mean of ``diffs`` (0 for a single value)."""
    if len(diffs) < 2:
        return 0.0
    from scipy.stats import t

    return float(t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5)


def paired_differences(rows: list[dict[str, Any]], reference: str | None = None) -> str:
    """Markdown table: ``reference`` (default: :func:`~.kinds.reference_method`, RD or the default DRD) minus each method, in
    points of accuracy (mean Dice), mean and 95 % interval (t) over the seeds that both ran
    (paired by seed and label fraction)."""
    kind = result_kind(rows)
    reference = reference or reference_method(rows) or kind.reference
    fractions = sorted({r["label_fraction"] for r in rows})
    by_cell = {(r["method"], r["seed"], r["label_fraction"]): 100 * r[kind.primary] for r in rows}
    others = [m for m in dict.fromkeys(r["method"] for r in rows) if m != reference]
    lines = [f"| {reference} minus | " + " | ".join(f"{f:g} labels ({kind.primary_label} points, 95 % CI)" for f in fractions)
             + " |", "|---|" + "---|" * len(fractions)]
    for method in others:
        cells = []
        for fraction in fractions:
            diffs = [by_cell[(reference, seed, fraction)] - value for (m, seed, f), value in by_cell.items()
                     if m == method and f == fraction and (reference, seed, fraction) in by_cell]
            if not diffs:
                cells.append("-")
                continue
            mean, half = statistics.mean(diffs), interval95(diffs)
            cells.append(f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] (n={len(diffs)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_rows(paths: list[Path]) -> list[dict[str, Any]]:
    """Rows of ``results.csv`` files, numbers parsed; a cell found twice ends the merge."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                # older grids have no task, n_labeled / n_unlabeled or teacher-branch columns
                row.setdefault("task", "")
                for key in ("seed", "n_train", "n_labeled", "n_unlabeled", "params"):
                    if row.get(key) not in (None, ""):
                        row[key] = int(float(row[key]))
                for key in ("label_fraction", *FLOAT_COLUMNS):
                    row[key] = float(row[key]) if row.get(key) not in (None, "") else float("nan")
                rows.append(row)
    cells = [(r["method"], r["seed"], r["label_fraction"]) for r in rows]
    repeated = sorted({c for c in cells if cells.count(c) > 1})
    if repeated:
        # two tasks (or one grid merged twice) would be averaged together without a word
        raise SystemExit(f"--merge: cells {repeated[:3]} appear more than once; merge the results of one task only.")
    return rows


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    """One row per cell; the columns are the union over rows (merged grids may differ). Replaced atomically."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields, restval="")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, lambda tmp: tmp.write_text(text.getvalue(), newline=""))


def write_outputs(rows: list[dict[str, Any]], out: Path, title: str) -> str:
    """``results.csv``, ``results.md`` (means and, when RD ran, paired differences) and ``results.png``."""
    write_csv(rows, out / "results.csv")
    table = summarise(rows)
    if reference_method(rows) is not None and len({r["method"] for r in rows}) > 1:
        table += "\nPaired by seed:\n\n" + paired_differences(rows)
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(f"{title}\n\n" + table))
    atomic_write(out / "results.png", lambda tmp: plot(rows, tmp))
    return table


def summarise(rows: list[dict[str, Any]]) -> str:
    """Markdown table: mean +- std of the kind's columns (accuracy / F1 / AUC, or Dice / HD95) per method and label fraction."""
    kind = result_kind(rows)
    fractions = sorted({r["label_fraction"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    header = " / ".join(label for _, label, _ in kind.columns)
    if kind is CLASSIFICATION:
        header += " [/ teacher branch acc]"
    lines = ["| method | " + " | ".join(f"{f:g} labels: {header}" for f in fractions) + " |",
             "|---|" + "---|" * len(fractions)]
    for method in methods:
        cells = []
        for fraction in fractions:
            group = [r for r in rows if r["method"] == method and r["label_fraction"] == fraction]
            if not group:  # a merged grid where this method did not run at this fraction
                cells.append("-")
                continue
            parts = []
            for key, _, scale in kind.columns:
                values = [scale * r[key] for r in group]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                parts.append(f"{statistics.mean(values):.1f} ± {std:.1f}")
            # NaN != NaN: cells without a teacher branch (the student alone) are left out
            teacher = [100 * r["teacher_accuracy"] for r in group if r.get("teacher_accuracy") == r.get("teacher_accuracy")
                       and r.get("teacher_accuracy") is not None]
            if teacher and method != PROBE:  # the probe's teacher accuracy is its accuracy
                parts.append(f"teacher branch {statistics.mean(teacher):.1f}")
            cells.append(" / ".join(parts) + f" (n={len(group)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
