"""The benchmark script runs end to end at a tiny size and writes what the docs quote.

Timings are not asserted (they depend on the machine); the correctness figures it measures
(cached vs uncached losses, exported vs eager outputs) are, and so are where its bars and the
trainers it times come from: ``scripts/benchmarks/bars.yaml`` and the bundle's ``train.yaml``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bundle_helpers import REPO, bundle_files, bundle_variants

# the benchmark's modules live in scripts/benchmarks/, imported as scripts/benchmark.py does
sys.path.insert(0, str(REPO / "scripts"))
from benchmarks import bars as bench_bars  # noqa: E402


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
    assert set(report["bars"]) == {m for m, bar in bench_bars.load_bars().items() if "2d" in bar.bars}
    assert "`cache_ratio`" in (tmp_path / "out" / "benchmark.md").read_text()


@pytest.mark.slow
def test_segmentation_benchmark_times_the_bundle_drd_and_student(tmp_path):
    cmd = [sys.executable, str(REPO / "scripts" / "benchmark.py"), "--bundle", "seg2d", "--samples", "16", "--repeats", "1",
           "--threads", "1", "--out", str(tmp_path / "out"), "--data-dir", str(tmp_path / "data")]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "out" / "benchmark_seg2d.json").read_text())
    assert report["kind"] == "segmentation" and report["drd_cache_ratio"] > 0
    assert report["drd_hybrid_every_3_cache_ratio"] > 0 and report["drd_every_3_cache_ratio"] > 0
    # the bundle's default method is drd_every_3: its ratio is the one the default-run bar checks
    assert report["default_method"] == "drd_every_3"
    assert report["default_cache_ratio"] == report["drd_every_3_cache_ratio"]
    settings = report["settings"]
    assert settings["config"] == "train.yaml + segmentation.yaml" and settings["label_fraction"] == 0.1
    assert settings["n_train"] == 16 and settings["steps_per_epoch"] == 1
    assert report["step_breakdown"]["drd_step_split_ms"] > 0 and report["step_breakdown"]["drd_step_hybrid_full_ms"] > 0
    assert set(report["bars"]) == {"drd_cache_ratio", "drd_hybrid_every_3_cache_ratio", "drd_every_3_cache_ratio",
                                   "default_cache_ratio"}
    markdown = (tmp_path / "out" / "benchmark.md").read_text()
    assert "`drd_cache_ratio`" in markdown and "`drd_hybrid_every_3_cache_ratio`" in markdown and "`drd_every_3_cache_ratio`" in markdown


def test_bars_come_from_bars_yaml(tmp_path, monkeypatch):
    result = {"cache_ratio": 1.2, "speedup": 11.0, "cache_max_abs_diff": 0.0, "data_wait_share": None}
    checks = bench_bars.bar_checks("2d", result)
    assert checks["cache_ratio"] == {"value": 1.2, "bar": "<= 1.25", "pass": True}
    assert checks["speedup"]["pass"] and checks["cache_max_abs_diff"]["pass"]
    assert checks["data_wait_share"]["pass"] is False  # a figure not measured fails its bar
    assert "cache_speedup" not in checks  # no 2D bar in the file
    for bar in bench_bars.load_bars().values():
        assert bar.reason.strip() and "\n" not in bar.reason.strip()

    # the same result against a copy with a tighter 2D cache_ratio bar and no speedup bar
    data = yaml.safe_load(bench_bars.BARS_FILE.read_text())
    data["cache_ratio"]["bars"]["2d"] = 1.1
    del data["speedup"]
    copy = tmp_path / "bars.yaml"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    changed = bench_bars.bar_checks("2d", result, bench_bars.load_bars(copy))
    assert changed["cache_ratio"] == {"value": 1.2, "bar": "<= 1.1", "pass": False}
    assert "speedup" not in changed
    # what the benchmark calls (no bars given) reads the file at call time
    monkeypatch.setattr(bench_bars, "BARS_FILE", copy)
    assert bench_bars.bar_checks("2d", result)["cache_ratio"]["pass"] is False
    assert bench_bars.bar_checks("3d", {"cache_ratio": 1.2})["cache_ratio"]["pass"] is True

    data["cache_ratio"]["compare"] = "<"
    copy.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ValueError, match="compare"):
        bench_bars.load_bars(copy)


def _reference(*configs: str, datalist: str, out: Path) -> object:
    """A plain ``ConfigParser`` on the given bundle configs, pointed only at the benchmark's data."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files(bundle_files("rd_classification_2d", *configs)))
    parser["bundle_root"] = str(bundle_variants.BUNDLE)
    parser["datalist"] = datalist
    parser["output_dir"] = str(out)
    return parser


def test_timed_trainers_are_the_bundle_configs(tmp_path):
    from benchmarks.setup import load_setup
    from benchmarks.timing import build_configurations

    setup = load_setup("2d", tmp_path / "data", 8, tmp_path / "work")
    parts = build_configurations(setup, tmp_path / "cache")
    datalist = setup.parser["datalist"]
    count = lambda module: sum(p.numel() for p in module.parameters())  # noqa: E731

    reference = _reference("train.yaml", datalist=datalist, out=tmp_path / "ref")
    ref_loss, ref_optimizer = reference.get_parsed_content("loss"), reference.get_parsed_content("optimizer")
    for name in ("rd_cached", "rd_uncached"):
        trainer = parts[name].trainer
        assert type(trainer.loss_function) is type(ref_loss)
        assert trainer.loss_function.weights == ref_loss.weights
        assert type(trainer.optimizer) is type(ref_optimizer)
        for key in ("lr", "weight_decay"):
            assert trainer.optimizer.param_groups[0][key] == ref_optimizer.param_groups[0][key], key
        assert count(trainer.network) == count(reference.get_parsed_content("network"))
        assert count(trainer.reprogrammer) == count(reference.get_parsed_content("reprogrammer"))
        assert trainer.state.max_epochs == 1 and trainer.teacher_source.teacher is setup.teacher
        assert len(trainer.data_loader) == setup.settings["steps_per_epoch"]
    assert parts["rd_cached"].trainer.teacher_source.cache is parts["rd_cached"].cache is not None
    assert parts["rd_uncached"].trainer.teacher_source.cache is None

    student = parts["student"]
    ref_student = _reference("train.yaml", "methods/student.yaml", datalist=datalist,
                             out=tmp_path / "ref_student")
    assert student.trainer.loss_function.weights == ref_student.get_parsed_content("loss").weights
    assert student.trainer.reprogrammer is None and student.trainer.teacher_source is None
    assert count(student.trainer.network) == count(ref_student.get_parsed_content("network"))
    # the student alone never builds a teacher
    assert "teacher_net" not in student.parser.ref_resolver.resolved_content
