"""One cell of the grid (method, seed, label fraction): its overrides, its training, its resume.

A cell is ``python -m monai.bundle run training`` with ``bundles/methods/<method>.yaml`` merged on
the bundle's ``train.yaml``, in its own process, and is one FINISHED MLflow run named after the
cell. A grid started again finds that run (same name, same parameters) and skips the training.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from . import REPO, method_overlay

# a cell key: (label fraction, seed, method), in the grid's order (fractions outermost)
Cell = tuple[float, int, str]
# overrides a restarted cell's FINISHED run must share with the grid, besides method, seed and fraction
RESUME_KEYS = ("epochs", "task", "label_set", "augment", "batch_size", "learning_rate", "data_format", "teacher", "student")


def _value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, lists, booleans), else the string itself."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def bundle_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Overrides shared by every cell."""
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.dataset_dir:
        overrides["dataset_dir"] = args.dataset_dir
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return overrides


def cell_name(cell: Cell) -> str:
    """The cell's run name and folder, e.g. ``rd-f0.1-s0``."""
    fraction, seed, method = cell
    return f"{method}-f{fraction:g}-s{seed}"


def cell_overrides(args: argparse.Namespace, seed: int, fraction: float, cell: str, common: dict[str, Any]) -> dict[str, Any]:
    """Bundle overrides of one cell: the grid's, its seed and label fraction, its own folders and run name."""
    cell_dir = args.out / "cells" / cell
    return {**common, "seed": seed, "label_fraction": fraction, "output_dir": str(cell_dir),
            "ckpt_dir": str(cell_dir / "models"), "run_name": cell, "registered_model_name": None}


def run_bundle(workflow: str, configs: list[str], overrides: dict[str, Any], log: Path, threads: int | None = None) -> None:
    """``python -m monai.bundle run <workflow>`` on ``configs`` with ``overrides``, its output in ``log``.

    The bundle runs as users run it, in its own process, so that ``--jobs`` cells train side by
    side and a failing cell leaves its whole log behind.
    """
    cmd = [sys.executable, "-m", "monai.bundle", "run", workflow, "--config_file", json.dumps(configs)]
    for key, value in overrides.items():
        # the bundle CLI (python-fire) reads Python literals: True, None, [32, 32]
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    log.parent.mkdir(parents=True, exist_ok=True)
    # MONAI's MLFlowHandler lets MLFLOW_TRACKING_URI override its argument: keep both equal
    env = {**os.environ, "MLFLOW_TRACKING_URI": overrides["tracking_uri"]}
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # N cells at once on C cores: C // N threads each, so they do not oversubscribe the cores
        env["OMP_NUM_THREADS"] = str(threads)
    with open(log, "w") as handle:
        result = subprocess.run(cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"{workflow} of {overrides.get('run_name', 'the bundle')} failed; see {log}")


def run_cell(args: argparse.Namespace, method: str, seed: int, fraction: float, cell: str, common: dict[str, Any],
             threads: int | None = None) -> Path:
    """Train one cell with the bundle in a subprocess (``threads`` torch threads); return its checkpoint folder.

    A failing cell leaves its whole log in ``OUT/cells/<cell>/train.log``.
    """
    configs = [str(REPO / "bundles" / args.bundle / "configs" / "train.yaml"), str(method_overlay(args.bundle, method))]
    overrides = cell_overrides(args, seed, fraction, cell, common)
    run_bundle("training", configs, overrides, args.out / "cells" / cell / "train.log", threads)
    return Path(overrides["ckpt_dir"])


def expected_params(cell: Cell, common: dict[str, Any]) -> dict[str, Any]:
    """MLflow parameters a FINISHED run must have to stand for ``cell`` in a restarted grid."""
    fraction, seed, method = cell
    return {"method": method, "seed": seed, "label_fraction": fraction, **{k: common[k] for k in RESUME_KEYS if k in common}}


def finished_run(client: Any, experiment: str, cell: str, expected: dict[str, Any]) -> str | None:
    """Id of a FINISHED run named ``cell`` whose parameters match ``expected``, if any (grid resume).

    Args:
        client: ``mlflow.MlflowClient`` of the grid's tracking URI.
        experiment: the grid's MLflow experiment (one per output folder).
        cell: the cell's run name (:func:`cell_name`).
        expected: parameters the run must have logged (:func:`expected_params`).
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{cell}' and attributes.status = 'FINISHED'")
    for run in runs:
        if all(_same(run.data.params.get(k), v) for k, v in expected.items()):
            return run.info.run_id
    return None


def retire_stale_runs(client: Any, experiment: str, cell: str) -> list[str]:
    """Rename and mark KILLED the unfinished runs named ``cell`` (a killed grid's leftovers); return their ids.

    MONAI's ``MLFlowHandler`` attaches to the latest run of the same name that is not FINISHED,
    so a cell trained again after a kill would append its metrics to the killed attempt's
    history. Renamed ``<cell>-stale-<id>``, the attempt stays in MLflow for the record and the
    new training starts a run of its own.
    """
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{cell}' and attributes.status != 'FINISHED'")
    for run in runs:
        client.update_run(run.info.run_id, status="KILLED", name=f"{cell}-stale-{run.info.run_id[:8]}")
    return [run.info.run_id for run in runs]


def _same(logged: str | None, value: Any) -> bool:
    """A logged MLflow parameter (a string) against an override value."""
    if logged is None:
        return False
    if isinstance(value, bool):
        return logged.lower() == str(value).lower()
    if isinstance(value, (int, float)):
        try:
            return float(logged) == float(value)
        except ValueError:
            return False
    return logged == str(value)


def best_metric(client: Any, run_id: str, key: str) -> float:
    """Highest value of an MLflow metric over a run's epochs (NaN when never logged)."""
    history = client.get_metric_history(run_id, key)
    return max((m.value for m in history), default=float("nan"))
