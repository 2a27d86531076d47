"""The grid: every (label fraction, seed, method) cell trained ``--jobs`` at a time, each scored as
it finishes, then the results files and an MLflow ``summary`` run.

Cells that an earlier start trained with the same digest (every override, ``--dataset_dir`` and
``--set`` values included, and the same datalist items; see :mod:`.cells`) are not trained again,
only scored; every other cell trains again. The unfinished runs of a killed start are retired,
so a retrained cell gets a fresh run.
The linear probe is fitted last, in this process, on the by then warm teacher cache.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import as_completed
from typing import Any

from rd_components.tracking import credentials_to_environment

from . import PROBE, reads_feature_cache
from .cells import (Cell, bundle_overrides, cell_name, expected_digest, finished_run, forget_cell, record_cell,
                    recorded_digest, retire_stale_runs, run_cell, tag_trained_run, trained_digest)
from .executors import cell_executor
from .scoring import datalist_digest_now, score_cell
from .tables import describe, write_csv, write_outputs


def grid_settings(args: argparse.Namespace) -> tuple[str, str, dict[str, Any]]:
    """Tracking URI, experiment name and the overrides shared by every cell."""
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{args.out / 'mlruns.db'}"
    # user:password in the URI move to MLflow's environment variables, which the cells inherit:
    # MLflow prints its URI, and a cell's command line is visible to every user of the machine
    tracking_uri = credentials_to_environment(tracking_uri)
    # one experiment per output folder: a grid started again in the same folder skips its finished cells
    experiment = args.experiment_name or f"compare-{args.bundle}-{args.out.name}"
    common = {**bundle_overrides(args), "tracking_uri": tracking_uri, "experiment_name": experiment,
              "feature_cache_dir": str(args.out / "feature_cache")}
    return tracking_uri, experiment, common


def training_order(cells: list[Cell], jobs: int, reads_cache: dict[str, bool]) -> list[Cell]:
    """The order in which ``jobs`` workers start ``cells``: with one worker, the grid's order; with
    more, one cache-reading cell first, then the cells that never read the teacher cache, then
    the other cache readers.

    Cells of one grid share the teacher feature cache (same images and views). Started side by
    side on a cold cache, two cache readers would both run the teacher on every item; started
    after the first one, while the teacher-free cells keep the other workers busy, they find the
    cache warm. Results do not depend on the order: each cell is its own seeded process.

    Args:
        cells: the cells to train, in grid order.
        jobs: cells trained at once.
        reads_cache: method -> whether its cells read the teacher feature cache.
    """
    if jobs <= 1:
        return list(cells)
    readers = [c for c in cells if reads_cache[c[2]]]
    others = [c for c in cells if not reads_cache[c[2]]]
    return readers[:1] + others + readers[1:]


def reusable_run(args: argparse.Namespace, client: Any, experiment: str, common: dict[str, Any], cell: Cell,
                 cache: dict[str, str]) -> str | None:
    """The FINISHED run that stands for ``cell`` in a restarted grid, or ``None`` (train it).

    The digest recorded beside the cell's model must equal the digest the cell would be started
    with now (same overrides, same datalist items: ``cache`` holds the datalist digests), and a
    FINISHED run must carry it. The data is resolved only for cells an earlier start trained.
    """
    name = cell_name(cell)
    recorded = recorded_digest(args, name)
    if recorded is None:
        return None
    fraction, seed, method = cell
    if recorded != expected_digest(args, common, cell, datalist_digest_now(args, common, method, seed, fraction, cache)):
        return None
    return finished_run(client, experiment, name, recorded)


def record_training(args: argparse.Namespace, client: Any, experiment: str, common: dict[str, Any], cell: Cell) -> None:
    """After ``cell`` trained: tag its run with its digest (from the split its training saved) and
    record the digest beside its model, so that a restarted grid can reuse it."""
    digest = trained_digest(args, common, cell)
    run_id = None if digest is None else tag_trained_run(client, experiment, cell_name(cell), digest)
    if run_id is not None:
        record_cell(args, cell_name(cell), digest, run_id)


def run_grid(args: argparse.Namespace) -> None:
    """Train and score every cell of the grid; write ``OUT/results.*`` and print the markdown table."""
    import mlflow

    tracking_uri, experiment, common = grid_settings(args)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    if client.get_experiment_by_name(experiment) is None:
        # created here, once: cells starting side by side would each try to create it, and all
        # but one fail on MLflow's unique experiment name
        client.create_experiment(experiment)
    cells: list[Cell] = [(f, s, m) for f in args.label_fractions for s in args.seeds for m in args.methods]
    names = {c: cell_name(c) for c in cells}
    datalist_digests: dict[str, str] = {}
    done = {c: reusable_run(args, client, experiment, common, c, datalist_digests) for c in cells if c[2] != PROBE}
    to_train = [c for c in cells if c[2] != PROBE and done[c] is None]
    skipped = len(cells) - len(to_train) - sum(c[2] == PROBE for c in cells)
    # trained by an earlier start with other overrides or on other data items: never reused
    changed = sum(recorded_digest(args, names[c]) is not None for c in to_train)
    print(f"{len(cells)} cells: {len(to_train)} to train"
          + (f" ({changed} of them trained before with other parameters or data)" if changed else "")
          + (f", {skipped} already FINISHED in MLflow (skipped)" if skipped else "")
          + (f", {args.jobs} at a time" if args.jobs > 1 else "")
          + (" as Ray tasks" if args.executor == "ray" else ""), flush=True)
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.jobs)
    import torch

    # this process scores cells while `jobs` cells train: one cell's share of the cores, no more
    # (idle OpenMP threads spin on a busy machine and take cycles from the training cells)
    torch.set_num_threads(threads)
    for cell in to_train:
        forget_cell(args, names[cell])  # its model is replaced now: until it is recorded again, nothing vouches for it
        stale = retire_stale_runs(client, experiment, names[cell])
        if stale:
            print(f"    {names[cell]}: {len(stale)} unfinished run(s) of an earlier start renamed "
                  f"{names[cell]}-stale-<id> and marked KILLED", flush=True)
    rows: dict[Cell, dict[str, Any]] = {}

    def score_and_record(cell: Cell) -> None:
        fraction, seed, method = cell
        rows[cell] = score_cell(args, client, experiment, common, method, seed, fraction, names[cell], threads)
        print(f"    {names[cell]}: {describe(rows[cell])}", flush=True)
        # rewritten after every cell, in grid order, so a long grid's CSV is never behind by more than one cell
        write_csv([rows[c] for c in cells if c in rows], args.out / "results.csv")

    for cell in cells:  # finished in an earlier start: scored first, so the CSV has them at once
        if cell[2] != PROBE and done[cell] is not None:
            score_and_record(cell)
    with cell_executor(args.executor, args.jobs, threads, args.address, args.gpus_per_cell) as pool:
        # training runs in subprocesses (started here or by Ray); this process scores each cell as it finishes
        order = training_order(to_train, args.jobs, {m: reads_feature_cache(args.bundle, m, args.bundle_dir) for m in args.methods})
        futures = {pool.submit(run_cell, args, c[2], c[1], c[0], names[c], common, threads): c for c in order}
        failed: dict[Cell, Exception] = {}
        for index, future in enumerate(as_completed(futures), 1):
            cell = futures[future]
            try:
                future.result()
            except Exception as err:  # noqa: BLE001 - one failing cell must not cost the others their scores
                failed[cell] = err
                print(f"[{index}/{len(to_train)}] FAILED {names[cell]}: {err}", flush=True)
                continue
            record_training(args, client, experiment, common, cell)  # before the line: "trained" means reusable
            print(f"[{index}/{len(to_train)}] trained {names[cell]}", flush=True)
            score_and_record(cell)
    for cell in cells:  # the linear probe, fitted here on the now warm teacher cache
        if cell not in rows and cell not in failed:
            score_and_record(cell)

    title = f"Test split, mean ± std over seeds {args.seeds}; bundle {args.bundle}."
    table = write_outputs([rows[c] for c in cells if c in rows], args.out, title)
    print(table)
    if failed:
        raise SystemExit(f"{len(failed)} of {len(cells)} cells failed ({', '.join(names[c] for c in failed)}); the "
                         f"others are scored in {args.out / 'results.csv'}. Each failed cell's log is "
                         f"{args.out / 'cells' / '<cell>' / 'train.log'}; started again, the grid trains only the "
                         f"cells without a FINISHED run.")
    summary = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name="summary").info.run_id
    for name in ("results.csv", "results.md", "results.png"):
        client.log_artifact(summary, str(args.out / name))
    client.set_terminated(summary, "FINISHED")
