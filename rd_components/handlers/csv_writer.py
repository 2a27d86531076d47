"""Write inference predictions (and per-file failures) to a CSV file."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

__all__ = ["PredictionCSVWriter"]

logger = logging.getLogger(__name__)


class PredictionCSVWriter:
    """Collect ``pred`` probabilities per item and write ``predictions.csv`` on ``COMPLETED``.

    Columns: ``file``, ``frame`` (1-based frame number of a multi-frame file, empty for other
    files), ``predicted_class``, ``predicted_label``, ``prob_<class>`` per class, ``error``,
    ``note`` (what was done to read the input, e.g. a colour image converted to luminance).
    Items whose batch entry has a non-empty ``error`` get no prediction, only the reason. Rows
    are sorted by file, then frame.

    Not MONAI's ``ClassificationSaver``: it writes one row of model outputs per item keyed by
    file name, with no frame, class-name, error or note columns, so an unreadable input would
    vanish from its CSV instead of being listed with its reason (``tests/test_bundle_2d.py``
    and ``tests/test_real_world_dicom.py`` check those rows).

    Args:
        output_dir: folder of the CSV.
        class_names: the ``K`` class names.
        filename: CSV file name.
    """

    def __init__(self, output_dir: str | os.PathLike, class_names: Sequence[str], filename: str = "predictions.csv") -> None:
        self.path = Path(output_dir) / filename
        self.class_names = list(class_names)
        self.rows: list[dict] = []

    def attach(self, engine: Engine) -> None:
        """Register on ``ITERATION_COMPLETED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def collect(self, engine: Engine) -> None:
        """Turn the decollated batch and outputs into rows."""
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        for item, output in zip(batch, outputs):
            frame = int(item.get("frame", 0) or 0)
            row = {"file": item["file"], "frame": frame or "", "error": item.get("error", ""), "note": item.get("note", "")}
            if not row["error"]:
                probs = torch.as_tensor(output["pred"]).float().reshape(-1).cpu().numpy()
                index = int(np.argmax(probs))
                row.update(predicted_class=index, predicted_label=self.class_names[index])
                row.update({f"prob_{name}": f"{p:.6f}" for name, p in zip(self.class_names, probs)})
            self.rows.append(row)

    def write(self, engine: Engine | None = None) -> None:
        """Write the CSV."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        columns = ["file", "frame", "predicted_class", "predicted_label"] + [f"prob_{n}" for n in self.class_names] + ["error", "note"]
        with open(self.path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for row in sorted(self.rows, key=lambda r: (r["file"], r["frame"] or 0)):
                writer.writerow(row)
        failed = sum(bool(r["error"]) for r in self.rows)
        logger.info("Wrote %d predictions (%d inputs could not be read) to %s", len(self.rows) - failed, failed, self.path)
