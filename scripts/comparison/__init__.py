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

REPO = Path(__file__).resolve().parents[2]
# the linear probe has no overlay: it is fitted and scored in-process, never trained by the bundle
PROBE = "linear_probe"
METHOD_DIRS = {"classification": REPO / "bundles" / "methods", "segmentation": REPO / "bundles" / "methods" / "segmentation"}
# every overlay in bundles/methods/ is a classification method; the linear probe is fitted in-process
CLASSIFICATION_METHODS = tuple(sorted(p.stem for p in METHOD_DIRS["classification"].glob("*.yaml"))) + (PROBE,)
# overlays in bundles/methods/segmentation/ merge on a segmentation bundle's train.yaml
SEGMENTATION_METHODS = tuple(sorted(p.stem for p in METHOD_DIRS["segmentation"].glob("*.yaml")))
METHODS = tuple(dict.fromkeys(CLASSIFICATION_METHODS + SEGMENTATION_METHODS))


def bundle_kind(bundle: str) -> str:
    """``"classification"`` or ``"segmentation"``: the template ``bundles/templates/bundles.yaml`` renders it from."""
    import yaml

    entries = yaml.safe_load((REPO / "bundles" / "templates" / "bundles.yaml").read_text())
    if bundle not in entries:
        raise SystemExit(f"--bundle {bundle}: not a bundle of bundles/templates/bundles.yaml ({', '.join(entries)})")
    return str(entries[bundle]["template"])


def reads_feature_cache(bundle: str, method: str) -> bool:
    """Whether a cell of ``method`` reads (and, when cold, fills) the grid's teacher feature cache:
    every method but those whose overlay sets ``teacher_source: null`` (the student alone, LoRA)
    or ``use_feature_cache: false`` (the mean teacher, whose "teacher" is the student's EMA)."""
    import yaml

    if method == PROBE:
        return True
    overlay = yaml.safe_load(method_overlay(bundle, method).read_text()) or {}
    return overlay.get("teacher_source", ...) is not None and overlay.get("use_feature_cache", True) is not False


def method_overlay(bundle: str, method: str) -> Path:
    """``bundles/methods[/segmentation]/<method>.yaml``, the overlay that turns the bundle into ``method``."""
    return METHOD_DIRS[bundle_kind(bundle)] / f"{method}.yaml"
