"""The benchmark script runs end to end at a tiny size and writes what the docs quote.

Timings are not asserted (they depend on the machine); the correctness figures it measures
(cached vs uncached losses, exported vs eager outputs) are.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from bundle_helpers import REPO


@pytest.mark.slow
def test_benchmark_script_writes_json_and_table(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--bundle", "2d", "--samples", "8", "--repeats", "1",
           "--latency-runs", "20", "--no-memory", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "benchmark_2d.json").read_text())
    for key in ("cache_ratio", "cache_speedup", "speedup", "data_wait_share", "machine"):
        assert key in report, key
    assert report["cache_ratio"] > 0 and report["speedup"] > 0 and 0 <= report["data_wait_share"] <= 1
    # measured equalities, not timings
    assert report["cache_max_abs_diff"] <= 1e-4
    assert report["torchscript_max_abs_diff"] <= 1e-4 and report["onnx_max_abs_diff"] <= 1e-4
    assert report["settings"]["reprogrammer_hidden"] == 64
    assert "`cache_ratio`" in (tmp_path / "out" / "benchmark.md").read_text()
