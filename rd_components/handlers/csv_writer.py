"""Write inference predictions (and per-file failures) to a CSV file."""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine, Events

from ..atomic import atomic_write

__all__ = ["PredictionCSVWriter", "StreamedCSV"]

logger = logging.getLogger(__name__)


class StreamedCSV:
    """A CSV file that holds each row as soon as it is added, and its final row order at the end.

    :meth:`start` writes the header (replacing an earlier file), :meth:`append` appends rows and
    closes the file again (so a crash later keeps them), :meth:`finish` replaces the file
    atomically with all rows in their final order, the same content a single write at the end gives.

    Args:
        path: the CSV file.
        fields: column names.
    """

    def __init__(self, path: str | os.PathLike, fields: Sequence[str]) -> None:
        self.path = Path(path)
        self.fields = list(fields)
        self.started = False

    def _write(self, path: Path, rows: Iterable[dict], mode: str) -> None:
        with open(path, mode, newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            if mode == "w":
                writer.writeheader()
            writer.writerows(rows)

    def start(self) -> None:
        """Write the header only (atomically: an earlier file is replaced whole)."""
        atomic_write(self.path, lambda tmp: self._write(tmp, [], "w"))
        self.started = True

    def append(self, rows: Sequence[dict]) -> None:
        """Append ``rows`` (starting the file first if needed); they are on disk when this returns."""
        if not self.started:
            self.start()
        self._write(self.path, rows, "a")

    def finish(self, rows: Iterable[dict]) -> None:
        """Replace the file atomically by the header and ``rows``, in the order given."""
        atomic_write(self.path, lambda tmp: self._write(tmp, rows, "w"))
        self.started = False


class PredictionCSVWriter:
    """Write each item's ``pred`` probabilities to ``predictions.csv`` as it is predicted.

    Columns: ``file``, ``frame`` (1-based frame number of a multi-frame file, empty for other
    files), ``predicted_class``, ``predicted_label``, ``prob_<class>`` per class, ``error``,
    ``note`` (what was done to read the input, e.g. a colour image converted to luminance).
    Items whose batch entry has a non-empty ``error`` get no prediction, only the reason. Each
    iteration's rows are appended to the file at once (a crash keeps the rows predicted so far,
    in prediction order); on ``COMPLETED`` the file is rewritten atomically with the rows sorted by
    file, then frame. ``file`` is the input's path relative to the input folder (a DICOM series
    folder ends with a separator), ``frame`` tells frames of one file apart: together they name
    the input unambiguously.

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
        columns = ["file", "frame", "predicted_class", "predicted_label"] + [f"prob_{n}" for n in self.class_names] + ["error", "note"]
        self.csv = StreamedCSV(self.path, columns)

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED``, ``ITERATION_COMPLETED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self.start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.write)

    def start(self, engine: Engine | None = None) -> None:
        """Forget earlier rows and start the file with its header."""
        self.rows = []
        self.csv.start()

    def collect(self, engine: Engine) -> None:
        """Turn the decollated batch and outputs into rows and append them to the file."""
        batch = engine.state.batch if isinstance(engine.state.batch, list) else [engine.state.batch]
        outputs = engine.state.output if isinstance(engine.state.output, list) else [engine.state.output]
        new: list[dict] = []
        for item, output in zip(batch, outputs):
            frame = int(item.get("frame", 0) or 0)
            row = {"file": item["file"], "frame": frame or "", "error": item.get("error", ""), "note": item.get("note", "")}
            if not row["error"]:
                probs = torch.as_tensor(output["pred"]).float().reshape(-1).cpu().numpy()
                index = int(np.argmax(probs))
                row.update(predicted_class=index, predicted_label=self.class_names[index])
                row.update({f"prob_{name}": f"{p:.6f}" for name, p in zip(self.class_names, probs)})
            new.append(row)
        self.rows += new
        self.csv.append(new)

    def write(self, engine: Engine | None = None) -> None:
        """Rewrite the CSV atomically with every row, sorted by file then frame."""
        self.csv.finish(sorted(self.rows, key=lambda r: (r["file"], r["frame"] or 0)))
        failed = sum(bool(r["error"]) for r in self.rows)
        logger.info("Wrote %d predictions (%d inputs could not be read) to %s", len(self.rows) - failed, failed, self.path)
