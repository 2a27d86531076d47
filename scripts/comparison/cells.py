"""One cell of the grid (method, seed, label fraction): its overrides, its training, its resume.

A cell is ``python -m monai.bundle run training`` with the bundle's ``configs/methods/<method>.yaml``
merged on the variant's training files, in its own process, and is one FINISHED MLflow run named after the
cell. Its *digest* (:func:`cell_digest`) covers everything it was started with: the method, every
override (``--dataset_dir`` and ``--set`` values included) and the items of the datalist it
trained on. After training, the grid tags the run ``cell_digest`` and records the digest beside
the cell's model (``OUT/cells/<cell>/cell.json``). A grid started again skips a cell only when
both hold the digest it would start the cell with now; any other cell trains again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rd_components.atomic import atomic_write

from . import REPO, training_configs

if TYPE_CHECKING:
    from monai.bundle import ConfigParser

# a cell key: (label fraction, seed, method), in the grid's order (fractions outermost)
Cell = tuple[float, int, str]
# overrides that say where a cell's outputs and records go, not what it trains: left out of its digest
LOCATION_KEYS = ("output_dir", "ckpt_dir", "feature_cache_dir", "tracking_uri", "experiment_name", "run_name",
                 "registered_model_name")
# the cell's record beside its model folder: the digest of what its model was trained with, and its run
CELL_RECORD = "cell.json"
# the MLflow tag holding a cell run's digest
DIGEST_TAG = "cell_digest"


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
    configs = training_configs(args.bundle, method, args.bundle_dir)
    overrides = cell_overrides(args, seed, fraction, cell, common)
    run_bundle("training", configs, overrides, args.out / "cells" / cell / "train.log", threads)
    return Path(overrides["ckpt_dir"])


def cell_digest(method: str, overrides: dict[str, Any], datalist_digest: str) -> str:
    """sha256 of what a cell is started with: its method, every override but the locations
    (:data:`LOCATION_KEYS`), and the items digest of its datalist
    (:func:`rd_components.data.datalist_digest`)."""
    what = {"method": method, "overrides": {k: v for k, v in overrides.items() if k not in LOCATION_KEYS},
            "datalist": datalist_digest}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()


def expected_digest(args: argparse.Namespace, common: dict[str, Any], cell: Cell, datalist_digest: str) -> str:
    """The digest of ``cell`` started now with the grid's overrides on a datalist of ``datalist_digest``."""
    fraction, seed, method = cell
    return cell_digest(method, cell_overrides(args, seed, fraction, cell_name(cell), common), datalist_digest)


def trained_digest(args: argparse.Namespace, common: dict[str, Any], cell: Cell) -> str | None:
    """The digest of the cell just trained, from the split its training saved beside its model;
    ``None`` when there is none."""
    from rd_components.data import trained_split_digest

    split = trained_split_digest(args.out / "cells" / cell_name(cell) / "models")
    return None if split is None else expected_digest(args, common, cell, split)


def recorded_digest(args: argparse.Namespace, cell: str) -> str | None:
    """The digest recorded beside the model of ``cell`` (a cell name) after its training; ``None`` when none is."""
    path = args.out / "cells" / cell / CELL_RECORD
    return json.loads(path.read_text()).get("digest") if path.is_file() else None


def record_cell(args: argparse.Namespace, cell: str, digest: str, run_id: str) -> None:
    """Record, beside the model of ``cell``, the digest it was trained with and its MLflow run (atomically)."""

    text = json.dumps({"digest": digest, "run_id": run_id}, indent=1) + "\n"
    atomic_write(args.out / "cells" / cell / CELL_RECORD, lambda tmp: tmp.write_text(text))


def forget_cell(args: argparse.Namespace, cell: str) -> None:
    """Remove the record of ``cell`` before it trains again: a training stopped halfway leaves a
    model that no digest vouches for, so a later start trains it again."""
    (args.out / "cells" / cell / CELL_RECORD).unlink(missing_ok=True)


def _finished_runs(client: Any, experiment: str, cell: str, digest: str | None = None) -> list[Any]:
    """FINISHED runs named ``cell`` (tagged ``digest`` when given), the latest first."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"attributes.run_name = '{cell}' and attributes.status = 'FINISHED'"
    if digest is not None:
        query += f" and tags.{DIGEST_TAG} = '{digest}'"
    return client.search_runs([exp.experiment_id], filter_string=query, order_by=["attributes.start_time DESC"])


def finished_run(client: Any, experiment: str, cell: str, digest: str | None) -> str | None:
    """Id of the FINISHED run named ``cell`` tagged with ``digest``, if any (grid resume, scoring).

    Args:
        client: ``mlflow.MlflowClient`` of the grid's tracking URI.
        experiment: the grid's MLflow experiment (one per output folder).
        cell: the cell's run name (:func:`cell_name`).
        digest: the cell's digest (:func:`cell_digest`); ``None`` finds nothing.
    """
    runs = [] if digest is None else _finished_runs(client, experiment, cell, digest)
    return runs[0].info.run_id if runs else None


def tag_trained_run(client: Any, experiment: str, cell: str, digest: str) -> str | None:
    """Tag with ``digest`` the run of the training of ``cell`` that just ended: the latest FINISHED
    run of that name, which no digest tags yet (one that does is an earlier training's: the one
    that just ended left no run). Its id, or ``None``."""
    runs = _finished_runs(client, experiment, cell)
    if not runs or DIGEST_TAG in runs[0].data.tags:
        return None
    client.set_tag(runs[0].info.run_id, DIGEST_TAG, digest)
    return runs[0].info.run_id


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


def best_metric(client: Any, run_id: str, key: str) -> float:
    """Highest value of an MLflow metric over a run's epochs (NaN when never logged)."""
    history = client.get_metric_history(run_id, key)
    return max((m.value for m in history), default=float("nan"))


def load_bundle(args: argparse.Namespace, common: dict[str, Any], method: str, seed: int, fraction: float) -> ConfigParser:
    """Parse the bundle config in-process (for test data, the probe and metadata)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files(training_configs(args.bundle, method, args.bundle_dir)))
    parser["bundle_root"] = str(args.bundle_dir)
    for key, value in {**common, "seed": seed, "label_fraction": fraction, "output_dir": str(args.out / "shared")}.items():
        parser[key] = value
    return parser


def probe_run(client: Any, experiment: str, cell: str, params: dict[str, Any], digest: str) -> str:
    """The probe's MLflow run: the FINISHED one of an earlier start with the same ``digest``
    (same overrides, same data), else a new one with ``params``, tagged with ``digest``."""
    import mlflow

    run_id = finished_run(client, experiment, cell, digest)  # a restarted grid reuses the probe's run
    if run_id is None:
        experiment_id = client.get_experiment_by_name(experiment)
        experiment_id = experiment_id.experiment_id if experiment_id else client.create_experiment(experiment)
        run_id = client.create_run(experiment_id, run_name=cell, tags={DIGEST_TAG: digest}).info.run_id
        client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])
    return run_id


def task_name(parser: ConfigParser) -> str:
    """``<data>[_<label_set>]_<spatial_dims>d``, e.g. ``colin27_aal_lobe_2d`` (an embedded task) or
    ``Task01_Tiny_3d`` (the user's data the cell trained on: the bundle's ``data_name``)."""
    label_set = parser.get_parsed_content("label_set")
    dims = parser.get_parsed_content("spatial_dims")
    return "_".join(str(p) for p in (parser.get_parsed_content("data_name"), label_set) if p) + f"_{dims}d"
