#!/usr/bin/env python
"""Compare RD with KD, semi-supervised and PEFT baselines over seeds and label fractions, on one bundle.

Every cell (method, seed, label fraction) trains the bundle's student with the same budget,
data and augmentation. A label fraction hides labels, never images: every method sees every
training image, the labels of the fraction only, and the same number of optimizer steps.
A cell is ``python -m monai.bundle run training`` with the bundle's ``configs/methods/<m>.yaml``
merged on the variant's training files, is one FINISHED MLflow run in one experiment, and is
scored on the held-out test split its training saved (``models/datalist.json``) with the
exported student. ``linear_probe`` (the frozen teacher with a logistic-regression head, the
reference) is fitted and scored in-process.

Example:
    python scripts/compare.py --bundle rd_classification_2d --methods student kd rd \\
        --seeds 0 1 2 --label_fractions 0.01 0.1 1.0 --epochs 10 --out results/compare_2d
    python scripts/compare.py --bundle rd_segmentation_3d --methods student drd \\
        --seeds 0 1 2 --label_fractions 0.1 --out results/seg_3d

``--bundle`` names the variant of the RD bundle (``bundles/rd``; ``--bundle_dir`` for a copy of it,
whose own overlays are the methods). Segmentation variants take the overlays of
``configs/methods/segmentation/`` and are scored by the bundle's own evaluation files (mean Dice and 95 % Hausdorff distance on the whole held-out images).

Writes ``OUT/results.csv`` (one row per cell, with the task, the labelled / unlabelled counts
and the teacher branch's validation and test accuracy), ``OUT/results.md`` (mean +- std per
method and fraction, RD minus each method paired by seed with a 95 % interval) and
``OUT/results.png``; MLflow data goes to ``OUT/mlruns.db`` unless
``--tracking_uri`` says otherwise. Cells run one after another, ``--jobs N`` at a time, or as Ray
tasks on a local instance or a cluster (``--executor ray [--address ...]``). A grid
started again with the same ``--out`` (same MLflow experiment) skips the cells trained with the
same digest (the method, every override, ``--dataset_dir`` and ``--set`` values included, and
the items of the datalist) and only scores them again; every other cell trains again.
``results.csv``, ``.md`` and ``.png`` are replaced atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# run as a file, Python puts scripts/ on sys.path; imported from elsewhere it may not be there
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

# the work lives in scripts/comparison/, one module a job (cells, scoring, grid, tables, plots)
import bundle_variants  # noqa: E402
from comparison import CLASSIFICATION_METHODS, PROBE, SEGMENTATION_METHODS, bundle_kind  # noqa: E402
from comparison.grid import run_grid  # noqa: E402
from comparison.tables import read_rows, write_outputs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line (its description is this file's docstring)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="rd_classification_2d", choices=tuple(bundle_variants.VARIANTS),
                        help="variant of the RD bundle: its task kind and dimensions (default: rd_classification_2d)")
    parser.add_argument("--bundle_dir", type=Path, default=bundle_variants.BUNDLE,
                        help="the bundle folder, e.g. a copy you edited (default: bundles/rd); its configs/methods/ "
                             "holds the methods")
    parser.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                        help=f"methods to compare (default: all the bundle's kind has; classification: "
                             f"{', '.join(CLASSIFICATION_METHODS)}; segmentation: {', '.join(SEGMENTATION_METHODS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--label_fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per cell (default: the bundle's)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="CSV",
                        help="train nothing: merge these results.csv files (e.g. two grids of the same task) "
                             "into OUT/results.csv, .md and .png")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells trained at once, each in its own process with cores / jobs torch threads")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads per cell (default: this machine's cores / --jobs)")
    parser.add_argument("--executor", choices=("local", "ray"), default="local",
                        help="local: cells as processes on this machine; ray: cells as Ray tasks "
                             "(pip install -r requirements-cluster.txt), each asking for --threads CPUs")
    parser.add_argument("--address", default=None,
                        help="with --executor ray: a running Ray cluster (e.g. auto or ray://head:10001); "
                             "default: a local Ray instance of --jobs x --threads CPUs")
    parser.add_argument("--gpus_per_cell", type=float, default=0.0,
                        help="with --executor ray: GPUs each cell asks for (e.g. 1 on a GPU cluster)")
    parser.add_argument("--dataset_dir", default=None, help="dataset folder (default: the bundle's)")
    parser.add_argument("--tracking_uri", default=None,
                        help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///OUT/mlruns.db)")
    parser.add_argument("--experiment_name", default=None, help="MLflow experiment (default: compare-<bundle>-<name of OUT>)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra bundle overrides for every cell, e.g. task=colin27_aal label_set=lobe batch_size=16")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the grid (or, with ``--merge``, only merge results files) and write ``OUT/results.*``; 0 on success."""
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = read_rows(args.merge)
        seeds = sorted({r["seed"] for r in rows})
        bundles = ", ".join(dict.fromkeys(r["bundle"] for r in rows))
        print(write_outputs(rows, args.out, f"Test split, mean ± std over seeds {seeds}; bundle {bundles}."))
        return 0
    args.bundle_dir = args.bundle_dir.resolve()
    # the methods are the overlays the bundle folder carries (and, for classification, the probe)
    overlays = sorted(p.stem for p in bundle_variants.methods_dir(args.bundle, args.bundle_dir).glob("*.yaml"))
    kind_methods = overlays + ([PROBE] if bundle_kind(args.bundle) == "classification" else [])
    args.methods = args.methods or list(kind_methods)
    wrong = [m for m in args.methods if m not in kind_methods]
    if wrong:
        raise SystemExit(f"--methods {' '.join(wrong)}: not a method of {bundle_kind(args.bundle)} bundles such as "
                         f"{args.bundle} (those are: {', '.join(kind_methods)})")
    run_grid(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
