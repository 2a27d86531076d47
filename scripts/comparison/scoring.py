"""Scoring on the held-out test split: a trained cell's exported student and teacher branch, or
the teacher linear probe fitted and scored in-process; one results row per cell.

Heavy imports (torch, MONAI, scikit-learn, MLflow) happen inside the functions, so that
``--help`` and ``--merge`` start without them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import PROBE, bundle_kind
from .cells import best_metric, expected_digest, finished_run, load_bundle, probe_run, recorded_digest, task_name
from .segmentation import score_segmentation_cell

if TYPE_CHECKING:
    import numpy as np
    from monai.bundle import ConfigParser


# preprocessed test items by (datalist test files, preprocessing and the values it reads): the
# cells of a grid share one test split, which the driver would otherwise load again per cell
_TEST_ITEMS: dict[str, list[dict]] = {}


def cell_datalist(parser: ConfigParser, ckpt_dir: Path) -> str:
    """The datalist a trained cell is scored on: the split it was trained on (``ckpt_dir/datalist.json``),
    checked against the bundle's resolution now (one warning line when they differ)."""
    from rd_components.data import trained_datalist

    return trained_datalist(ckpt_dir, lambda: parser.get_parsed_content("datalist"))


def test_items(parser: ConfigParser, datalist: str | None = None) -> list[dict]:
    """Preprocessed test items of ``datalist`` (default: the bundle's), loaded once per grid and preprocessing."""
    from rd_components.data import load_datalist, preflight_items

    files = load_datalist(datalist or parser.get_parsed_content("datalist"), "test")
    raw = parser.get("preprocessing")
    # the preprocessing expression and the resolved values it refers to (@patch_size, ...)
    refs = sorted(set(re.findall(r"@([\w#]+)", json.dumps(raw, default=str))))
    key = json.dumps([raw, {r: parser.get_parsed_content(r) for r in refs}, files,
                      parser.get_parsed_content("num_classes")], sort_keys=True, default=str)
    if key not in _TEST_ITEMS:
        _TEST_ITEMS[key] = preflight_items(files, parser.get_parsed_content("preprocessing"),
                                           parser.get_parsed_content("spatial_dims"),
                                           parser.get_parsed_content("num_classes"), "error", "test", progress=False)
    return _TEST_ITEMS[key]


def score(probs: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, macro-F1 and macro one-vs-rest AUC."""
    from sklearn.metrics import f1_score, roc_auc_score

    predicted = probs.argmax(1)
    try:
        auc = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(num_classes))))
    except ValueError:  # a class absent from the test labels
        auc = float("nan")
    return {"accuracy": float((predicted == labels).mean()), "macro_f1": float(f1_score(labels, predicted, average="macro")),
            "auc": auc}


def evaluate_student(model_ts: Path, items: list[dict], num_classes: int) -> dict[str, float]:
    """Test metrics, parameter count and batch-1 CPU latency (median of 20) of an exported student."""
    import numpy as np
    import torch

    model = torch.jit.load(str(model_ts), map_location="cpu").eval()
    images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
    labels = np.array([int(i["label"]) for i in items])
    with torch.no_grad():
        probs = torch.cat([torch.softmax(model(images[k:k + 64]), 1) for k in range(0, len(images), 64)]).numpy()
        example = images[:1]
        for _ in range(5):  # warm-up: the first TorchScript calls optimise the graph
            model(example)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
    return {**score(probs, labels, num_classes), "params": sum(p.numel() for p in model.parameters()),
            "latency_ms": 1000 * statistics.median(times)}


def teacher_branch_test_accuracy(parser: ConfigParser, ckpt_dir: Path, items: list[dict]) -> float:
    """Test accuracy of the cell's teacher branch (reprogrammer or probe + classifier) at its best
    validation epoch (``teacher_branch.pt``); NaN for methods without a teacher branch."""
    import torch
    from monai.data import DataLoader, Dataset

    from rd_components.engines.branches import teacher_branch

    path = ckpt_dir / "teacher_branch.pt"
    if not path.is_file():
        return float("nan")
    state = torch.load(path, map_location="cpu", weights_only=True)
    device = parser.get_parsed_content("device")
    reprogrammer = parser.get_parsed_content("reprogrammer")
    network = parser.get_parsed_content("network")
    reprogrammer.load_state_dict(state["reprogrammer"])
    network.load_state_dict(state["model"])
    reprogrammer.eval()
    network.eval()
    source = parser.get_parsed_content("teacher_source")
    correct = 0
    with torch.no_grad():
        for batch in DataLoader(Dataset(items), batch_size=64, shuffle=False):
            _, logits = teacher_branch(reprogrammer, network.classifier, source(batch["image"].to(device), batch))
            correct += int((logits.argmax(1).cpu() == torch.as_tensor(batch["label"]).reshape(-1)).sum())
    return correct / len(items)


def linear_probe_cell(parser: ConfigParser) -> dict[str, float]:
    """Fit the teacher linear probe on the cell's training items and score it on the test split."""
    import numpy as np
    import torch

    from rd_components.foundation import extract_pooled_features, fit_linear_probe

    device = parser.get_parsed_content("device")
    num_classes = parser.get_parsed_content("num_classes")
    # the bundle's source: the probe reads (and fills) the same teacher feature cache as the cells
    source = parser.get_parsed_content("teacher_source")
    probe = fit_linear_probe(source, parser.get_parsed_content("train#items"), num_classes, device)
    items = test_items(parser)
    labels = np.array([int(i["label"]) for i in items])
    features, _ = extract_pooled_features(source, items, device)
    with torch.no_grad():
        probs = torch.softmax(probe.logits(torch.from_numpy(features).to(device)), 1).cpu().numpy()
    teacher = parser.get_parsed_content("teacher_net").materialize()
    metrics = score(probs, labels, num_classes)
    # the probe is the teacher's branch: its accuracy is the teacher accuracy too
    return {**metrics, "params": sum(p.numel() for p in teacher.parameters()) + probe.linear.weight.numel(),
            "latency_ms": float("nan"), "teacher_accuracy": metrics["accuracy"]}


def datalist_digest_now(args: argparse.Namespace, common: dict[str, Any], method: str, seed: int, fraction: float,
                        cache: dict[str, str]) -> str:
    """Items digest of the datalist a cell started now would train on (the bundle's resolution).

    ``cache``: digests by the datalist expression and the values it reads, so a grid resolves
    its data once per distinct setting (per seed for a split drawn from the user's folder).
    """
    from rd_components.data import datalist_digest

    parser = load_bundle(args, common, method, seed, fraction)
    raw = parser.get("datalist")
    refs = sorted(set(re.findall(r"@([\w#]+)", json.dumps(raw, default=str))))
    key = json.dumps([raw, {r: parser.get_parsed_content(r) for r in refs}], sort_keys=True, default=str)
    if key not in cache:
        cache[key] = datalist_digest(parser.get_parsed_content("datalist"))
    return cache[key]


def score_cell(args: argparse.Namespace, client: Any, experiment: str, common: dict[str, Any], method: str, seed: int,
               fraction: float, cell: str, threads: int | None = None) -> dict[str, Any]:
    """Test metrics of one trained cell (or fit and score the linear probe); one results row.

    ``threads``: torch threads of a scoring subprocess (segmentation cells are evaluated by their
    bundle's ``evaluate.yaml`` in one).

    The test metrics are logged to the cell's MLflow run as ``test_<metric>``; the probe, which
    no bundle run records, gets a run of its own here and is marked FINISHED once scored.
    """
    if bundle_kind(args.bundle) == "segmentation":
        return score_segmentation_cell(args, client, experiment, common, method, seed, fraction, cell, threads)
    parser = load_bundle(args, common, method, seed, fraction)
    num_classes = parser.get_parsed_content("num_classes")
    if method == PROBE:
        from rd_components.data import datalist_digest

        metrics = linear_probe_cell(parser)
        digest = expected_digest(args, common, (fraction, seed, method), datalist_digest(parser.get_parsed_content("datalist")))
        run_id = probe_run(client, experiment, cell, {"method": method, "seed": seed, "label_fraction": fraction}, digest)
    else:
        ckpt = args.out / "cells" / cell / "models"
        items = test_items(parser, cell_datalist(parser, ckpt))
        metrics = evaluate_student(ckpt / "model.ts", items, num_classes)
        metrics["teacher_accuracy"] = teacher_branch_test_accuracy(parser, ckpt, items)
        run_id = finished_run(client, experiment, cell, recorded_digest(args, cell))
        if run_id is None:
            raise RuntimeError(f"cell {cell}: no FINISHED MLflow run tagged with the digest of its training "
                               f"({args.out / 'cells' / cell / 'cell.json'})")
        metrics["teacher_val_accuracy"] = best_metric(client, run_id, "teacher_val_accuracy")
    for key in ("accuracy", "macro_f1", "auc", "latency_ms", "teacher_accuracy"):
        if metrics[key] == metrics[key]:  # skip NaN
            client.log_metric(run_id, f"test_{key}", metrics[key])
    if method == PROBE:
        client.set_terminated(run_id, "FINISHED")
    from rd_components.data import labeled_items

    files = parser.get_parsed_content("train#files")
    n_labeled = len(labeled_items(files))
    return {"bundle": args.bundle, "task": task_name(parser), "method": method, "seed": seed, "label_fraction": fraction,
            "n_labeled": n_labeled, "n_unlabeled": len(files) - n_labeled, "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "auc": metrics["auc"], "teacher_accuracy": metrics["teacher_accuracy"],
            "teacher_val_accuracy": metrics.get("teacher_val_accuracy", float("nan")),
            "params": metrics["params"], "latency_ms": metrics["latency_ms"], "run_id": run_id}
