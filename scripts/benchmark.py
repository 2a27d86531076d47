#!/usr/bin/env python
"""Training-cost and deployment benchmark of the RD bundles, measured side by side in one process.

For each bundle (2D: rd_classification_2d, 3D: rd_classification_3d) the defaults are read from
its ``configs/train.yaml`` with ``monai.bundle.ConfigParser`` (teacher, student, student_kwargs,
patch size, batch size, feature width, loss weights, optimiser settings, and the training data
loader ``train#dataloader`` itself), on a small embedded dataset built with
``rd_components.data`` in a temporary folder. Networks are built with ``rd_components``.

Measured (medians over ``--repeats``; the configurations run round-robin so that machine noise
hits all of them alike):

  cache_ratio      RD epoch with a warm teacher feature cache / the same student trained alone
                   (CE only, same data, batch and loader).                 bar <= 1.25
  cache_speedup    RD epoch without cache / with a warm cache; the cold first epoch (one teacher
                   forward per sample) is reported too.                   bar >= 10 (3D)
  cache correctness  per-iteration losses of a cached and an uncached run from the same seed:
                   max abs difference.                                    bar <= 1e-4
  speedup          teacher forward latency / deployable student latency, batch 1, CPU, median of
                   >= 20 alternating runs after warm-up; parameter counts. bar >= 10 (2D), >= 30 (3D)
  exports          TorchScript and ONNX (onnxruntime, else onnx.reference) vs eager: max abs diff.
                   bar <= 1e-4
  data wait        share of warm-cache RD epoch time spent waiting for the next batch (ignite
                   GET_BATCH_STARTED -> GET_BATCH_COMPLETED), bundle loader settings. bar <= 10 %
  peak memory      peak resident memory (Linux VmHWM) of a child process per configuration
                   (student alone, RD cached, RD uncached), each training two epochs.

Writes ``<out>/benchmark_<2d|3d>.json``, regenerates ``<out>/benchmark.md`` from every
``benchmark_*.json`` there, and with ``--profile`` ``<out>/profile_<2d|3d>.txt``.

Examples:
    python scripts/benchmark.py --quick                    # both bundles, a few minutes on 2 cores
    python scripts/benchmark.py --bundle 3d --repeats 5    # bundle-default dataset size
    python scripts/benchmark.py --bundle 2d --quick --profile
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import datetime as _dt
import io
import json
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BUNDLES = {"2d": "rd_classification_2d", "3d": "rd_classification_3d"}
QUICK_SAMPLES = {"2d": 64, "3d": 32}  # two steps per epoch at the bundles' batch sizes (32, 16)
BARS = {  # metric -> (comparison, bar per bundle)
    "cache_ratio": ("<=", {"2d": 1.25, "3d": 1.25}),
    "cache_speedup": (">=", {"3d": 10.0}),
    "speedup": (">=", {"2d": 10.0, "3d": 30.0}),
    "cache_max_abs_diff": ("<=", {"2d": 1e-4, "3d": 1e-4}),
    "torchscript_max_abs_diff": ("<=", {"2d": 1e-4, "3d": 1e-4}),
    "onnx_max_abs_diff": ("<=", {"2d": 1e-4, "3d": 1e-4}),
    "optimized_torchscript_max_abs_diff": ("<=", {"2d": 1e-4, "3d": 1e-4}),
    "data_wait_share": ("<=", {"2d": 0.10, "3d": 0.10}),
}
MEMORY_CONFIGS = ("student", "rd_cached", "rd_uncached")
CORRECTNESS_TOLERANCE = 1e-4


# ------------------------------------------------------------------------------------ setup
def machine_info() -> dict[str, Any]:
    """Platform, CPU model, cores, torch/monai versions, threads, load average, accelerator."""
    import monai
    import torch

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "torch": torch.__version__,
        "monai": monai.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    return info


def auto_threads() -> int:
    """Cores not used by other processes: usable cores minus the 1-minute load average, at least 1.

    Intra-op threads synchronise at every operator; on a shared machine a thread that the OS
    has descheduled makes the others wait, which inflates small models' latency many times over
    (measured here: a 0.3 M-parameter student at batch 1 took 500 ms with 2 threads on 2 busy
    cores, 6 ms with 1).
    """
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(torch.get_num_threads(), int(cores - load + 0.5)))


def bundle_config_path(bundle: str) -> Path:
    """``configs/train.yaml`` of the bundle."""
    return REPO / "bundles" / BUNDLES[bundle] / "configs" / "train.yaml"


def load_setup(bundle: str, data_root: Path, n_train: int | None) -> dict[str, Any]:
    """Read the bundle defaults and build its training loader on a small embedded dataset.

    The dataset is built like the bundle's ``resolve_datalist`` does (same task, format and
    patch-size default), only with ``n_train`` training items, under ``data_root``; then the
    config's own ``train#dataloader`` is instantiated on it, so loader settings (dataset class,
    pre-flight caching, batch size, workers, shuffle, drop_last) are the bundle's.

    Returns:
        dict of settings (plain values) plus ``parser`` and ``loader``.
    """
    import torch
    from monai.bundle import ConfigParser
    from rd_components.data import ensure_dataset
    from rd_components.data.tasks import default_sizes

    config = bundle_config_path(bundle)
    parser = ConfigParser()
    parser.read_config(str(config))
    parser["bundle_root"] = str(config.parent.parent)   # parsed here, not run by MONAI
    value = parser.get_parsed_content
    task, dims, fmt, label_set = value("task"), value("spatial_dims"), value("data_format"), value("label_set")
    sizes = default_sizes(task, label_set, dims)
    n_train = int(n_train or sizes["n_train"])
    # a separate folder per size: ensure_dataset rebuilds a folder whose build parameters differ
    root = data_root / f"n{n_train}"
    datalist = ensure_dataset(root, task=task, spatial_dims=dims, fmt=fmt, label_set=label_set, progress=False,
                              n_train=n_train, n_val=min(sizes["n_val"], 12), n_test=min(sizes["n_test"], 12))
    parser["dataset_dir"] = str(root)
    parser["datalist"] = str(datalist)
    loader = value("train#dataloader")
    raw_cache = parser.get("feature_cache") or {}
    setup = {
        "bundle": bundle,
        "config": f"bundles/{BUNDLES[bundle]}/configs/train.yaml",
        "task": task,
        "spatial_dims": dims,
        "in_channels": value("in_channels"),
        "patch_size": [int(s) for s in value("patch_size")],
        "teacher": value("teacher"),
        "student": value("student"),
        "student_kwargs": dict(value("student_kwargs")),
        "feature_dim": value("feature_dim"),
        "reprogrammer_hidden": value("reprogrammer_hidden"),
        "num_classes": value("num_classes"),
        "batch_size": value("batch_size"),
        "num_workers": value("num_workers"),
        "learning_rate": value("learning_rate"),
        "weight_decay": value("weight_decay"),
        "loss_weights": dict(value("loss_weights")),
        "temperature": value("temperature"),
        "detach_teacher": value("detach_teacher"),
        "disk_cache": "cache_dir" in raw_cache,
        "n_train": len(loader.dataset),
        "steps_per_epoch": len(loader),
        "loader": f"train#dataloader of train.yaml: {type(loader.dataset).__name__}, "
                  f"{type(loader.batch_sampler).__name__} batch {loader.batch_sampler.batch_size}, "
                  f"num_workers {loader.num_workers}",
        "device": "cuda:0" if torch.cuda.is_available() else "cpu",
    }
    setup["amp"] = setup["device"].startswith("cuda")
    return {**setup, "parser": parser, "loader": loader}


def build_teacher(setup: dict) -> Any:
    """The bundle's frozen teacher (``rd_components.foundation.create_teacher``)."""
    from rd_components.foundation import create_teacher

    return create_teacher(setup["teacher"])


def build_parts(setup: dict, teacher: Any | None) -> dict[str, Any]:
    """Deployable student, reprogrammer (when ``teacher``), AdamW and the loss, as the bundle builds them.

    Without a teacher the loss is the student-alone baseline: ``RDLoss`` with only
    ``ce_student`` weighted.
    """
    import torch
    from rd_components.losses import RDLoss
    from rd_components.networks import DeployableStudent, Reprogrammer, SharedClassifier, create_student

    device = torch.device(setup["device"])
    network = DeployableStudent(
        create_student(setup["student"], setup["spatial_dims"], setup["in_channels"], setup["feature_dim"],
                       **setup["student_kwargs"]),
        SharedClassifier(setup["feature_dim"], setup["num_classes"]),
    ).to(device)
    params = list(network.parameters())
    reprogrammer = None
    if teacher is not None:
        shape = teacher.feature_shape(setup["patch_size"])
        reprogrammer = Reprogrammer(spatial_dims=len(shape) - 1, in_channels=shape[0],
                                    out_features=setup["feature_dim"],
                                    hidden_channels=setup["reprogrammer_hidden"], feature_size=shape[1:]).to(device)
        params += list(reprogrammer.parameters())
        # the bundle's loss_weights keys are RDLoss's keyword names (ce_teacher_weight, ..., hint_weight)
        weights = dict(setup["loss_weights"])
        extra = {"hint_features": (setup["feature_dim"], shape[0])} if weights.get("hint_weight", 0) > 0 else {}
        loss = RDLoss(**weights, **extra, temperature=setup["temperature"], detach_teacher=setup["detach_teacher"])
    else:
        loss = RDLoss(ce_teacher_weight=0.0, ce_student_weight=1.0, kd_weight=0.0, cka_weight=0.0)
    optimizer = torch.optim.AdamW(params, lr=setup["learning_rate"], weight_decay=setup["weight_decay"])
    return {"network": network, "reprogrammer": reprogrammer, "optimizer": optimizer, "loss": loss}


def make_cache(setup: dict, teacher: Any, cache_dir: Path | None) -> Any:
    """A fresh teacher feature cache keyed as the bundles key it (disk too when the bundle uses one)."""
    from rd_components.handlers import TeacherFeatureCache

    return TeacherFeatureCache(setup["teacher"], teacher.cache_key,
                               preprocessing={"patch_size": setup["patch_size"], "benchmark": True},
                               cache_dir=cache_dir if setup["disk_cache"] else None)


def make_trainer(setup: dict, loader: Any, parts: dict, teacher: Any | None, cache: Any | None) -> Any:
    """An ``RDTrainer`` of one epoch with the bundle's train postprocessing and accuracy metric.

    ``teacher=None`` trains the student alone; ``cache=None`` calls the teacher on every batch.
    """
    from ignite.metrics import Accuracy
    from rd_components.engines import RDTrainer, TeacherFeatureSource
    from rd_components.handlers import stacked_output

    source = None if teacher is None else TeacherFeatureSource(teacher, cache)
    return RDTrainer(
        device=setup["device"],
        max_epochs=1,
        train_data_loader=loader,
        network=parts["network"],
        reprogrammer=parts["reprogrammer"],
        teacher=source,
        optimizer=parts["optimizer"],
        loss_function=parts["loss"],
        postprocessing=setup["parser"].get_parsed_content("train#postprocessing"),
        key_train_metric={"train_accuracy": Accuracy(output_transform=stacked_output("pred", "label"))},
        amp=setup["amp"],
    )


class EpochTimer:
    """Records per-epoch wall time and the time spent fetching batches (ignite events).

    ``wait`` is GET_BATCH_STARTED -> GET_BATCH_COMPLETED, i.e. the loader's ``next()``; on CUDA
    the iteration end synchronises so that asynchronous kernels are not counted as data wait.
    """

    def __init__(self, engine: Any, cuda: bool) -> None:
        from ignite.engine import Events

        self.epochs: list[float] = []
        self.waits: list[float] = []
        self._wait = 0.0
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_completed)
        if cuda:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self._sync)

    def _sync(self, _engine: Any) -> None:
        import torch

        torch.cuda.synchronize()

    def _epoch_started(self, _engine: Any) -> None:
        self._wait = 0.0
        self._t0 = time.perf_counter()

    def _epoch_completed(self, _engine: Any) -> None:
        self.epochs.append(time.perf_counter() - self._t0)
        self.waits.append(self._wait)

    def _batch_started(self, _engine: Any) -> None:
        self._b0 = time.perf_counter()

    def _batch_completed(self, _engine: Any) -> None:
        self._wait += time.perf_counter() - self._b0


def _stats(values: list[float]) -> dict[str, Any]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 4) for v in values]}


# ------------------------------------------------------------------------------------ training cost
def time_training(setup: dict, teacher: Any, repeats: int, cache_dir: Path) -> dict[str, Any]:
    """Epoch times of student alone, RD with warm cache and RD without cache, round-robin.

    Every configuration first runs one untimed epoch (for the cached one, that is the cold
    epoch that fills the cache, and it is reported); then ``repeats`` rounds of one epoch each.
    """
    cuda = setup["device"].startswith("cuda")
    loader = setup["loader"]
    configs: dict[str, Any] = {}
    cache = make_cache(setup, teacher, cache_dir / "timing")
    for name, t, c in (("student", None, None), ("rd_cached", teacher, cache), ("rd_uncached", teacher, None)):
        trainer = make_trainer(setup, loader, build_parts(setup, t), t, c)
        configs[name] = (trainer, EpochTimer(trainer, cuda))
    for trainer, _ in configs.values():  # warm-up; the cached trainer's is the cold epoch
        trainer.run()
    cold = configs["rd_cached"][1].epochs[0]
    for _ in range(repeats):
        for trainer, _ in configs.values():
            trainer.run()
    epochs = {name: timer.epochs[1:] for name, (_, timer) in configs.items()}
    warm_timer = configs["rd_cached"][1]
    warm_wait, warm_epoch = sum(warm_timer.waits[1:]), sum(warm_timer.epochs[1:])
    student_timer = configs["student"][1]
    # the cache exposes no size accessor; its in-memory dict holds one CPU tensor per entry
    entry_bytes = [t.numel() * t.element_size() for t in cache._memory.values()]
    med = {name: statistics.median(v) for name, v in epochs.items()}
    return {
        "cache_ratio": med["rd_cached"] / med["student"],
        "cache_speedup": med["rd_uncached"] / med["rd_cached"],
        "epoch_s": {name: _stats(v) for name, v in epochs.items()},
        "cold_epoch_s": cold,
        "cold_over_uncached": cold / med["rd_uncached"],
        "per_sample_ms": {name: 1000 * m / setup["n_train"] for name, m in med.items()},
        "data_wait_share": warm_wait / warm_epoch,
        "data_wait_share_student": sum(student_timer.waits[1:]) / sum(student_timer.epochs[1:]),
        "cache": {**cache.stats(), "bytes_per_entry": statistics.median(entry_bytes) if entry_bytes else 0,
                  "disk": setup["disk_cache"]},
    }


def check_cache_correctness(setup: dict, teacher: Any, seed: int, cache_dir: Path, epochs: int = 2) -> dict[str, Any]:
    """Per-iteration loss terms of an uncached and a cached run from the same seed.

    Runs on (at most) two batches' worth of items for ``epochs`` epochs, so that the cached run's
    later epochs are served from the cache; returns the max abs difference per term.
    """
    import torch
    from ignite.engine import Events
    from monai.utils import set_determinism
    from rd_components.engines import LOSS_TERMS
    from torch.utils.data import DataLoader, Subset

    full = setup["loader"]
    batch_size = full.batch_sampler.batch_size
    n = min(len(full.dataset), 2 * batch_size)
    subset = Subset(full.dataset, range(n))

    def run(cached: bool) -> tuple[torch.Tensor, dict]:
        set_determinism(seed=seed)
        loader = DataLoader(subset, batch_size=batch_size, shuffle=True, drop_last=n > batch_size,
                            num_workers=full.num_workers, collate_fn=full.collate_fn)
        cache = make_cache(setup, teacher, cache_dir / "correctness") if cached else None
        parts = build_parts(setup, teacher)
        trainer = make_trainer(setup, loader, parts, teacher, cache)
        trainer.state.max_epochs = epochs
        rows: list[list[float]] = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED,
                                  lambda e: rows.append([float(e.state.output[0][t]) if isinstance(e.state.output, list)
                                                         else float(e.state.output[t]) for t in LOSS_TERMS]))
        trainer.run()
        return torch.tensor(rows, dtype=torch.float64), (cache.stats() if cache is not None else {})

    uncached, _ = run(False)
    cached, stats = run(True)
    set_determinism(seed=None)
    diff = (uncached - cached).abs()
    per_term = {t: float(diff[:, i].max()) for i, t in enumerate(LOSS_TERMS)}
    return {
        "max_abs_diff": float(diff.max()),
        "per_term_max_abs_diff": per_term,
        "iterations": int(diff.shape[0]),
        "items": n,
        "epochs": epochs,
        "cache_stats": dict(stats),
        "first_losses": {"uncached": uncached[0].tolist(), "cached": cached[0].tolist()},
    }


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def step_breakdown(setup: dict, teacher: Any, repeats: int) -> dict[str, Any]:
    """Where one training step's time goes, on one batch of the loader (medians, interleaved).

    ``teacher_forward``: the frozen teacher on the batch (what the cache saves);
    ``cache_fetch``: warm cache lookup and stacking; ``student_step``: the student-alone step
    (forward, CE, backward, AdamW); ``rd_step``: the RD step on cached features (student and
    reprogrammer forward, RDLoss, backward, AdamW over both); ``reprogrammer_step``: the
    reprogrammer branch alone (forward, classifier, CE, backward, AdamW on its parameters);
    ``rd_loss``: RDLoss forward; ``student_step_plain_tensor``: the student step with the
    batch as a plain tensor instead of MONAI's MetaTensor. Engine overhead (decollation,
    postprocessing, metrics, events) is the epoch time per step minus these.
    """
    import torch
    import torch.nn.functional as F
    from rd_components.engines import TeacherFeatureSource

    device = setup["device"]
    batch = next(iter(setup["loader"]))
    images = batch["image"].to(device)
    plain = images.as_tensor() if hasattr(images, "as_tensor") else images
    labels = batch["label"].to(device).reshape(-1).long()
    source = TeacherFeatureSource(teacher, make_cache(setup, teacher, None))
    with torch.no_grad():
        feats = source(images, batch)  # fills the cache
    rd = build_parts(setup, teacher)
    alone = build_parts(setup, None)
    rep_optimizer = torch.optim.AdamW(rd["reprogrammer"].parameters(), lr=setup["learning_rate"])
    # the trainer's precision: float16 autocast around forward and loss on CUDA (no scaler: timing only)
    autocast = (lambda: torch.autocast("cuda")) if setup["amp"] else contextlib.nullcontext

    def teacher_forward() -> None:
        with torch.no_grad():  # the trainer calls the teacher outside autocast
            teacher(images)

    def cache_fetch() -> None:
        with torch.no_grad():
            source(images, batch)

    def student_step(x: torch.Tensor = images) -> None:
        net = alone["network"].train()
        alone["optimizer"].zero_grad()
        with autocast():
            loss = F.cross_entropy(net.classifier(net.features(x)).float(), labels)
        loss.backward()
        alone["optimizer"].step()

    def rd_step() -> None:
        net, rep = rd["network"].train(), rd["reprogrammer"].train()
        rd["optimizer"].zero_grad()
        with autocast():
            z_s = net.features(images)
            z_t = rep(feats)
            terms = rd["loss"](student_logits=net.classifier(z_s), teacher_logits=net.classifier(z_t),
                               student_features=z_s, teacher_features=z_t, labels=labels)
        terms["loss"].backward()
        rd["optimizer"].step()

    def reprogrammer_step() -> None:
        net, rep = rd["network"], rd["reprogrammer"].train()
        rep_optimizer.zero_grad()
        with autocast():
            loss = F.cross_entropy(net.classifier(rep(feats)).float(), labels)
        loss.backward()
        rep_optimizer.step()

    with torch.no_grad():
        z_s, z_t = rd["network"].features(images), rd["reprogrammer"](feats)
        logits = (rd["network"].classifier(z_s), rd["network"].classifier(z_t))

    def rd_loss() -> None:
        with torch.no_grad(), autocast():
            rd["loss"](student_logits=logits[0], teacher_logits=logits[1], student_features=z_s,
                       teacher_features=z_t, labels=labels)

    parts = {"teacher_forward": teacher_forward, "cache_fetch": cache_fetch, "student_step": student_step,
             "student_step_plain_tensor": lambda: student_step(plain), "rd_step": rd_step,
             "reprogrammer_step": reprogrammer_step, "rd_loss": rd_loss}
    times: dict[str, list[float]] = {k: [] for k in parts}
    for k, fn in parts.items():  # warm-up
        fn()
    for _ in range(repeats):
        for k, fn in parts.items():
            _sync(device)
            t0 = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - t0)
    out = {f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()}
    out["batch"] = int(images.shape[0])
    out["repeats"] = repeats
    # the ceiling of cache_speedup if the engine had no overhead: (teacher + RD step) / RD step
    out["cache_speedup_ceiling"] = (out["teacher_forward_ms"] + out["rd_step_ms"] + out["cache_fetch_ms"]) / (
        out["rd_step_ms"] + out["cache_fetch_ms"])
    out["rd_over_student_step"] = (out["rd_step_ms"] + out["cache_fetch_ms"]) / out["student_step_ms"]
    return out


def flop_counts(setup: dict, teacher: Any, parts: dict) -> dict[str, Any]:
    """Forward FLOPs per sample (``torch.utils.flop_counter``) of teacher, student and reprogrammer.

    Machine-independent: ``teacher / student`` bounds the deployment ``speedup`` an equally
    efficient runtime would show, and ``teacher / (3 x (student + reprogrammer))`` (a training
    step costs about three forwards) bounds ``cache_speedup``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, setup["in_channels"], *setup["patch_size"])
    teacher, net, rep = teacher.to("cpu"), parts["network"].to("cpu").eval(), parts["reprogrammer"].to("cpu").eval()
    counts = {}
    with torch.no_grad():
        feats = teacher(x)
        for name, fn in (("teacher", lambda: teacher(x)), ("student", lambda: net(x)), ("reprogrammer", lambda: rep(feats))):
            with FlopCounterMode(display=False) as counter:
                fn()
            counts[f"{name}_gflop"] = counter.get_total_flops() / 1e9
    counts["teacher_over_student"] = counts["teacher_gflop"] / counts["student_gflop"]
    counts["cache_speedup_flop_bound"] = 1 + counts["teacher_gflop"] / (
        3 * (counts["student_gflop"] + counts["reprogrammer_gflop"]))
    counts["teacher_feature_shape"] = list(feats.shape[1:])
    return counts


# ------------------------------------------------------------------------------------ deployment
def measure_latency(setup: dict, teacher: Any, network: Any, runs: int, warmup: int = 5) -> dict[str, Any]:
    """Batch-1 CPU latency of teacher and deployable student, alternating calls, medians."""
    import torch

    teacher = teacher.to("cpu").eval()
    network = network.to("cpu").eval()
    x = torch.rand(1, setup["in_channels"], *setup["patch_size"])
    # the TorchScript student as a CPU deployment would load it: frozen (BatchNorm folded) and
    # optimised for inference (oneDNN convolutions chosen regardless of PyTorch's batch-1 heuristic)
    optimized = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(network)))
    models = {"teacher": teacher, "student": network, "student_optimized_torchscript": optimized}
    times: dict[str, list[float]] = {k: [] for k in models}
    with torch.inference_mode():
        optimized_diff = float((optimized(x) - network(x)).abs().max())
        for _ in range(warmup):
            for model in models.values():
                model(x)
        for _ in range(runs):
            for name, model in models.items():
                t0 = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {
        "speedup": med["teacher"] / med["student"],
        "speedup_optimized_torchscript": med["teacher"] / med["student_optimized_torchscript"],
        "teacher_latency_ms": 1000 * med["teacher"],
        "student_latency_ms": 1000 * med["student"],
        "student_optimized_torchscript_latency_ms": 1000 * med["student_optimized_torchscript"],
        "optimized_torchscript_max_abs_diff": optimized_diff,
        **{f"{k}_runs_ms": [round(1000 * v, 3) for v in t] for k, t in times.items()},
        "runs": runs,
        "warmup": warmup,
        "input_shape": list(x.shape),
    }


def check_exports(setup: dict, network: Any, tmp: Path, latency_runs: int) -> dict[str, Any]:
    """TorchScript (the project's ``export_torchscript``) and ONNX exports vs eager, batch 1 and 2."""
    import torch
    from rd_components.handlers.export import export_torchscript

    network = network.to("cpu").eval()
    shape = (setup["in_channels"], *setup["patch_size"])
    example = torch.rand(1, *shape)
    out: dict[str, Any] = {}
    try:
        ts_diff = export_torchscript(network, tmp / "model.ts", example, atol=float("inf"))
        scripted = torch.jit.load(str(tmp / "model.ts"))
        x2 = torch.rand(2, *shape)
        with torch.no_grad():
            ts_diff = max(ts_diff, float((scripted(x2) - network(x2)).abs().max()))
        out["torchscript_max_abs_diff"] = ts_diff
    except Exception as error:  # reported, not fatal: the other figures still count
        out["torchscript_error"] = f"{type(error).__name__}: {error}"[:500]
    try:
        onnx_path = tmp / "model.onnx"
        torch.onnx.export(network, (example,), str(onnx_path), dynamo=True, verbose=False, input_names=["image"],
                          output_names=["logits"], dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
        run_onnx, runtime = _onnx_runner(onnx_path)
        diffs = []
        for b in (1, 2):
            x = torch.rand(b, *shape)
            with torch.no_grad():
                diffs.append(float(abs(run_onnx(x.numpy()) - network(x).numpy()).max()))
        out["onnx_max_abs_diff"] = max(diffs)
        out["onnx_runtime"] = runtime
        if runtime.startswith("onnxruntime"):
            x = example.numpy()
            for _ in range(5):
                run_onnx(x)
            times = []
            for _ in range(latency_runs):
                t0 = time.perf_counter()
                run_onnx(x)
                times.append(time.perf_counter() - t0)
            out["onnxruntime_latency_ms"] = 1000 * statistics.median(times)
    except Exception as error:
        out["onnx_error"] = f"{type(error).__name__}: {error}"[:500]
    return out


def _onnx_runner(path: Path) -> tuple[Any, str]:
    """A callable ``numpy (B, C, *spatial) -> logits`` for the ONNX file, and the runtime's name."""
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), f"onnxruntime {ort.__version__}"
    except ImportError:
        import onnx
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(onnx.load(str(path)))
        name = evaluator.input_names[0]
        return (lambda x: evaluator.run(None, {name: x})[0]), f"onnx.reference {onnx.__version__}"


def parameter_counts(teacher: Any, parts: dict) -> dict[str, int]:
    """Parameters of teacher, deployable student (student + classifier) and reprogrammer."""
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    return {"teacher": count(teacher), "deployable_student": count(parts["network"]),
            "reprogrammer": count(parts["reprogrammer"]) if parts["reprogrammer"] is not None else 0}


# ------------------------------------------------------------------------------------ memory
def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB.

    Linux: ``VmHWM`` of ``/proc/self/status``, which belongs to the process image (``ru_maxrss``
    is inherited across fork and kept across exec, so a child started by a large parent would
    report the parent's peak). Elsewhere: ``ru_maxrss``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, KiB elsewhere


def memory_child(bundle: str, config: str, data_root: Path, n_train: int | None) -> dict[str, Any]:
    """Body of a child process: build one configuration, train two epochs, report peak RSS.

    Returns:
        dict with ``peak_rss_mib`` (imports, data, networks, teacher when used, cache, training),
        ``setup_peak_rss_mib`` (the peak after imports and the data loader, before any network)
        and on CUDA ``cuda_peak_allocated_mib``.
    """
    import torch

    setup = load_setup(bundle, data_root, n_train)
    setup_peak = peak_rss_mib()
    teacher = build_teacher(setup).to(setup["device"]) if config != "student" else None
    with tempfile.TemporaryDirectory() as tmp:
        cache = make_cache(setup, teacher, Path(tmp)) if config == "rd_cached" else None
        trainer = make_trainer(setup, setup["loader"], build_parts(setup, teacher), teacher, cache)
        trainer.state.max_epochs = 2
        trainer.run()
    out: dict[str, Any] = {"peak_rss_mib": round(peak_rss_mib(), 1), "setup_peak_rss_mib": round(setup_peak, 1),
                           "epochs": 2}
    if cache is not None:
        out["cache_entries"] = len(cache)
    if torch.cuda.is_available():
        out["cuda_peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def measure_memory(bundle: str, data_root: Path, n_train: int | None, threads: int | None) -> dict[str, Any]:
    """Run :func:`memory_child` in a fresh interpreter per configuration."""
    results: dict[str, Any] = {}
    for config in MEMORY_CONFIGS:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--bundle", bundle, "--child-memory", config,
               "--data-dir", str(data_root)]
        if n_train:
            cmd += ["--samples", str(n_train)]
        if threads:
            cmd += ["--threads", str(threads)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if proc.returncode != 0 or not lines:
            results[config] = {"error": (proc.stderr or proc.stdout)[-800:]}
        else:
            results[config] = json.loads(lines[-1])
    return results


# ------------------------------------------------------------------------------------ profile
def profile_epochs(setup: dict, teacher: Any, cache_dir: Path, path: Path) -> None:
    """Write torch.profiler and cProfile tables of one warm RD epoch and one student epoch."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    cache = make_cache(setup, teacher, cache_dir / "profile")
    runs = {
        "RD, warm cache": make_trainer(setup, setup["loader"], build_parts(setup, teacher), teacher, cache),
        "student alone": make_trainer(setup, setup["loader"], build_parts(setup, None), None, None),
    }
    text = io.StringIO()
    text.write(f"# profile of bundle {setup['bundle']}: {setup['n_train']} items, batch {setup['batch_size']}, "
               f"{setup['steps_per_epoch']} steps per epoch, device {setup['device']}\n")
    for name, trainer in runs.items():
        trainer.run()  # warm-up (fills the cache)
        with profile(activities=activities) as prof:
            trainer.run()
        sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        text.write(f"\n## {name}: torch.profiler, top operators by self time\n")
        text.write(prof.key_averages().table(sort_by=sort, row_limit=25))
        profiler = cProfile.Profile()
        profiler.enable()
        trainer.run()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(35)
        text.write(f"\n## {name}: cProfile, top Python functions by cumulative time\n")
        text.write(stream.getvalue().split("\n", 3)[-1] if "\n" in stream.getvalue() else stream.getvalue())
    path.write_text(_anonymise(text.getvalue()))


def _anonymise(text: str) -> str:
    """Replace this machine's install locations in profiler output by placeholders."""
    import sysconfig

    repo = str(Path(__file__).resolve().parents[1])
    for prefix, name in sorted(((sysconfig.get_paths()["purelib"], "<site-packages>"),
                                (sysconfig.get_paths()["stdlib"], "<stdlib>"),
                                (repo, "<repo>"), (sys.prefix, "<venv>"), (sys.base_prefix, "<python>")),
                               key=lambda p: -len(p[0])):
        text = text.replace(prefix, name)
    return text


# ------------------------------------------------------------------------------------ report
def bar_checks(bundle: str, result: dict) -> dict[str, Any]:
    """Each metric with a bar for this bundle: value, bar and pass/fail."""
    checks = {}
    for metric, (op, bars) in BARS.items():
        if bundle not in bars:
            continue
        value = result.get(metric)
        if value is None:
            checks[metric] = {"value": None, "bar": f"{op} {bars[bundle]:g}", "pass": False}
            continue
        ok = value <= bars[bundle] if op == "<=" else value >= bars[bundle]
        checks[metric] = {"value": value, "bar": f"{op} {bars[bundle]:g}", "pass": bool(ok)}
    return checks


def run_bundle(bundle: str, args: argparse.Namespace, data_root: Path, work: Path) -> dict[str, Any]:
    """All measurements of one bundle; returns the JSON-ready result."""
    n_train = args.samples or (QUICK_SAMPLES[bundle] if args.quick else None)
    t_start = time.perf_counter()
    machine = machine_info()
    print(f"[{bundle}] building data and reading {BUNDLES[bundle]}/configs/train.yaml", flush=True)
    setup = load_setup(bundle, data_root, n_train)
    teacher = build_teacher(setup).to(setup["device"])
    print(f"[{bundle}] {setup['teacher']} -> {setup['student']} {setup['student_kwargs']}, patch {setup['patch_size']}, "
          f"{setup['n_train']} items, batch {setup['batch_size']}, {setup['steps_per_epoch']} steps/epoch", flush=True)

    print(f"[{bundle}] training epochs: student alone, RD warm cache, RD uncached x {args.repeats}", flush=True)
    training = time_training(setup, teacher, args.repeats, work)
    print(f"[{bundle}] cache correctness", flush=True)
    correctness = check_cache_correctness(setup, teacher, args.seed, work)
    print(f"[{bundle}] step breakdown, FLOPs, deployment latency and exports", flush=True)
    breakdown = step_breakdown(setup, teacher, max(5, args.repeats))
    parts = build_parts(setup, teacher)
    params = parameter_counts(teacher, parts)
    flops = flop_counts(setup, teacher, parts)
    latency = measure_latency(setup, teacher, parts["network"], args.latency_runs)
    exports = check_exports(setup, parts["network"], work, args.latency_runs)
    teacher = teacher.to(setup["device"])
    if args.profile:
        print(f"[{bundle}] profiling", flush=True)
        profile_epochs(setup, teacher, work, Path(args.out) / f"profile_{bundle}.txt")
    memory = None
    if not args.no_memory:
        print(f"[{bundle}] peak memory (one child process per configuration)", flush=True)
        memory = measure_memory(bundle, data_root, n_train, args.threads)

    settings = {k: v for k, v in setup.items() if k not in ("parser", "loader")}
    result: dict[str, Any] = {
        "bundle": bundle,
        "quick": bool(args.quick),
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": list(os.getloadavg()) if hasattr(os, "getloadavg") else None},
        "settings": {**settings, "repeats": args.repeats, "seed": args.seed, "threads": args.threads,
                     "threads_auto": args.threads_auto},
        "cache_ratio": training["cache_ratio"],
        "cache_speedup": training["cache_speedup"],
        "speedup": latency["speedup"],
        "cache_max_abs_diff": correctness["max_abs_diff"],
        "torchscript_max_abs_diff": exports.get("torchscript_max_abs_diff"),
        "onnx_max_abs_diff": exports.get("onnx_max_abs_diff"),
        "optimized_torchscript_max_abs_diff": latency["optimized_torchscript_max_abs_diff"],
        "speedup_optimized_torchscript": latency["speedup_optimized_torchscript"],
        "data_wait_share": training["data_wait_share"],
        "training": training,
        "step_breakdown": breakdown,
        "flops": flops,
        "cache_correctness": correctness,
        "deployment": {**latency, "params": params, **exports},
        "peak_memory": memory,
        "wall_s": None,
    }
    result["bars"] = bar_checks(bundle, result)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5):
            return f"{value:.1e}"
        return f"{value:.{digits}g}"
    return str(value)


def write_markdown(out: Path) -> Path:
    """``benchmark.md``: one column per ``benchmark_*.json`` found in ``out``."""
    results = {}
    for path in sorted(out.glob("benchmark_*.json")):
        data = json.loads(path.read_text())
        results[data["bundle"]] = data
    cols = list(results)

    def row(label: str, getter, bar_key: str | None = None) -> str:
        cells = []
        for b in cols:
            try:
                value = getter(results[b])
            except (KeyError, TypeError):
                value = None
            text = _fmt(value)
            if bar_key and bar_key in results[b].get("bars", {}):
                check = results[b]["bars"][bar_key]
                text += f" ({check['bar']}: {'pass' if check['pass'] else 'FAIL'})"
            cells.append(text)
        return f"| {label} | " + " | ".join(cells) + " |"

    header = ["| figure | " + " | ".join(f"{b.upper()} ({results[b]['settings']['teacher']} -> "
                                          f"{results[b]['settings']['student']})" for b in cols) + " |",
              "|---|" + "---|" * len(cols)]
    ms = lambda k: (lambda r: 1000 * r["training"]["epoch_s"][k]["median"] / r["settings"]["steps_per_epoch"])  # noqa: E731
    mem = lambda k: (lambda r: r["peak_memory"][k]["peak_rss_mib"])  # noqa: E731
    lines = [
        "# Benchmark results",
        "",
        "Generated by `scripts/benchmark.py` (see docs/PERFORMANCE.md for the reading of these numbers).",
        "Ratios are measured side by side in one process (round-robin epochs, medians); absolute",
        "times are only indicative on a shared CPU machine.",
        "",
        *header,
        row("items x patch, batch, steps/epoch", lambda r: f"{r['settings']['n_train']} x {r['settings']['patch_size']}, "
            f"{r['settings']['batch_size']}, {r['settings']['steps_per_epoch']}"),
        row("`cache_ratio` (RD warm / student alone)", lambda r: r["cache_ratio"], "cache_ratio"),
        row("`cache_speedup` (RD uncached / warm)", lambda r: r["cache_speedup"], "cache_speedup"),
        row("step time, student alone [ms]", ms("student")),
        row("step time, RD warm cache [ms]", ms("rd_cached")),
        row("step time, RD uncached [ms]", ms("rd_uncached")),
        row("cold first RD epoch [s] (one teacher forward per item)", lambda r: r["training"]["cold_epoch_s"]),
        row("cold epoch / uncached epoch", lambda r: r["training"]["cold_over_uncached"]),
        row("cache: cached vs uncached losses, max abs diff", lambda r: r["cache_max_abs_diff"], "cache_max_abs_diff"),
        row("data wait share, RD warm cache", lambda r: r["data_wait_share"], "data_wait_share"),
        row("`speedup` (teacher / student latency, batch 1, CPU)", lambda r: r["speedup"], "speedup"),
        row("teacher latency [ms]", lambda r: r["deployment"]["teacher_latency_ms"]),
        row("deployable student latency, eager [ms]", lambda r: r["deployment"]["student_latency_ms"]),
        row("speedup vs frozen + optimize_for_inference TorchScript student", lambda r: r["speedup_optimized_torchscript"]),
        row("deployable student latency, optimized TorchScript [ms]",
            lambda r: r["deployment"]["student_optimized_torchscript_latency_ms"]),
        row("deployable student latency, onnxruntime [ms]", lambda r: r["deployment"].get("onnxruntime_latency_ms")),
        row("teacher parameters", lambda r: f"{r['deployment']['params']['teacher']:,}"),
        row("deployable student parameters", lambda r: f"{r['deployment']['params']['deployable_student']:,}"),
        row("reprogrammer parameters (training only)", lambda r: f"{r['deployment']['params']['reprogrammer']:,}"),
        row("TorchScript vs eager, max abs diff", lambda r: r["torchscript_max_abs_diff"], "torchscript_max_abs_diff"),
        row("ONNX vs eager, max abs diff", lambda r: r["onnx_max_abs_diff"], "onnx_max_abs_diff"),
        row("optimized TorchScript vs eager, max abs diff", lambda r: r["optimized_torchscript_max_abs_diff"],
            "optimized_torchscript_max_abs_diff"),
        row("forward GFLOP per sample: teacher", lambda r: r["flops"]["teacher_gflop"]),
        row("forward GFLOP per sample: student", lambda r: r["flops"]["student_gflop"]),
        row("forward GFLOP per sample: reprogrammer", lambda r: r["flops"]["reprogrammer_gflop"]),
        row("FLOP ratio teacher / student (bound on `speedup`)", lambda r: r["flops"]["teacher_over_student"]),
        row("FLOP bound on `cache_speedup`", lambda r: r["flops"]["cache_speedup_flop_bound"]),
        row("one batch: teacher forward [ms]", lambda r: r["step_breakdown"]["teacher_forward_ms"]),
        row("one batch: warm cache fetch [ms]", lambda r: r["step_breakdown"]["cache_fetch_ms"]),
        row("one batch: student-alone step [ms]", lambda r: r["step_breakdown"]["student_step_ms"]),
        row("one batch: same, plain tensor instead of MetaTensor [ms]",
            lambda r: r["step_breakdown"]["student_step_plain_tensor_ms"]),
        row("one batch: RD step on cached features [ms]", lambda r: r["step_breakdown"]["rd_step_ms"]),
        row("one batch: reprogrammer branch alone [ms]", lambda r: r["step_breakdown"]["reprogrammer_step_ms"]),
        row("one batch: RDLoss forward [ms]", lambda r: r["step_breakdown"]["rd_loss_ms"]),
        row("(RD step + fetch) / student step, engine excluded", lambda r: r["step_breakdown"]["rd_over_student_step"]),
        row("peak RSS, student alone [MiB]", mem("student")),
        row("peak RSS, RD with cache [MiB]", mem("rd_cached")),
        row("peak RSS, RD without cache [MiB]", mem("rd_uncached")),
        row("peak RSS after imports + data, before networks [MiB]", lambda r: r["peak_memory"]["student"]["setup_peak_rss_mib"]),
        "",
        "| run | " + " | ".join(cols) + " |",
        "|---|" + "---|" * len(cols),
        "| command | " + " | ".join(f"`{results[b]['command']}`" for b in cols) + " |",
        "| date (UTC) | " + " | ".join(results[b]["date"] for b in cols) + " |",
        "| quick | " + " | ".join(str(results[b]["quick"]) for b in cols) + " |",
        "| machine | " + " | ".join(f"{results[b]['machine']['cpu_model']}, {results[b]['machine']['usable_cores']} cores, "
                                    f"torch {results[b]['machine']['torch']}, {results[b]['machine']['torch_threads']} threads, "
                                    f"GPU: {results[b]['machine']['cuda_device'] or 'none'}" for b in cols) + " |",
        "| load average (start -> end) | " + " | ".join(
            f"{_fmt(results[b]['machine']['load_average_start'][0])} -> {_fmt(results[b]['machine']['load_average_end'][0])}"
            for b in cols) + " |",
        "| wall time [s] | " + " | ".join(_fmt(results[b]["wall_s"]) for b in cols) + " |",
        "",
    ]
    path = out / "benchmark.md"
    path.write_text("\n".join(lines))
    return path


def _parser() -> argparse.ArgumentParser:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                epilog="\n\n".join(doc.split("\n\n")[1:]),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", choices=("2d", "3d", "both"), default="both", help="which bundle(s) to measure (default both)")
    p.add_argument("--quick", action="store_true",
                   help=f"small dataset ({QUICK_SAMPLES['2d']} 2D / {QUICK_SAMPLES['3d']} 3D training items) instead of "
                        "the bundle's default dataset size; a few minutes on 2 CPU cores")
    p.add_argument("--samples", type=int, default=None, help="training items (overrides --quick and the default size)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed epochs per configuration after the warm-up epoch (default 3 with --quick, else 5)")
    p.add_argument("--latency-runs", type=int, default=20, help="timed batch-1 forwards per model (at least 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the cache-correctness runs")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads; default: the cores left free by the current load (at least 1), "
                        "because on a busy machine extra threads wait for each other at every operator")
    p.add_argument("--out", default="docs/benchmarks", help="folder of the JSON and markdown results")
    p.add_argument("--data-dir", default=None,
                   help="where the benchmark dataset is built (a subfolder per size); default a temporary folder "
                        "removed at the end")
    p.add_argument("--profile", action="store_true",
                   help="also write profile_<bundle>.txt (torch.profiler + cProfile of a warm RD and a student epoch)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory child processes")
    p.add_argument("--child-memory", choices=MEMORY_CONFIGS, default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import torch

    args.threads_auto = args.threads is None and not args.child_memory
    if args.threads_auto:
        args.threads = auto_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        bundle = "3d" if args.bundle == "3d" else "2d"
        print(json.dumps(memory_child(bundle, args.child_memory, Path(args.data_dir), args.samples)))
        return 0
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.latency_runs = max(20, args.latency_runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bundles = ["2d", "3d"] if args.bundle == "both" else [args.bundle]
    temp_data = args.data_dir is None
    data_root = Path(tempfile.mkdtemp(prefix="rd_bench_data_")) if temp_data else Path(args.data_dir) / "benchmark"
    try:
        for bundle in bundles:
            with tempfile.TemporaryDirectory(prefix=f"rd_bench_{bundle}_") as work:
                result = run_bundle(bundle, args, data_root / bundle, Path(work))
            path = out / f"benchmark_{bundle}.json"
            path.write_text(json.dumps(result, indent=1, default=str) + "\n")
            summary = ", ".join(f"{k} {_fmt(v['value'])} ({v['bar']}: {'pass' if v['pass'] else 'FAIL'})"
                                for k, v in result["bars"].items())
            print(f"[{bundle}] {summary}\n[{bundle}] wrote {path} in {result['wall_s']} s", flush=True)
        print(f"wrote {write_markdown(out)}")
    finally:
        if temp_data:
            shutil.rmtree(data_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
