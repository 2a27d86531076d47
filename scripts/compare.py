#!/usr/bin/env python
"""Compare RD with KD, semi-supervised and PEFT baselines over seeds and label fractions, on one bundle.

Every cell (method, seed, label fraction) trains the bundle's student with the same budget,
data and augmentation. A label fraction hides labels, never images: every method sees every
training image, the labels of the fraction only, and the same number of optimizer steps.
A cell is ``python -m monai.bundle run training`` with ``bundles/methods/<m>.yaml`` merged on
the bundle's ``train.yaml``, is one FINISHED MLflow run in one experiment, and is
scored on the held-out test split with the exported student. ``linear_probe`` (the frozen
teacher with a logistic-regression head, the reference) is fitted and scored in-process.

Example:
    python scripts/compare.py --bundle rd_classification_2d --methods student kd rd \\
        --seeds 0 1 2 --label_fractions 0.01 0.1 1.0 --epochs 10 --out results/compare_2d

Writes ``OUT/results.csv`` (one row per cell, with the task, the labelled / unlabelled counts
and the teacher branch's validation and test accuracy), ``OUT/results.md`` (mean +- std per
method and fraction, RD minus each method paired by seed with a 95 % interval) and
``OUT/results.png``; MLflow data goes to ``OUT/mlruns.db`` unless
``--tracking_uri`` says otherwise. Cells run one after another, or ``--jobs N`` at a time. A grid
started again with the same ``--out`` (same MLflow experiment) skips the cells whose run is
FINISHED with the same parameters and only scores them again.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOAT_COLUMNS = ("accuracy", "macro_f1", "auc", "latency_ms", "teacher_accuracy", "teacher_val_accuracy")
# every overlay in bundles/methods/ is a method; the linear probe is fitted in-process
METHODS = tuple(sorted(p.stem for p in (REPO / "bundles" / "methods").glob("*.yaml"))) + ("linear_probe",)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default="rd_classification_2d", help="bundle folder name under bundles/")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, metavar="METHOD",
                        help=f"methods to compare (default: all of {', '.join(METHODS)})")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--label_fractions", nargs="+", type=float, default=[0.01, 0.1, 1.0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per cell (default: the bundle's)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--merge", nargs="+", type=Path, default=None, metavar="CSV",
                        help="train nothing: merge these results.csv files (e.g. two grids of the same task) "
                             "into OUT/results.csv, .md and .png")
    parser.add_argument("--jobs", type=int, default=1,
                        help="cells trained at once, each in its own process with cores / jobs torch threads")
    parser.add_argument("--dataset_dir", default=None, help="dataset folder (default: the bundle's)")
    parser.add_argument("--tracking_uri", default=None,
                        help="MLflow URI (default: $MLFLOW_TRACKING_URI, else sqlite:///OUT/mlruns.db)")
    parser.add_argument("--experiment_name", default=None, help="MLflow experiment (default: compare-<bundle>-<name of OUT>)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra bundle overrides for every cell, e.g. task=colin27_aal label_set=lobe batch_size=16")
    return parser.parse_args(argv)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def bundle_overrides(args: argparse.Namespace) -> dict:
    """Overrides shared by every cell."""
    overrides = {k: _value(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.dataset_dir:
        overrides["dataset_dir"] = args.dataset_dir
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    return overrides


def run_cell(args, method: str, seed: int, fraction: float, cell: str, common: dict, threads: int | None = None) -> Path:
    """Train one cell with the bundle in a subprocess (``threads`` torch threads); return its checkpoint folder."""
    configs = [str(REPO / "bundles" / args.bundle / "configs" / "train.yaml"), str(REPO / "bundles" / "methods" / f"{method}.yaml")]
    cell_dir = args.out / "cells" / cell
    overrides = {**common, "seed": seed, "label_fraction": fraction, "output_dir": str(cell_dir),
                 "ckpt_dir": str(cell_dir / "models"), "run_name": cell, "registered_model_name": None}
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(configs)]
    for key, value in overrides.items():
        # the bundle CLI (python-fire) reads Python literals: True, None, [32, 32]
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    cell_dir.mkdir(parents=True, exist_ok=True)
    # MONAI's MLFlowHandler lets MLFLOW_TRACKING_URI override its argument: keep both equal
    env = {**os.environ, "MLFLOW_TRACKING_URI": common["tracking_uri"]}
    if threads is not None and "OMP_NUM_THREADS" not in os.environ:
        # N cells at once on C cores: C // N threads each, so they do not oversubscribe the cores
        env["OMP_NUM_THREADS"] = str(threads)
    with open(cell_dir / "train.log", "w") as log:
        result = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
    if result.returncode != 0:
        raise RuntimeError(f"cell {cell} failed; see {cell_dir / 'train.log'}")
    return cell_dir / "models"


def load_bundle(args, common: dict, method: str, seed: int, fraction: float):
    """Parse the bundle config in-process (for test data, the probe and metadata)."""
    from monai.bundle import ConfigParser

    configs = [str(REPO / "bundles" / args.bundle / "configs" / "train.yaml")]
    if (REPO / "bundles" / "methods" / f"{method}.yaml").is_file():
        configs.append(str(REPO / "bundles" / "methods" / f"{method}.yaml"))
    parser = ConfigParser(ConfigParser.load_config_files(configs))
    # parsed here, not run by MONAI: the bundle's folder cannot be found from the workflow
    parser["bundle_root"] = str(REPO / "bundles" / args.bundle)
    for key, value in {**common, "seed": seed, "label_fraction": fraction, "output_dir": str(args.out / "shared")}.items():
        parser[key] = value
    return parser


def test_items(parser) -> list[dict]:
    """Preprocessed test items of the bundle's datalist."""
    from rd_components.data import load_datalist, preflight_items

    files = load_datalist(parser.get_parsed_content("datalist"), "test")
    return preflight_items(files, parser.get_parsed_content("preprocessing"), parser.get_parsed_content("spatial_dims"),
                           parser.get_parsed_content("num_classes"), "error", "test", progress=False)


def score(probs, labels, num_classes: int) -> dict:
    """Accuracy, macro-F1 and macro one-vs-rest AUC."""
    import numpy as np
    from sklearn.metrics import f1_score, roc_auc_score

    predicted = probs.argmax(1)
    try:
        auc = float(roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(num_classes))))
    except ValueError:  # a class absent from the test labels
        auc = float("nan")
    return {"accuracy": float((predicted == labels).mean()), "macro_f1": float(f1_score(labels, predicted, average="macro")),
            "auc": auc}


def evaluate_student(model_ts: Path, items: list[dict], num_classes: int) -> dict:
    """Test metrics, parameter count and batch-1 CPU latency (median of 20) of an exported student."""
    import numpy as np
    import torch

    model = torch.jit.load(str(model_ts), map_location="cpu").eval()
    images = torch.stack([torch.as_tensor(i["image"]).float() for i in items])
    labels = np.array([int(i["label"]) for i in items])
    with torch.no_grad():
        probs = torch.cat([torch.softmax(model(images[k:k + 64]), 1) for k in range(0, len(images), 64)]).numpy()
        example = images[:1]
        for _ in range(5):
            model(example)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            model(example)
            times.append(time.perf_counter() - start)
    return {**score(probs, labels, num_classes), "params": sum(p.numel() for p in model.parameters()),
            "latency_ms": 1000 * statistics.median(times)}


def teacher_branch_test_accuracy(parser, ckpt_dir: Path, items: list[dict]) -> float:
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


def best_metric(client, run_id: str, key: str) -> float:
    """Highest value of an MLflow metric over a run's epochs (NaN when never logged)."""
    history = client.get_metric_history(run_id, key)
    return max((m.value for m in history), default=float("nan"))


def linear_probe_cell(parser) -> dict:
    """Fit the teacher linear probe on the cell's training items and score it on the test split."""
    import numpy as np
    import torch

    from rd_components.engines import fit_linear_probe

    device = parser.get_parsed_content("device")
    num_classes = parser.get_parsed_content("num_classes")
    source = parser.get_parsed_content("teacher_source")
    probe = fit_linear_probe(source, parser.get_parsed_content("train#items"), num_classes, device)
    items = test_items(parser)
    labels = np.array([int(i["label"]) for i in items])
    from rd_components.engines import extract_pooled_features

    features, _ = extract_pooled_features(source, items, device)
    with torch.no_grad():
        probs = torch.softmax(probe.logits(torch.from_numpy(features).to(device)), 1).cpu().numpy()
    teacher = parser.get_parsed_content("teacher_net")
    metrics = score(probs, labels, num_classes)
    return {**metrics, "params": sum(p.numel() for p in teacher.parameters()) + probe.linear.weight.numel(),
            "latency_ms": float("nan"), "teacher_accuracy": metrics["accuracy"]}


def task_name(parser) -> str:
    """``<task>[_<label_set>]_<spatial_dims>d``, e.g. ``colin27_aal_lobe_2d``."""
    label_set = parser.get_parsed_content("label_set")
    dims = parser.get_parsed_content("spatial_dims")
    return "_".join(str(p) for p in (parser.get_parsed_content("task"), label_set) if p) + f"_{dims}d"


def interval95(diffs: list[float]) -> float:
    """Half-width of the 95 % t-interval of the mean of ``diffs`` (0 for a single value)."""
    if len(diffs) < 2:
        return 0.0
    from scipy.stats import t

    return float(t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5)


def paired_differences(rows: list[dict], reference: str = "rd") -> str:
    """Markdown table: ``reference`` minus each method, accuracy points, mean and 95 % interval
    (t) over the seeds that both ran (paired by seed and label fraction)."""
    fractions = sorted({r["label_fraction"] for r in rows})
    by_cell = {(r["method"], r["seed"], r["label_fraction"]): 100 * r["accuracy"] for r in rows}
    others = [m for m in dict.fromkeys(r["method"] for r in rows) if m != reference]
    lines = [f"| {reference} minus | " + " | ".join(f"{f:g} labels (accuracy points, 95 % CI)" for f in fractions) + " |",
             "|---|" + "---|" * len(fractions)]
    for method in others:
        cells = []
        for fraction in fractions:
            diffs = [by_cell[(reference, seed, fraction)] - value for (m, seed, f), value in by_cell.items()
                     if m == method and f == fraction and (reference, seed, fraction) in by_cell]
            if not diffs:
                cells.append("-")
                continue
            mean, half = statistics.mean(diffs), interval95(diffs)
            cells.append(f"{mean:+.1f} [{mean - half:+.1f}, {mean + half:+.1f}] (n={len(diffs)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_rows(paths: list[Path]) -> list[dict]:
    """Rows of ``results.csv`` files, numbers parsed."""
    rows = []
    for path in paths:
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                # older grids have no task, n_labeled / n_unlabeled or teacher-branch columns
                row.setdefault("task", "")
                for key in ("seed", "n_train", "n_labeled", "n_unlabeled", "params"):
                    if row.get(key) not in (None, ""):
                        row[key] = int(float(row[key]))
                for key in ("label_fraction", *FLOAT_COLUMNS):
                    row[key] = float(row[key]) if row.get(key) not in (None, "") else float("nan")
                rows.append(row)
    cells = [(r["method"], r["seed"], r["label_fraction"]) for r in rows]
    repeated = sorted({c for c in cells if cells.count(c) > 1})
    if repeated:
        raise SystemExit(f"--merge: cells {repeated[:3]} appear more than once; merge the results of one task only.")
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    """One row per cell; the columns are the union over rows (merged grids may differ)."""
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_outputs(rows: list[dict], out: Path, title: str) -> str:
    """``results.csv``, ``results.md`` (means and, when RD ran, paired differences) and ``results.png``."""
    write_csv(rows, out / "results.csv")
    table = summarise(rows, out)
    if any(r["method"] == "rd" for r in rows) and len({r["method"] for r in rows}) > 1:
        table += "\nPaired by seed:\n\n" + paired_differences(rows)
    (out / "results.md").write_text(f"{title}\n\n" + table)
    plot(rows, out / "results.png")
    return table


def summarise(rows: list[dict], out: Path) -> str:
    """Markdown table: mean +- std of accuracy, macro-F1 and AUC per method and label fraction."""
    fractions = sorted({r["label_fraction"] for r in rows})
    methods = list(dict.fromkeys(r["method"] for r in rows))
    lines = ["| method | " + " | ".join(f"{f:g} labels: acc / F1 / AUC [/ teacher branch acc]" for f in fractions) + " |",
             "|---|" + "---|" * len(fractions)]
    for method in methods:
        cells = []
        for fraction in fractions:
            group = [r for r in rows if r["method"] == method and r["label_fraction"] == fraction]
            if not group:  # a merged grid where this method did not run at this fraction
                cells.append("-")
                continue
            parts = []
            for key in ("accuracy", "macro_f1", "auc"):
                values = [100 * r[key] for r in group]
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                parts.append(f"{statistics.mean(values):.1f} ± {std:.1f}")
            teacher = [100 * r["teacher_accuracy"] for r in group if r.get("teacher_accuracy") == r.get("teacher_accuracy")]
            if teacher and method != "linear_probe":
                parts.append(f"teacher branch {statistics.mean(teacher):.1f}")
            cells.append(" / ".join(parts) + f" (n={len(group)})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(rows: list[dict], path: Path) -> None:
    """Accuracy (mean +- std over seeds) against label fraction, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r["method"] for r in rows):
        fractions = sorted({r["label_fraction"] for r in rows if r["method"] == method})
        means, stds = [], []
        for f in fractions:
            values = [100 * r["accuracy"] for r in rows if r["method"] == method and r["label_fraction"] == f]
            means.append(statistics.mean(values))
            stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
        ax.errorbar(fractions, means, yerr=stds, marker="o", capsize=3, label=method)
    ax.set(xscale="log", xlabel="fraction of training labels", ylabel="test accuracy (%)", title="RD vs baselines")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def expected_params(cell: tuple, common: dict) -> dict:
    """MLflow parameters a FINISHED run must have to stand for ``cell`` in a restarted grid."""
    fraction, seed, method = cell
    keys = ("epochs", "task", "label_set", "augment", "batch_size", "learning_rate", "data_format", "teacher", "student")
    return {"method": method, "seed": seed, "label_fraction": fraction, **{k: common[k] for k in keys if k in common}}


def finished_run(client, experiment: str, cell: str, expected: dict) -> str | None:
    """Id of a FINISHED run named ``cell`` whose parameters match ``expected``, if any (grid resume)."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    runs = client.search_runs([exp.experiment_id], filter_string=f"attributes.run_name = '{cell}' and attributes.status = 'FINISHED'")
    for run in runs:
        if all(_same(run.data.params.get(k), v) for k, v in expected.items()):
            return run.info.run_id
    return None


def _same(logged: str | None, value) -> bool:
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


def score_cell(args, client, experiment: str, common: dict, method: str, seed: int, fraction: float, cell: str) -> dict:
    """Test metrics of one trained cell (or fit and score the linear probe); one results row."""
    import mlflow

    parser = load_bundle(args, common, method, seed, fraction)
    num_classes = parser.get_parsed_content("num_classes")
    if method == "linear_probe":
        metrics = linear_probe_cell(parser)
        params = {"method": method, "seed": seed, "label_fraction": fraction}
        run_id = finished_run(client, experiment, cell, params)  # a restarted grid reuses the probe's run
        if run_id is None:
            experiment_id = client.get_experiment_by_name(experiment)
            experiment_id = experiment_id.experiment_id if experiment_id else client.create_experiment(experiment)
            run_id = client.create_run(experiment_id, run_name=cell).info.run_id
            client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])
    else:
        ckpt = args.out / "cells" / cell / "models"
        items = test_items(parser)
        metrics = evaluate_student(ckpt / "model.ts", items, num_classes)
        metrics["teacher_accuracy"] = teacher_branch_test_accuracy(parser, ckpt, items)
        run_id = finished_run(client, experiment, cell, expected_params((fraction, seed, method), common))
        if run_id is None:
            raise RuntimeError(f"cell {cell}: no FINISHED MLflow run found after training")
        metrics["teacher_val_accuracy"] = best_metric(client, run_id, "teacher_val_accuracy")
    for key in ("accuracy", "macro_f1", "auc", "latency_ms", "teacher_accuracy"):
        if metrics[key] == metrics[key]:  # skip NaN
            client.log_metric(run_id, f"test_{key}", metrics[key])
    if method == "linear_probe":
        client.set_terminated(run_id, "FINISHED")
    from rd_components.data import labeled_items

    files = parser.get_parsed_content("train#files")
    n_labeled = len(labeled_items(files))
    return {"bundle": args.bundle, "task": task_name(parser), "method": method, "seed": seed, "label_fraction": fraction,
            "n_labeled": n_labeled, "n_unlabeled": len(files) - n_labeled, "accuracy": metrics["accuracy"],
            "macro_f1": metrics["macro_f1"], "auc": metrics["auc"], "teacher_accuracy": metrics["teacher_accuracy"],
            "teacher_val_accuracy": metrics.get("teacher_val_accuracy", float("nan")),
            "params": metrics["params"], "latency_ms": metrics["latency_ms"], "run_id": run_id}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.merge:
        rows = read_rows(args.merge)
        seeds = sorted({r["seed"] for r in rows})
        bundles = ", ".join(dict.fromkeys(r["bundle"] for r in rows))
        print(write_outputs(rows, args.out, f"Test split, mean ± std over seeds {seeds}; bundle {bundles}."))
        return 0
    tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{args.out / 'mlruns.db'}"
    # one experiment per output folder: a grid started again in the same folder skips its finished cells
    experiment = args.experiment_name or f"compare-{args.bundle}-{args.out.name}"
    common = {**bundle_overrides(args), "tracking_uri": tracking_uri, "experiment_name": experiment,
              "feature_cache_dir": str(args.out / "feature_cache")}

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=tracking_uri)
    cells = [(f, s, m) for f in args.label_fractions for s in args.seeds for m in args.methods]
    names = {c: f"{c[2]}-f{c[0]:g}-s{c[1]}" for c in cells}
    done = {c: finished_run(client, experiment, names[c], expected_params(c, common)) for c in cells if c[2] != "linear_probe"}
    to_train = [c for c in cells if c[2] != "linear_probe" and done[c] is None]
    skipped = len(cells) - len(to_train) - sum(c[2] == "linear_probe" for c in cells)
    print(f"{len(cells)} cells: {len(to_train)} to train"
          + (f", {skipped} already FINISHED in MLflow (skipped)" if skipped else "")
          + (f", {args.jobs} at a time" if args.jobs > 1 else ""), flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    rows: dict[tuple, dict] = {}

    def score_and_record(cell_key: tuple) -> None:
        fraction, seed, method = cell_key
        rows[cell_key] = score_cell(args, client, experiment, common, method, seed, fraction, names[cell_key])
        print(f"    {names[cell_key]}: accuracy {rows[cell_key]['accuracy']:.3f}  macro-F1 {rows[cell_key]['macro_f1']:.3f}"
              f"  AUC {rows[cell_key]['auc']:.3f}", flush=True)
        write_csv([rows[c] for c in cells if c in rows], args.out / "results.csv")

    for cell_key in cells:  # finished in an earlier start: scored first, so the CSV has them at once
        if cell_key[2] != "linear_probe" and done[cell_key] is not None:
            score_and_record(cell_key)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        # training runs in subprocesses; this process scores each cell as it finishes
        futures = {pool.submit(run_cell, args, c[2], c[1], c[0], names[c], common, threads): c for c in to_train}
        for index, future in enumerate(as_completed(futures), 1):
            future.result()
            print(f"[{index}/{len(to_train)}] trained {names[futures[future]]}", flush=True)
            score_and_record(futures[future])
    for cell_key in cells:  # the linear probe, fitted here on the now warm teacher cache
        if cell_key not in rows:
            score_and_record(cell_key)
    rows = [rows[c] for c in cells]

    table = write_outputs(rows, args.out, f"Test split, mean ± std over seeds {args.seeds}; bundle {args.bundle}.")
    print(table)
    summary = client.create_run(client.get_experiment_by_name(experiment).experiment_id, run_name="summary").info.run_id
    for name in ("results.csv", "results.md", "results.png"):
        client.log_artifact(summary, str(args.out / name))
    client.set_terminated(summary, "FINISHED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
