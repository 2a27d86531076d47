"""Every measurement of one bundle, in order, assembled into the JSON result."""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path
from typing import Any

from . import BUNDLES, QUICK_SAMPLES
from .bars import bar_checks
from .cache import check_cache_correctness
from .exports import check_exports
from .latency import flop_counts, measure_latency, parameter_counts
from .machine import load_average, machine_info
from .memory import measure_memory
from .setup import build, load_setup
from .timing import profile_epochs, step_breakdown, time_training


def run_bundle(bundle: str, args: argparse.Namespace, data_root: Path, work: Path) -> dict[str, Any]:
    """All measurements of one bundle; returns the JSON-ready result.

    Args:
        bundle: ``"2d"`` or ``"3d"``.
        args: the parsed command line of ``scripts/benchmark.py``.
        data_root: folder of this bundle's benchmark datasets.
        work: temporary folder (caches, exports, outputs the configs would write).
    """
    n_train = args.samples or (QUICK_SAMPLES[bundle] if args.quick else None)
    t_start = time.perf_counter()
    machine = machine_info()
    print(f"[{bundle}] building data and reading {BUNDLES[bundle]}'s training files", flush=True)
    setup = load_setup(bundle, data_root, n_train, work)
    s = setup.settings
    print(f"[{bundle}] {s['teacher']} -> {s['student']} {s['student_kwargs']}, patch {s['patch_size']}, "
          f"{s['n_train']} items, batch {s['batch_size']}, {s['steps_per_epoch']} steps/epoch", flush=True)

    print(f"[{bundle}] training epochs: student alone, RD warm cache, RD uncached x {args.repeats}", flush=True)
    training = time_training(setup, args.repeats, work)
    print(f"[{bundle}] cache correctness", flush=True)
    correctness = check_cache_correctness(setup, args.seed, work)
    print(f"[{bundle}] step breakdown, FLOPs, deployment latency and exports", flush=True)
    breakdown = step_breakdown(setup, max(5, args.repeats))
    parts = build(setup, "rd_uncached")
    params = parameter_counts(setup.teacher, parts)
    flops = flop_counts(setup, setup.teacher, parts)
    latency = measure_latency(setup, setup.teacher, parts.network, args.latency_runs)
    exports = check_exports(setup, parts.network, work, args.latency_runs)
    # latency and FLOPs moved the shared teacher to the CPU; the profile trains on the config's device
    setup.teacher.to(setup.device)
    if args.profile:
        print(f"[{bundle}] profiling", flush=True)
        profile_epochs(setup, work, Path(args.out) / f"profile_{bundle}.txt")
    memory = None
    if not args.no_memory:
        print(f"[{bundle}] peak memory (one child process per configuration)", flush=True)
        memory = measure_memory(bundle, data_root, n_train, args.threads)

    result: dict[str, Any] = {
        "bundle": bundle,
        "quick": bool(args.quick),
        "command": "python scripts/benchmark.py " + " ".join(sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {**machine, "load_average_end": load_average()},
        "settings": {**s, "repeats": args.repeats, "seed": args.seed, "threads": args.threads,
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
        # the warm-cache RD run's peak: what limits how many cells run side by side
        "warm_cache_peak_rss_mib": (memory or {}).get("rd_warm", {}).get("peak_rss_mib"),
        "wall_s": None,
    }
    result["bars"] = bar_checks(bundle, result)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    return result
