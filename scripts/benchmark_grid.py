#!/usr/bin/env python
"""Wall time of one comparison grid run one cell at a time, two at a time, and as Ray tasks.

The same 8-cell grid (student and RD x seeds 0, 1 x label fractions 0.1, 1.0 on a small 2D
tissue dataset) runs four times from scratch, each in its own output folder with a cold
teacher cache: ``--jobs 1`` (one cell, all cores), ``--jobs 1 --threads 1`` (one cell, one
thread: the reference table of one-thread cells), ``--jobs 2`` (two cells, cores / 2 threads
each) and, when Ray is installed, ``--executor ray --jobs 2``. Printed and saved
(``--out``, JSON and markdown): the wall time of each, the ratio to ``--jobs 1``, and whether
the results tables give the same numbers.

Example:
    python scripts/benchmark_grid.py --out docs/benchmarks
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BAR = 0.65  # --jobs 2 / --jobs 1 wall time on 2 cores (scripts/benchmarks/bars.yaml style: a target, not an assertion)


def grid_command(out: Path, data: Path, epochs: int, extra: list[str]) -> list[str]:
    """The compare.py command of the benchmark grid."""
    return [sys.executable, str(REPO / "scripts" / "compare.py"), "--bundle", "rd_classification_2d",
            "--methods", "student", "rd", "--seeds", "0", "1", "--label_fractions", "0.1", "1.0",
            "--epochs", str(epochs), "--out", str(out), "--dataset_dir", str(data), "--experiment_name", "grid",
            "--set", "patch_size=[32,32]", "batch_size=16", *extra]


def table(out: Path) -> list[tuple[str, str, str, str]]:
    """(method, seed, fraction, accuracy) per cell of a finished grid."""
    return [(r["method"], r["seed"], r["label_fraction"], r["accuracy"]) for r in csv.DictReader(open(out / "results.csv"))]


def main(argv: list[str] | None = None) -> int:
    """Run the grids, print and save the wall times and the table check; 0 on success."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/benchmarks", help="folder of grid_benchmark.json / .md")
    p.add_argument("--samples", type=int, default=96, help="training patches of the grid's dataset")
    p.add_argument("--epochs", type=int, default=2, help="epochs per cell")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray run even when Ray is installed")
    args = p.parse_args(argv)
    from rd_components.embedded import build_dataset

    work = Path(tempfile.mkdtemp(prefix="rd_grid_bench_"))
    data = work / "data"
    build_dataset(data, "mni152_tissue", 2, "nifti", patch_size=32, n_train=args.samples, n_val=24, n_test=48, progress=False)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")}
    # "jobs 1, threads 1" trains each cell on one thread like "jobs 2": its table is the one the
    # others must equal (a cell on two threads sums in another order: same seeds, other decimals)
    runs = {"jobs 1": ["--jobs", "1"], "jobs 1, threads 1": ["--jobs", "1", "--threads", "1"], "jobs 2": ["--jobs", "2"]}
    if not args.no_ray and importlib.util.find_spec("ray") is not None:
        runs["ray, jobs 2"] = ["--executor", "ray", "--jobs", "2"]
    results: dict[str, dict] = {}
    for name, extra in runs.items():
        out = work / name.replace(" ", "_").replace(",", "")
        print(f"[{name}] {' '.join(extra)}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.run(grid_command(out, data, args.epochs, extra), capture_output=True, text=True, env=env, cwd=REPO)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            print(proc.stdout[-2000:] + proc.stderr[-2000:], file=sys.stderr)
            return 1
        results[name] = {"wall_s": round(wall, 1), "table": table(out)}
        print(f"[{name}] {wall:.1f} s", flush=True)
    base, one_thread = results["jobs 1"], results["jobs 1, threads 1"]
    for r in results.values():
        r["ratio_to_jobs_1"] = round(r["wall_s"] / base["wall_s"], 3)
        r["same_table_as_jobs_1"] = r["table"] == base["table"]
        r["same_table_as_jobs_1_threads_1"] = r["table"] == one_thread["table"]
    summary = {
        "command": "python scripts/benchmark_grid.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cores": os.cpu_count(), "cells": len(base["table"]), "samples": args.samples, "epochs": args.epochs,
        "bar_jobs2_ratio": BAR,
        "bar_met": results["jobs 2"]["ratio_to_jobs_1"] <= BAR and all(r["same_table_as_jobs_1_threads_1"] for r in results.values()
                                                                       if r is not base),
        "runs": results,
    }
    lines = ["# Comparison grid wall time", "", f"`{summary['command']}` on {summary['cores']} cores, {summary['date']}; "
             f"{summary['cells']} cells (student and RD x 2 seeds x 2 label fractions, {args.samples} patches, "
             f"{args.epochs} epochs), cold teacher cache each.", "",
             "| run | wall time [s] | / jobs 1 | same table as jobs 1 | same table as jobs 1, threads 1 |",
             "|---|---|---|---|---|"]
    yes = {True: "yes", False: "no"}
    lines += [f"| {n} | {r['wall_s']} | {r['ratio_to_jobs_1']} | {yes[r['same_table_as_jobs_1']]} | "
              f"{yes[r['same_table_as_jobs_1_threads_1']]} |" for n, r in results.items()]
    lines += ["", f"Bar: jobs 2 / jobs 1 <= {BAR}, and every one-thread-per-cell run gives the table of "
              f"jobs 1, threads 1: {'met' if summary['bar_met'] else 'NOT met'}. A cell on two threads "
              "(jobs 1) sums in another order than on one: same seeds, other decimals."]
    text = "\n".join(lines)
    print(text)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "grid_benchmark.json").write_text(json.dumps(summary, indent=1))
    (out_dir / "grid_benchmark.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
