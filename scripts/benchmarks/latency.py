"""Deployment cost: batch-1 CPU latency of teacher and student, FLOPs and parameter counts."""

from __future__ import annotations

import statistics
import time
from typing import Any

from .setup import BenchmarkSetup, Parts


def count_parameters(module: Any | None) -> int:
    """Parameters of ``module`` (0 for ``None``)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(teacher: Any, parts: Parts) -> dict[str, int]:
    """Parameters of teacher, deployable student (student + classifier) and reprogrammer."""
    return {"teacher": count_parameters(teacher), "deployable_student": count_parameters(parts.network),
            "reprogrammer": count_parameters(parts.reprogrammer)}


def flop_counts(setup: BenchmarkSetup, teacher: Any, parts: Parts) -> dict[str, Any]:
    """Forward FLOPs per sample (``torch.utils.flop_counter``) of teacher, student and reprogrammer.

    Machine-independent: ``teacher / student`` bounds the deployment ``speedup`` an equally
    efficient runtime would show, and ``teacher / (3 x (student + reprogrammer))`` (a training
    step costs about three forwards) bounds ``cache_speedup``.
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.rand(1, setup.settings["in_channels"], *setup.settings["patch_size"])
    teacher, net, rep = teacher.to("cpu"), parts.network.to("cpu").eval(), parts.reprogrammer.to("cpu").eval()
    counts: dict[str, Any] = {}
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


def measure_latency(setup: BenchmarkSetup, teacher: Any, network: Any, runs: int, warmup: int = 5) -> dict[str, Any]:
    """Batch-1 CPU latency of teacher and deployable student, alternating calls, medians."""
    import torch

    teacher = teacher.to("cpu").eval()
    network = network.to("cpu").eval()
    x = torch.rand(1, setup.settings["in_channels"], *setup.settings["patch_size"])
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
        # alternating calls: load changes during the run slow all models alike
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
