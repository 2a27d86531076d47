"""What a grid's rows measure: classification (accuracy, macro-F1, AUC; RD the reference) or
segmentation (mean Dice, HD95; DRD the reference). The tables and the plot read it from the rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["ResultKind", "CLASSIFICATION", "SEGMENTATION", "result_kind"]


@dataclass(frozen=True)
class ResultKind:
    """What a grid's rows measure: the columns of its summary and the method the others are paired against.

    ``columns`` are (column, label, scale): a value is shown as ``scale * value``.
    """

    primary: str
    primary_label: str
    columns: tuple[tuple[str, str, float], ...]
    reference: str


CLASSIFICATION = ResultKind("accuracy", "accuracy", (("accuracy", "acc", 100.0), ("macro_f1", "F1", 100.0),
                                                      ("auc", "AUC", 100.0)), "rd")
SEGMENTATION = ResultKind("mean_dice", "mean Dice", (("mean_dice", "Dice", 100.0), ("hd95", "HD95", 1.0)), "drd")


def result_kind(rows: list[dict[str, Any]]) -> ResultKind:
    """Segmentation rows carry a ``mean_dice`` and no ``accuracy`` (read back from a CSV, every row has
    both columns and the other kind's is NaN)."""
    def is_segmentation(row: dict[str, Any]) -> bool:
        accuracy = row.get("accuracy")
        return "mean_dice" in row and (accuracy is None or accuracy != accuracy)

    return SEGMENTATION if rows and all(is_segmentation(r) for r in rows) else CLASSIFICATION
