"""Modules of ``scripts/compare.py``, one job each.

- ``cells``: one cell (method, seed, label fraction): its overrides, its training as a
  ``python -m monai.bundle run training`` subprocess, and grid resume (the FINISHED MLflow run
  with the same parameters that stands for an already trained cell).
- ``scoring``: a trained cell scored on the held-out test split (the exported student, its
  teacher branch), or the linear probe fitted and scored in-process; one results row.
- ``grid``: the grid of cells: which to train, ``--jobs`` at a time, each scored as it finishes,
  and the MLflow summary run.
- ``tables``: ``results.csv`` (read, merged and written), the markdown tables (mean +- std, RD
  minus each method paired by seed with 95 % t-intervals) and ``results.md``.
- ``plots``: ``results.png``, accuracy against label fraction.

``scripts/compare.py`` is the command line; it puts ``scripts/`` on ``sys.path`` by being run
from there, so this package needs no installation.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# the linear probe has no overlay: it is fitted and scored in-process, never trained by the bundle
PROBE = "linear_probe"
# every overlay in bundles/methods/ is a method; the linear probe is fitted in-process
METHODS = tuple(sorted(p.stem for p in (REPO / "bundles" / "methods").glob("*.yaml"))) + (PROBE,)
