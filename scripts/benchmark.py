#!/usr/bin/env python
"""Training-cost and deployment benchmark of the RD bundles, measured side by side in one process.

For each bundle (2D: rd_classification_2d, 3D: rd_classification_3d) everything measured is
instantiated from its ``configs/train.yaml`` with ``monai.bundle.ConfigParser``: teacher,
network, reprogrammer, loss, optimizer, feature cache, the training data loader and
``train#trainer`` itself (the student alone: with ``bundles/rd/configs/methods/student.yaml`` merged on
top), on a small embedded dataset built with ``rd_components.data`` in a temporary folder.

Measured (medians over ``--repeats``; the configurations run round-robin so that machine noise
hits all of them alike):

  cache_ratio      RD epoch with a warm teacher feature cache / the same student trained alone
                   (student.yaml: CE only, same data, batch and loader settings).
  cache_speedup    RD epoch without cache / with a warm cache; the cold first epoch (one teacher
                   forward per sample) is reported too.
  cache correctness  per-iteration losses of a cached and an uncached run from the same seed:
                   max abs difference.
  speedup          teacher forward latency / deployable student latency, batch 1, CPU, median of
                   >= 20 alternating runs after warm-up; parameter counts and FLOPs.
  exports          TorchScript and ONNX (onnxruntime, else onnx.reference) vs eager: max abs diff.
  data wait        share of warm-cache RD epoch time spent waiting for the next batch (ignite
                   GET_BATCH_STARTED -> GET_BATCH_COMPLETED), bundle loader settings.
  peak memory      peak resident memory (Linux VmHWM) of a child process per configuration
                   (student alone, RD cached, RD uncached), each training two epochs.

For the DRD segmentation bundles (``--bundle seg2d|seg3d|seg``, ``scripts/benchmarks/segmentation.py``):

  drd_cache_ratio  DRD epoch with a warm stage-feature cache / the same BasicUNet trained alone
                   (segmentation/student.yaml), at ``--label_fraction`` labels; and one DRD step
                   with the hybrid pass split by label (the trainer's) against a full one;
  default_cache_ratio  the same for the method a plain run trains (drd_every_3: every teacher term
                   on one step in three).

Writes ``<out>/benchmark_<2d|3d|seg2d|seg3d>.json``, regenerates ``<out>/benchmark.md`` from every
``benchmark_*.json`` there, and with ``--profile`` ``<out>/profile_<2d|3d>.txt``. The
measurements live in ``scripts/benchmarks/`` (one module each); the bars, below, in
``scripts/benchmarks/bars.yaml``.

Examples:
    python scripts/benchmark.py --quick                    # both bundles, a few minutes on 2 cores
    python scripts/benchmark.py --bundle 3d --repeats 5    # bundle-default dataset size
    python scripts/benchmark.py --bundle 2d --quick --profile
    python scripts/benchmark.py --bundle seg --quick           # DRD segmentation, 2D and 3D
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

# run as a file, Python puts scripts/ on sys.path; imported from elsewhere it may not be there
if str(Path(__file__).resolve().parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchmarks import QUICK_SAMPLES  # noqa: E402
from benchmarks.bars import describe  # noqa: E402
from benchmarks.machine import auto_threads  # noqa: E402
from benchmarks.memory import MEMORY_CONFIGS, memory_child  # noqa: E402
from benchmarks.report import bar_summary, write_markdown, write_result  # noqa: E402
from benchmarks.runner import run_bundle  # noqa: E402
from benchmarks.segmentation import run_segmentation_bundle  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    """The command line (``--help`` lists the bars of ``bars.yaml``)."""
    doc = __doc__ or ""
    epilog = "\n\n".join(doc.split("\n\n")[1:]) + "\n\nBars (metric, bar per bundle, reason):\n" + describe()
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0], epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", choices=("2d", "3d", "both", "seg2d", "seg3d", "seg", "all"), default="both",
                   help="which bundle(s) to measure: 2d / 3d classification (both: the two), seg2d / seg3d DRD "
                        "segmentation (seg: the two), all (default both)")
    p.add_argument("--label_fraction", type=float, default=0.1,
                   help="segmentation bundles: share of training label maps kept (default 0.1, the label-scarce "
                        "protocol; DRD's hybrid pass needs gradients on labelled items only)")
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
    p.add_argument("--child-cache-dir", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark of the selected bundles and write the results; 0 on success."""
    args = build_parser().parse_args(argv)
    import torch

    args.threads_auto = args.threads is None and not args.child_memory
    if args.threads_auto:
        args.threads = auto_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child_memory:
        # a child started by measure_memory: one configuration, its figures on stdout as JSON
        bundle = "3d" if args.bundle == "3d" else "2d"
        cache_dir = Path(args.child_cache_dir) if args.child_cache_dir else None
        print(json.dumps(memory_child(bundle, args.child_memory, Path(args.data_dir), args.samples, cache_dir)))
        return 0
    args.repeats = args.repeats or (3 if args.quick else 5)
    args.latency_runs = max(20, args.latency_runs)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    groups = {"both": ["2d", "3d"], "seg": ["seg2d", "seg3d"], "all": ["2d", "3d", "seg2d", "seg3d"]}
    bundles = groups.get(args.bundle, [args.bundle])
    temp_data = args.data_dir is None
    data_root = Path(tempfile.mkdtemp(prefix="rd_bench_data_")) if temp_data else Path(args.data_dir) / "benchmark"
    try:
        for bundle in bundles:
            with tempfile.TemporaryDirectory(prefix=f"rd_bench_{bundle}_") as work:
                runner = run_segmentation_bundle if bundle.startswith("seg") else run_bundle
                result = runner(bundle, args, data_root / bundle, Path(work))
            path = write_result(result, out)
            print(f"[{bundle}] {bar_summary(result)}\n[{bundle}] wrote {path} in {result['wall_s']} s", flush=True)
        print(f"wrote {write_markdown(out)}")
    finally:
        if temp_data:
            shutil.rmtree(data_root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
