"""Scoring a segmentation cell: the bundle's own ``evaluate.yaml`` on the held-out test images.

The cell's best checkpoint is evaluated as a user would evaluate it, by ``python -m monai.bundle
run evaluating`` (sliding-window inference on the whole right-hemisphere volume in 3D, or its
axial slices in 2D; MONAI's ``MeanDice`` and 95 % ``HausdorffDistance`` over the foreground
classes), in a subprocess; its ``MetricsSaver`` CSVs give the row: mean Dice and mean HD95 (as
``metrics.csv`` holds them) and the Dice of each class. The means are also logged to the cell's MLflow training run as
``test_mean_dice`` / ``test_hd95``.

The linear probe (``--methods linear_probe``) is no trained cell: it is fitted here on the
labelled training patches' stage maps (:func:`rd_components.foundation.fit_stage_probe`, through
the grid's feature cache), written as the cell's ``models/model.pt``, and then scored the same
way, by ``evaluate.yaml`` with the ``linear_probe`` overlay's network (teacher + probe).
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path
from typing import Any

import bundle_variants

from . import PROBE, training_configs
from .cells import (best_metric, cell_overrides, expected_digest, finished_run, load_bundle, probe_run, recorded_digest,
                    run_bundle, task_name)


def score_segmentation_cell(args: argparse.Namespace, client: Any, experiment: str, common: dict[str, Any], method: str,
                            seed: int, fraction: float, cell: str, threads: int | None = None) -> dict[str, Any]:
    """Test Dice / HD95 of one trained segmentation cell, from the bundle's ``evaluate.yaml``; one results row."""
    import torch

    training = bundle_variants.config_files(args.bundle, "train", args.bundle_dir)
    evaluation = bundle_variants.config_files(args.bundle, "evaluate", args.bundle_dir)[len(training):]
    configs = training_configs(args.bundle, method, args.bundle_dir) + [str(p) for p in evaluation]
    overrides = cell_overrides(args, seed, fraction, cell, common)
    overrides["run_name"] = f"{cell}-test"  # its own MLflow run: the training run stays as trained
    cell_dir = Path(overrides["output_dir"])
    eval_dir = cell_dir / overrides["run_name"]
    model = cell_dir / "models" / "model.pt"
    if method == PROBE:
        probe_digest = fit_probe_cell(args, common, seed, fraction, cell_dir / "models")
    if not (eval_dir / "metrics.csv").is_file() or (eval_dir / "metrics.csv").stat().st_mtime < model.stat().st_mtime:
        # a restarted grid reuses the evaluation of a cell that was not trained again
        run_bundle("evaluating", configs, overrides, cell_dir / "evaluate.log", threads)
    figures = read_segmentation_metrics(eval_dir)
    dice = {"mean": figures["mean_dice"], **figures["dice_per_class"]}
    hd95 = {"mean": figures["hd95"]}
    parser = load_bundle(args, common, method, seed, fraction)
    if method == PROBE:
        from rd_components.data import labeled_items

        params = {"method": method, "seed": seed, "label_fraction": fraction,
                  "num_train_labeled": len(labeled_items(parser.get_parsed_content("train#items"))),
                  "num_train_unlabeled": 0}
        run_id = probe_run(client, experiment, cell, params, probe_digest)
    else:
        run_id = finished_run(client, experiment, cell, recorded_digest(args, cell))
    if run_id is None:
        raise RuntimeError(f"cell {cell}: no FINISHED MLflow run tagged with the digest of its training "
                           f"({cell_dir / 'cell.json'})")
    client.log_metric(run_id, "test_mean_dice", dice["mean"])
    client.log_metric(run_id, "test_hd95", hd95["mean"])
    if method == PROBE:
        client.set_terminated(run_id, "FINISHED")
    run = client.get_run(run_id)
    names = parser.get_parsed_content("class_names")[1:]  # foreground classes, in class order
    if method == PROBE:  # the teacher and the probe: what a probe-based segmenter deploys
        network = parser.get_parsed_content("network_def")
        params = sum(p.numel() for p in network.teacher.materialize().parameters()) + \
            sum(p.numel() for p in network.probe.parameters())
    else:
        params = sum(p.numel() for p in torch.jit.load(str(cell_dir / "models" / "model.ts"), map_location="cpu").parameters())
    row = {"bundle": args.bundle, "task": task_name(parser), "method": method, "seed": seed, "label_fraction": fraction,
           "n_labeled": int(run.data.params.get("num_train_labeled", 0)),
           "n_unlabeled": int(run.data.params.get("num_train_unlabeled", 0)),
           "mean_dice": dice["mean"], "hd95": hd95["mean"],
           "val_mean_dice": best_metric(client, run_id, "val_mean_dice")}
    for index, name in enumerate(names):
        row[f"dice_{name.lower().replace(' ', '_')}"] = dice.get(f"class{index}", float("nan"))
    row.update({"params": params, "run_id": run_id})
    return row


def fit_probe_cell(args: argparse.Namespace, common: dict[str, Any], seed: int, fraction: float, ckpt_dir: Path) -> str:
    """Fit the stage probe of a cell on its labelled training patches; write ``ckpt_dir/model.pt``
    (the probe's weights, as :class:`~rd_components.networks.StageProbeSegmenter` names them)
    and ``ckpt_dir/datalist.json``; return the cell's digest (its MLflow run's tag).

    A restarted grid refits (a few seconds on a warm feature cache) and re-evaluates.
    """
    from monai.data import Dataset

    from rd_components.atomic import atomic_torch_save
    from rd_components.data import datalist_digest, labeled_items, save_trained_split
    from rd_components.foundation import fit_stage_probe

    parser = load_bundle(args, common, PROBE, seed, fraction)
    items = labeled_items(parser.get_parsed_content("train#items"))
    probe = fit_stage_probe(parser.get_parsed_content("teacher_source"),
                            Dataset(items, transform=parser.get_parsed_content("preprocessing")),
                            parser.get_parsed_content("num_classes"), parser.get_parsed_content("spatial_dims"),
                            parser.get_parsed_content("device"), seed=seed)  # the same probe each time the cell is scored
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({f"probe.{k}": v.cpu() for k, v in probe.state_dict().items()}, ckpt_dir / "model.pt")
    datalist = parser.get_parsed_content("datalist")
    save_trained_split(datalist, ckpt_dir)
    return expected_digest(args, common, (fraction, seed, PROBE), datalist_digest(datalist))


def read_segmentation_metrics(folder: str | os.PathLike, split: str = "test") -> dict[str, Any]:
    """The figures a segmentation ``evaluate.yaml`` run left in ``folder`` (MONAI ``MetricsSaver`` CSVs).

    Returns:
        ``mean_dice`` and ``hd95`` as ``metrics.csv`` holds them (MONAI's ``MeanDice`` /
        ``HausdorffDistance``: mean over every non-NaN image-class pair), ``dice_per_class``
        (``class0`` = the first foreground class: mean over images, from
        ``<split>_mean_dice_summary.csv``) and ``num_samples`` (images evaluated).

    Raises:
        KeyError: ``metrics.csv`` lacks ``<split>_mean_dice`` or ``<split>_hd95``.
    """
    folder = Path(folder)
    with open(folder / "metrics.csv", newline="") as handle:
        metrics = dict(row for row in csv.reader(handle) if len(row) == 2)
    missing = [key for key in (f"{split}_mean_dice", f"{split}_hd95") if key not in metrics]
    if missing:
        raise KeyError(f"{folder / 'metrics.csv'}: no {missing}; is it a segmentation bundle's evaluate.yaml output?")
    with open(folder / f"{split}_mean_dice_summary.csv", newline="") as handle:
        per_class = {row["class"]: float(row["mean"]) for row in csv.DictReader(handle) if row["class"] != "mean"}
    with open(folder / f"{split}_mean_dice_raw.csv", newline="") as handle:
        images = sum(1 for _ in csv.DictReader(handle))
    return {"mean_dice": float(metrics[f"{split}_mean_dice"]), "hd95": float(metrics[f"{split}_hd95"]),
            "dice_per_class": per_class, "num_samples": images}
