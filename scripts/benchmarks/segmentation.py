"""Training cost of the DRD segmentation bundles: warm-cache DRD epochs against the student alone.

Both configurations come from the bundle's ``configs/train.yaml`` with ``ConfigParser`` (the
student alone: ``bundles/rd/configs/methods/segmentation/student.yaml`` merged on top), on the embedded
segmentation task with ``n_train`` training patches at the bundle's label fraction, with the
benchmark overrides of :func:`~benchmarks.setup.configure` (no validation, export or MLflow in
the timed epochs). DRD every step (``methods/segmentation/drd.yaml``) runs first and its first
epoch fills the stage-feature cache (the cold epoch, reported); then the student, DRD and its
cheaper variants (same cache) run ``repeats`` epochs round-robin: the hybrid pass on one step in
three (``methods/segmentation/drd_hybrid_every_3.yaml``), and every teacher term on one step in
three (``methods/segmentation/drd_every_3.yaml``, the bundles' default method:
``default_cache_ratio`` is the ratio of whichever method a plain run trains).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from . import BUNDLES, QUICK_SAMPLES
from .bars import bar_checks
from .machine import load_average, machine_info
from .setup import config_description, configure, instantiate, read_config
from .timing import EpochTimer, summary, synchronize

#: the DRD variants that run some teacher terms on one step in three (each with its own ratio and bar)
SPARSE_VARIANTS = ("drd_hybrid_every_3", "drd_every_3")


def segmentation_parser(bundle: str, method: str | None, data_root: Path, n_train: int | None, work: Path, *,
                        label_fraction: float, cache_dir: Path | None) -> Any:
    """``train.yaml`` of a segmentation bundle (``method`` overlay merged when given) with the benchmark overrides."""
    parser = read_config(bundle, method)
    parser["dataset_dir"] = str(data_root)
    if n_train is not None:
        parser["num_train_patches"] = int(n_train)
    parser["label_fraction"] = float(label_fraction)
    configure(parser, work, use_cache=method != "student", cache_dir=cache_dir)
    return parser


def step_times(drd: Any, repeats: int) -> dict[str, float]:
    """One warm DRD step with the hybrid pass split by label (the trainer's) and in full, in ms (medians).

    Both on the same batch of cached stage features; ``hybrid_full`` gives every item's hybrid
    logits gradients, as a pass that does not exploit the detached KD targets would.
    """
    import torch
    from monai.utils import convert_to_tensor
    from rd_components.engines.drd_trainer import labeled_mask

    trainer = drd.trainer
    batch = next(iter(trainer.data_loader))
    device = drd.parser.get_parsed_content("device")
    images, labels = trainer.prepare_batch(batch, device, False)[:2]
    images = convert_to_tensor(images, track_meta=False)
    labels = convert_to_tensor(labels, track_meta=False)
    stages = trainer.teacher_inputs(images, batch)
    # the trainer's own hooks: the split is what branch_arguments asks for, the loss what compute_loss runs
    split_arguments = trainer.branch_arguments(images, stages, labels)
    labeled = labeled_mask(labels)
    autocast = (lambda: torch.autocast("cuda")) if drd.parser.get_parsed_content("amp") else contextlib.nullcontext

    def step(split: bool) -> None:
        trainer.branches.train()
        drd.optimizer.zero_grad()
        with autocast():
            out = trainer.branches(*(split_arguments if split else (images, stages, None)))
            terms = trainer.compute_loss(out, labels)
        terms["loss"].backward()
        drd.optimizer.step()

    times: dict[str, list[float]] = {"drd_step_split": [], "drd_step_hybrid_full": []}
    for _ in range(repeats + 1):  # the first round warms up
        for name, split in (("drd_step_split", True), ("drd_step_hybrid_full", False)):
            synchronize(str(images.device))
            start = time.perf_counter()
            step(split)
            synchronize(str(images.device))
            times[name].append(time.perf_counter() - start)
    return {f"{k}_ms": 1000 * statistics.median(v[1:]) for k, v in times.items()} | {
        "labeled_in_batch": int(labeled.sum()), "batch": int(labeled.numel())}


def run_segmentation_bundle(bundle: str, args: argparse.Namespace, data_root: Path, work: Path) -> dict[str, Any]:
    """Warm-cache DRD epoch / student-alone epoch of one segmentation bundle (``"seg2d"`` or ``"seg3d"``)."""
    n_train = args.samples or (QUICK_SAMPLES[bundle] if args.quick else None)
    t_start = time.perf_counter()
    machine = machine_info()
    label_fraction = args.label_fraction
    print(f"[{bundle}] building data and reading {BUNDLES[bundle]}'s training files", flush=True)
    parts = {
        "student": instantiate(segmentation_parser(bundle, "student", data_root, n_train, work / "student",
                                                   label_fraction=label_fraction, cache_dir=None)),
        "drd_cached": instantiate(segmentation_parser(bundle, "drd", data_root, n_train, work / "drd",
                                                      label_fraction=label_fraction, cache_dir=work / "cache")),
        # built after DRD, whose cold first epoch fills the cache they all read
        **{variant: instantiate(segmentation_parser(bundle, variant, data_root, n_train, work / variant,
                                                    label_fraction=label_fraction, cache_dir=work / "cache"))
           for variant in SPARSE_VARIANTS},
    }
    default_method = read_config(bundle).get_parsed_content("method")
    value = parts["drd_cached"].parser.get_parsed_content
    loader = parts["drd_cached"].trainer.data_loader
    settings = {
        "bundle": bundle, "config": config_description(bundle), "task": value("task"),
        "spatial_dims": value("spatial_dims"), "patch_size": value("patch_size"), "teacher": value("teacher"),
        "student": f"{value('student')} {list(value('student_features'))}", "num_classes": value("num_classes"),
        "batch_size": value("batch_size"), "label_fraction": label_fraction, "labeled_ratio": value("labeled_ratio"),
        "n_train": len(loader.dataset), "steps_per_epoch": len(loader), "device": str(value("device")),
        "amp": bool(value("amp")), "repeats": args.repeats, "threads": args.threads,
    }
    print(f"[{bundle}] {settings['teacher']} -> {settings['student']}, patch {settings['patch_size']}, "
          f"{settings['n_train']} items at {label_fraction:g} labels, batch {settings['batch_size']}, "
          f"{settings['steps_per_epoch']} steps/epoch; epochs: student alone, DRD and {', '.join(SPARSE_VARIANTS)} warm cache x {args.repeats}", flush=True)
    cuda = settings["device"].startswith("cuda")
    timers = {name: EpochTimer(p.trainer, cuda) for name, p in parts.items()}
    for p in parts.values():  # warm-up; DRD's is the cold epoch that fills the stage cache
        p.trainer.run()
    for _ in range(args.repeats):
        for p in parts.values():
            p.trainer.run()
    epochs = {name: timer.epochs[1:] for name, timer in timers.items()}
    med = {name: statistics.median(v) for name, v in epochs.items()}
    steps = step_times(parts["drd_cached"], max(3, args.repeats))
    result: dict[str, Any] = {
        "bundle": bundle, "kind": "segmentation", "quick": bool(args.quick),
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": load_average()}, "settings": settings,
        "drd_cache_ratio": med["drd_cached"] / med["student"],
        **{f"{variant}_cache_ratio": med[variant] / med["student"] for variant in SPARSE_VARIANTS},
        # the method a plain run of the bundle trains (no overlay): its ratio is the one users pay
        "default_method": default_method,
        "default_cache_ratio": med[default_method if default_method in SPARSE_VARIANTS else "drd_cached"] / med["student"],
        "training": {"epoch_s": {name: summary(v) for name, v in epochs.items()},
                     "cold_epoch_s": timers["drd_cached"].epochs[0],
                     "data_wait_share": sum(timers["drd_cached"].waits[1:]) / sum(timers["drd_cached"].epochs[1:])},
        "step_breakdown": {**steps, "hybrid_split_over_full": steps["drd_step_split_ms"] / steps["drd_step_hybrid_full_ms"]},
        "wall_s": None,
    }
    result["bars"] = bar_checks(bundle, result)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result
