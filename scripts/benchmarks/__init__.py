"""Modules of ``scripts/benchmark.py``, one job each.

- ``setup``: reads a bundle's ``configs/train.yaml`` with ``monai.bundle.ConfigParser``, builds
  the small dataset and instantiates what is measured (teacher, network, reprogrammer, loss,
  optimizer, feature cache, ``train#trainer``) from the parser, per configuration.
- ``machine``: the machine description and the intra-op thread count.
- ``timing``: epoch timing of the three configurations, the per-step breakdown, the profile.
- ``cache``: cached vs uncached losses from the same seed.
- ``latency``: batch-1 CPU latency, FLOPs and parameter counts.
- ``exports``: TorchScript and ONNX exports against eager.
- ``memory``: peak resident memory, one child process per configuration.
- ``bars``: the pass/fail thresholds, read from ``bars.yaml``.
- ``report``: the JSON result file and the ``benchmark.md`` table.
- ``runner``: every measurement of one bundle, assembled into the JSON result.
- ``segmentation``: the DRD segmentation bundles' warm-cache epoch against the student alone.

``scripts/benchmark.py`` is the command line; it puts ``scripts/`` on ``sys.path`` by being
run from there, so this package needs no installation.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUNDLES = {"2d": "rd_classification_2d", "3d": "rd_classification_3d",
           "seg2d": "rd_segmentation_2d", "seg3d": "rd_segmentation_3d"}
# two steps per epoch at the classification bundles' batch sizes (32, 16), four at the segmentation ones' (16, 4)
QUICK_SAMPLES = {"2d": 64, "3d": 32, "seg2d": 64, "seg3d": 16}
