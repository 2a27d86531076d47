"""Modules of ``scripts/compare.py``, one job each.

- ``cells``: one cell (method, seed, label fraction): its overrides, its training as a
  ``python -m monai.bundle run training`` subprocess, and grid resume (a cell is reused only
  when its recorded digest, over every override and its datalist's items, is the one it would
  be started with now, and a FINISHED MLflow run carries it).
- ``scoring``: a trained classification cell scored on the held-out test split (the exported
  student, its teacher branch), or the linear probe fitted and scored in-process; one results row.
- ``segmentation``: a trained segmentation cell scored by the bundle's own ``evaluate.yaml``
  (sliding-window Dice and 95 % Hausdorff per class on the whole held-out images); one results row.
- ``grid``: the grid of cells: which to train, ``--jobs`` at a time, each scored as it finishes,
  and the MLflow summary run.
- ``tables``: ``results.csv`` (read, merged and written), the markdown tables (mean +- std, RD
  minus each method paired by seed with 95 % t-intervals) and ``results.md``.
- ``plots``: ``results.png``, accuracy against label fraction.
- ``kinds``: what a grid's rows measure (classification or segmentation figures), for tables and plot.

``scripts/compare.py`` is the command line; it puts ``scripts/`` on ``sys.path`` by being run
from there, so this package needs no installation.
"""

from __future__ import annotations

from pathlib import Path

import bundle_variants

REPO = Path(__file__).resolve().parents[2]
# the linear probe has no overlay: it is fitted and scored in-process, never trained by the bundle
PROBE = "linear_probe"
# every overlay in the bundle's configs/methods/ is a classification method; the linear probe is fitted in-process
CLASSIFICATION_METHODS = tuple(sorted(p.stem for p in bundle_variants.methods_dir("rd_classification_2d").glob("*.yaml"))) + (PROBE,)
# overlays in configs/methods/segmentation/ merge on a segmentation variant's training files
SEGMENTATION_METHODS = tuple(sorted(p.stem for p in bundle_variants.methods_dir("rd_segmentation_2d").glob("*.yaml")))
METHODS = tuple(dict.fromkeys(CLASSIFICATION_METHODS + SEGMENTATION_METHODS))


def bundle_kind(bundle: str) -> str:
    """``"classification"`` or ``"segmentation"``: the task kind of the bundle variant ``bundle``."""
    return bundle_variants.kind(bundle)


def reads_feature_cache(bundle: str, method: str, bundle_dir: Path = bundle_variants.BUNDLE) -> bool:
    """Whether a cell of ``method`` reads (and, when cold, fills) the grid's teacher feature cache:
    every method but those whose overlay sets ``teacher_source: null`` (the student alone, LoRA)
    or ``use_feature_cache: false`` (the mean teacher, whose "teacher" is the student's EMA)."""
    import yaml

    if method == PROBE:
        return True
    overlay = yaml.safe_load(method_overlay(bundle, method, bundle_dir).read_text()) or {}
    return overlay.get("teacher_source", ...) is not None and overlay.get("use_feature_cache", True) is not False


def method_overlay(bundle: str, method: str, bundle_dir: Path = bundle_variants.BUNDLE) -> Path:
    """``<bundle_dir>/configs/methods[/segmentation]/<method>.yaml``: the overlay, carried by the
    bundle folder itself, that turns the variant ``bundle`` into ``method``."""
    return bundle_variants.methods_dir(bundle, bundle_dir) / f"{method}.yaml"


def training_configs(bundle: str, method: str, bundle_dir: Path = bundle_variants.BUNDLE) -> list[str]:
    """The ``--config_file`` list of a cell: the variant's training files, then the method's overlay."""
    files = [str(p) for p in bundle_variants.config_files(bundle, "train", bundle_dir)]
    overlay = method_overlay(bundle, method, bundle_dir)
    return files + ([str(overlay)] if overlay.is_file() else [])
