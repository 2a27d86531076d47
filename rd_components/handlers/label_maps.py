"""Write segmentation predictions as NIfTI label maps on each input's own grid, and a CSV of what was written."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor
from monai.transforms import Compose

from ..atomic import atomic_write
from ..data.dicom import is_nifti_path
from ..data.writers import write_label_nifti
from .csv_writer import StreamedCSV

__all__ = ["LabelMapWriter"]

logger = logging.getLogger(__name__)


class LabelMapWriter:
    """Invert the preprocessing on each prediction, write ``<input>_seg.nii.gz`` and ``segmentations.csv``.

    The logits ``(K, *spatial)`` of each item are mapped back through ``transform.inverse``
    (orientation, and resampling when the preprocessing resampled) onto the input's voxel
    grid, then the argmax is written as a uint8 label map with the input's affine, so the output
    overlays the input in any NIfTI viewer. Outputs mirror the input folder's layout under
    ``output_dir``. A failed input (non-empty ``error``) gets no file, only its CSV row. Files are
    written atomically; each CSV row is appended as its input is done (a crash keeps them), and
    the CSV is rewritten sorted by file at the end.

    Inputs whose names give the same output (``a.nii``, ``a.nii.gz`` and a series folder ``a/``
    all give ``a_seg.nii.gz``; names differing only in case collide on some file systems): the
    first, in input order, keeps that name, the others get their full input name
    (``a_nii_gz_seg.nii.gz``, ``a_dicom_seg.nii.gz``; then ``_2``, ``_3``... if still taken). The
    CSV's ``output`` column and ``note`` say so per input, and one log line lists the renamed ones.

    Args:
        output_dir: where label maps and ``segmentations.csv`` go.
        transform: the preprocessing the dataset applied (invertible steps are inverted).
        class_names: names of the classes, background first (CSV voxel-count columns).
        dicom_seg: also write ``<series folder>_seg.dcm``, a DICOM SEG (highdicom) referencing the
            source series, for each DICOM series input.

    ``segmentations.csv`` columns: ``file``, ``output``, ``dicom_seg``, ``voxels_<class>`` per class,
    ``error`` (the input could not be read: nothing written), ``note`` (e.g. why a DICOM SEG could
    not be written next to the NIfTI label map).
    """

    def __init__(self, output_dir: str | os.PathLike, transform: Compose, class_names: Sequence[str],
                 dicom_seg: bool = True) -> None:
        self.output_dir = Path(output_dir)
        self.transform = transform
        self.class_names = [str(c) for c in class_names]
        self.dicom_seg = bool(dicom_seg)
        self.rows: list[dict[str, Any]] = []
        self.csv = StreamedCSV(self.output_dir / "segmentations.csv",
                               ["file", "output", "dicom_seg", *[f"voxels_{c}" for c in self._columns()], "error", "note"])
        self._taken: set[str] = set()  # output names given in this run, case-folded
        self.renamed: dict[str, str] = {}  # input file -> output, for inputs whose default name was taken

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED``, ``ITERATION_COMPLETED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._write_csv)

    def _start(self, _engine: Engine) -> None:
        self.rows.clear()
        self._taken.clear()
        self.renamed.clear()
        self.csv.start()

    @staticmethod
    def _items(engine: Engine) -> list[dict]:
        """Per item: ``file`` and ``error`` from the batch, ``image`` and ``pred`` from the evaluator's output."""
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, dict) else batch
        output = decollate_batch(output) if isinstance(output, dict) else output
        return [{**b, **o} for b, o in zip(batch, output)]

    def _write(self, engine: Engine) -> None:
        new = [self._write_item(item) for item in self._items(engine)]
        self.rows += new
        self.csv.append(new)

    def _write_item(self, item: dict) -> dict[str, Any]:
        """Write one item's label map (and DICOM SEG); its CSV row."""
        error = str(item.get("error") or "")
        row = {"file": item["file"], "output": "", "dicom_seg": "", **{f"voxels_{c}": "" for c in self._columns()},
               "error": error, "note": ""}
        # a failed input reserves its name too: the names depend on the inputs' names only
        written, note = self._unique_output_path(item["file"], str(item.get("source", "")))
        if error:
            return row
        labels = self.label_map(item["pred"], item["image"])
        affine = np.asarray(labels.meta["affine"], dtype=np.float64)
        atomic_write(written, lambda tmp: write_label_nifti(tmp, np.asarray(labels[0]), affine))
        row.update(output=str(written.relative_to(self.output_dir)), note=note)
        counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=len(self.class_names))
        row.update({f"voxels_{c}": int(n) for c, n in zip(self._columns(), counts)})
        if self.dicom_seg and item.get("format") == "dicom" and self._series_source(str(item.get("source", ""))):
            seg = self._write_dicom_seg(labels, item, written)
            row.update(seg, note="; ".join(n for n in (note, seg.get("note", "")) if n))
        return row

    def _write_dicom_seg(self, labels: MetaTensor, item: dict, nifti: Path) -> dict[str, str]:
        """The DICOM SEG beside the NIfTI label map; a failure is a note, the NIfTI output stands."""
        from ..data.dicom_seg import write_dicom_seg

        path = nifti.with_name(nifti.name[: -len(".nii.gz")] + ".dcm")
        try:
            write_dicom_seg(np.asarray(labels[0]), np.asarray(labels.meta["affine"], dtype=np.float64),
                            self._series_source(str(item["source"])), path,
                            self.class_names)
        except Exception as error:  # e.g. highdicom missing, or a series geometry it refuses
            logger.warning("DICOM SEG for %s not written: %s", item["file"], error)
            return {"note": f"DICOM SEG not written: {' '.join(str(error).split())[:200]}"}
        return {"dicom_seg": str(path.relative_to(self.output_dir))}

    @staticmethod
    def _series_source(source: str) -> str | list[str] | None:
        """The DICOM series an item was read from: its folder, or its files (a JSON list) when the
        folder held several series; ``None`` for anything else (a NIfTI file, a single DICOM file)."""
        if source.startswith("["):
            try:
                files = json.loads(source)
            except json.JSONDecodeError:
                return None
            return [str(f) for f in files] if isinstance(files, list) and files else None
        return source if source and Path(source).is_dir() else None

    def _columns(self) -> list[str]:
        return [c.lower().replace(" ", "_") for c in self.class_names]

    def label_map(self, logits: torch.Tensor, image: MetaTensor) -> MetaTensor:
        """Logits ``(K, *spatial)`` on the preprocessed grid -> label map ``(1, *input spatial)`` on the input's grid."""
        pred = MetaTensor(torch.as_tensor(logits).detach().cpu().float(), meta=dict(image.meta),
                          applied_operations=list(image.applied_operations))
        restored = self.transform.inverse({"image": pred})["image"]
        labels = torch.argmax(restored, dim=0, keepdim=True).to(torch.uint8)
        return MetaTensor(labels, meta=dict(restored.meta))

    @staticmethod
    def _relative_name(file: str, source: str = "") -> str:
        """``file`` without a trailing separator; the input folder itself (``./``) is named after ``source``."""
        relative = str(file).rstrip("/" + os.sep)
        return relative if relative not in ("", ".") else Path(source.rstrip("/" + os.sep)).name or "volume"

    def output_path(self, file: str, source: str = "") -> Path:
        """``output_dir/<file without its NIfTI suffix>_seg.nii.gz``; ``file`` is relative to the input folder
        (a DICOM series folder ends with a separator; the input folder itself, ``./``, is named after ``source``)."""
        relative = self._relative_name(file, source)
        if is_nifti_path(relative):
            relative = relative[: -len(".nii.gz")] if relative.lower().endswith(".nii.gz") else relative[: -len(".nii")]
        return self.output_dir / f"{relative}_seg.nii.gz"

    def _unique_output_path(self, file: str, source: str = "") -> tuple[Path, str]:
        """:meth:`output_path`, or, when an earlier input of this run took it, a name keeping the whole
        input name (``a.nii.gz`` -> ``a_nii_gz_seg.nii.gz``, series folder ``a/`` -> ``a_dicom_seg.nii.gz``,
        then ``_2``, ``_3``... while taken); and a note saying why when renamed."""
        default = path = self.output_path(file, source)
        if str(default).casefold() in self._taken:
            whole = self._relative_name(file, source) + ("_dicom" if str(file).endswith(("/", os.sep)) else "")
            parent, name = os.path.split(whole)
            stem = os.path.join(parent, name.replace(".", "_"))
            path, n = self.output_dir / f"{stem}_seg.nii.gz", 1
            while str(path).casefold() in self._taken:
                n += 1
                path = self.output_dir / f"{stem}_{n}_seg.nii.gz"
        self._taken.add(str(path).casefold())
        if path == default:
            return path, ""
        self.renamed[str(file)] = str(path.relative_to(self.output_dir))
        return path, f"output renamed: {default.name} is another input's"

    def _write_csv(self, _engine: Engine) -> None:
        self.csv.finish(sorted(self.rows, key=lambda r: r["file"]))
        failed = sum(bool(r["error"]) for r in self.rows)
        logger.info("Wrote %d label map(s) and %s%s", len(self.rows) - failed, self.csv.path,
                    f"; {failed} input(s) could not be read (reasons in the CSV)" if failed else "")
        if self.renamed:
            logger.warning("%d output(s) renamed, as another input's output has the same name (segmentations.csv maps "
                           "each input to its output): %s", len(self.renamed),
                           ", ".join(f"{file} -> {out}" for file, out in self.renamed.items()))
