#!/usr/bin/env python
"""Build the embedded datasets (patch files + decathlon-style datalist) from real templates.

Examples:
    python scripts/prepare_data.py                      # MNI152 tissue, 2D, NIfTI, under ./data
    python scripts/prepare_data.py --task mni152_tissue --spatial_dims 3 --format dicom --root data
    python scripts/prepare_data.py --task colin27_aal --label_set lobe --spatial_dims 2
    python scripts/prepare_data.py --all               # every task, label set, dimension and format

Builds are deterministic and idempotent: rerunning with the same arguments rewrites nothing.
``colin27_aal`` needs the Debian package ``mricron-data`` (or RD_MRICRON_TEMPLATES).
"""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
import time


def _parser() -> argparse.ArgumentParser:
    from rd_components.embedded import FORMATS, TASKS

    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Prints the datalist path and the class counts of each split.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--task", choices=TASKS, default="mni152_tissue",
                   help="mni152_tissue: grey/white matter/CSF (pip only); colin27_aal: AAL lobes or regions, "
                        "train left hemisphere, test right (needs apt-get install mricron-data)")
    p.add_argument("--spatial_dims", type=int, choices=(2, 3), default=2, help="2: axial patches; 3: cubes")
    p.add_argument("--format", dest="fmt", choices=FORMATS, default="nifti",
                   help="nifti: one .nii.gz per patch; dicom: one file per 2D patch, one series folder per 3D patch")
    p.add_argument("--root", default="data", help="parent folder of the datasets (git-ignored ./data by default)")
    p.add_argument("--label_set", choices=("lobe", "region"), default=None,
                   help="colin27_aal only: lobe (8 classes, default) or region (62, left/right merged)")
    p.add_argument("--patch_size", type=int, default=None,
                   help="patch side; default 64 (2D), 32 (3D MNI), 48 (3D Colin)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--n_train", type=int, default=None, help="training patches (total, balanced over classes)")
    p.add_argument("--n_val", type=int, default=None, help="validation patches")
    p.add_argument("--n_test", type=int, default=None, help="test patches")
    p.add_argument("--template_dir", default=None,
                   help="Colin27/AAL folder (else $RD_MRICRON_TEMPLATES, else Debian's)")
    p.add_argument("--all", action="store_true",
                   help="build every task x label set x 2D/3D x nifti/dicom with defaults (Colin27 skipped with a "
                        "reason when mricron-data is missing)")
    p.add_argument("--force", action="store_true", help="rebuild even if an identical build exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _report(path, seconds: float) -> None:
    from rd_components.data import class_counts, read_datalist

    datalist = read_datalist(path)
    print(f"{path}  ({seconds:.1f} s, {datalist['num_classes']} classes)")
    for split in ("training", "validation", "test"):
        counts = class_counts(datalist[split])
        if len(counts) > 10:
            text = f"{len(counts)} classes, {min(counts.values())}..{max(counts.values())} per class"
        else:
            text = str(counts)
        print(f"  {split:<10} {len(datalist[split]):>5}  {text}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from rd_components.embedded import LABEL_SETS, TASKS, build_dataset

    sizes = {k: v for k, v in (("n_train", args.n_train), ("n_val", args.n_val), ("n_test", args.n_test)) if v}
    if args.all:
        combos = list(itertools.product((2, 3), ("nifti", "dicom")))
        jobs = [(t, ls, d, f) for t in TASKS for ls in LABEL_SETS[t] for d, f in combos]
    else:
        jobs = [(args.task, args.label_set, args.spatial_dims, args.fmt)]
    status = 0
    for task, label_set, dims, fmt in jobs:
        start = time.perf_counter()
        try:
            path = build_dataset(args.root, task, dims, fmt, label_set, args.patch_size, args.seed,
                                 template_dir=args.template_dir, force=args.force, progress=not args.quiet, **sizes)
        except (FileNotFoundError, ValueError) as err:
            print(f"{task} {label_set or ''} {dims}D {fmt}: skipped: {err}", file=sys.stderr)
            status = 1
            continue
        _report(path, time.perf_counter() - start)
    return status


if __name__ == "__main__":
    sys.exit(main())
