"""What a grid's rows measure: classification (accuracy, macro-F1, AUC; RD the reference) or
segmentation (mean Dice, HD95; the bundles' default DRD the reference). The tables and the plot read it from the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ResultKind", "CLASSIFICATION", "SEGMENTATION", "result_kind", "reference_method"]


@dataclass(frozen=True)
class ResultKind:
    """What a grid's rows measure: the columns of its summary and the method the others are paired against.

    ``columns`` are (column, label, scale): a value is shown as ``scale * value``. ``references``
    are the methods the others are paired against, in order of preference: the first that ran.
    """

    primary: str
    primary_label: str
    columns: tuple[tuple[str, str, float], ...]
    references: tuple[str, ...]

    @property
    def reference(self) -> str:
        """The preferred reference method."""
        return self.references[0]


CLASSIFICATION = ResultKind("accuracy", "accuracy", (("accuracy", "acc", 100.0), ("macro_f1", "F1", 100.0),
                                                      ("auc", "AUC", 100.0)), ("rd",))
# the segmentation bundles' default (every teacher term on one step in three), else DRD every step
SEGMENTATION = ResultKind("mean_dice", "mean Dice", (("mean_dice", "Dice", 100.0), ("hd95", "HD95", 1.0)),
                          ("drd_every_3", "drd"))


def result_kind(rows: list[dict[str, Any]]) -> ResultKind:
    """Segmentation rows carry a ``mean_dice`` and no ``accuracy`` (read back from a CSV, every row has
    both columns and the other kind's is NaN)."""
    def is_segmentation(row: dict[str, Any]) -> bool:
        accuracy = row.get("accuracy")
        return "mean_dice" in row and (accuracy is None or accuracy != accuracy)

    return SEGMENTATION if rows and all(is_segmentation(r) for r in rows) else CLASSIFICATION


def reference_method(rows: list[dict[str, Any]]) -> str | None:
    """The method ``rows`` are paired against: the first of their kind's ``references`` that ran, or ``None``."""
    methods = {r["method"] for r in rows}
    return next((m for m in result_kind(rows).references if m in methods), None)
