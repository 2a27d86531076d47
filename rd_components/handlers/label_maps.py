"""Write segmentation predictions as NIfTI label maps on each input's own grid, and a CSV of what was written."""

from __future__ import annotations

import csv
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

from ..data.dicom import is_nifti_path
from ..data.writers import write_label_nifti

__all__ = ["LabelMapWriter"]

logger = logging.getLogger(__name__)


class LabelMapWriter:
    """Invert the preprocessing on each prediction, write ``<input>_seg.nii.gz`` and ``segmentations.csv``.

    The logits ``(K, *spatial)`` of each item are mapped back through ``transform.inverse``
    (orientation, and resampling when the preprocessing resampled) onto the input's voxel
    grid, then the argmax is written as a uint8 label map with the input's affine, so the output
    overlays the input in any NIfTI viewer. Outputs mirror the input folder's layout under
    ``output_dir``. A failed input (non-empty ``error``) gets no file, only its CSV row.

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

    def attach(self, engine: Engine) -> None:
        """Register on ``STARTED``, ``ITERATION_COMPLETED`` and ``COMPLETED``."""
        engine.add_event_handler(Events.STARTED, lambda _: self.rows.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._write)
        engine.add_event_handler(Events.COMPLETED, self._write_csv)

    @staticmethod
    def _items(engine: Engine) -> list[dict]:
        """Per item: ``file`` and ``error`` from the batch, ``image`` and ``pred`` from the evaluator's output."""
        from monai.data import decollate_batch

        batch, output = engine.state.batch, engine.state.output
        batch = decollate_batch(batch) if isinstance(batch, dict) else batch
        output = decollate_batch(output) if isinstance(output, dict) else output
        return [{**b, **o} for b, o in zip(batch, output)]

    def _write(self, engine: Engine) -> None:
        for item in self._items(engine):
            error = str(item.get("error") or "")
            row = {"file": item["file"], "output": "", "dicom_seg": "", **{f"voxels_{c}": "" for c in self._columns()},
                   "error": error, "note": ""}
            if not error:
                labels = self.label_map(item["pred"], item["image"])
                written = self.output_path(item["file"], str(item.get("source", "")))
                written.parent.mkdir(parents=True, exist_ok=True)
                write_label_nifti(written, np.asarray(labels[0]), np.asarray(labels.meta["affine"], dtype=np.float64))
                row["output"] = str(written.relative_to(self.output_dir))
                counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=len(self.class_names))
                row.update({f"voxels_{c}": int(n) for c, n in zip(self._columns(), counts)})
                if self.dicom_seg and item.get("format") == "dicom" and Path(str(item.get("source", ""))).is_dir():
                    row.update(self._write_dicom_seg(labels, item, written))
            self.rows.append(row)

    def _write_dicom_seg(self, labels: MetaTensor, item: dict, nifti: Path) -> dict[str, str]:
        """The DICOM SEG beside the NIfTI label map; a failure is a note, the NIfTI output stands."""
        from ..data.dicom_seg import write_dicom_seg

        path = nifti.with_name(nifti.name[: -len(".nii.gz")] + ".dcm")
        try:
            write_dicom_seg(np.asarray(labels[0]), np.asarray(labels.meta["affine"], dtype=np.float64), item["source"], path,
                            self.class_names)
        except Exception as error:  # e.g. highdicom missing, or a series geometry it refuses
            logger.warning("DICOM SEG for %s not written: %s", item["file"], error)
            return {"note": f"DICOM SEG not written: {' '.join(str(error).split())[:200]}"}
        return {"dicom_seg": str(path.relative_to(self.output_dir))}

    def _columns(self) -> list[str]:
        return [c.lower().replace(" ", "_") for c in self.class_names]

    def label_map(self, logits: torch.Tensor, image: MetaTensor) -> MetaTensor:
        """Logits ``(K, *spatial)`` on the preprocessed grid -> label map ``(1, *input spatial)`` on the input's grid."""
        pred = MetaTensor(torch.as_tensor(logits).detach().cpu().float(), meta=dict(image.meta),
                          applied_operations=list(image.applied_operations))
        restored = self.transform.inverse({"image": pred})["image"]
        labels = torch.argmax(restored, dim=0, keepdim=True).to(torch.uint8)
        return MetaTensor(labels, meta=dict(restored.meta))

    def output_path(self, file: str, source: str = "") -> Path:
        """``output_dir/<file without its NIfTI suffix>_seg.nii.gz``; ``file`` is relative to the input folder
        (a DICOM series folder ends with a separator; the input folder itself, ``./``, is named after ``source``)."""
        relative = str(file).rstrip("/" + os.sep)
        if relative in ("", "."):
            relative = Path(source.rstrip("/" + os.sep)).name or "volume"
        if is_nifti_path(relative):
            relative = relative[: -len(".nii.gz")] if relative.lower().endswith(".nii.gz") else relative[: -len(".nii")]
        return self.output_dir / f"{relative}_seg.nii.gz"

    def _write_csv(self, _engine: Engine) -> None:
        self.output_dir.mkdir(parents=True, exist_ok=True)
        path = self.output_dir / "segmentations.csv"
        fields = ["file", "output", "dicom_seg", *[f"voxels_{c}" for c in self._columns()], "error", "note"]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(sorted(self.rows, key=lambda r: r["file"]))
        failed = sum(bool(r["error"]) for r in self.rows)
        logger.info("Wrote %d label map(s) and %s%s", len(self.rows) - failed, path,
                    f"; {failed} input(s) could not be read (reasons in the CSV)" if failed else "")
