"""Helpers for the end-to-end bundle tests: run ``python -m monai.bundle`` as users do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import bundle_variants  # noqa: E402 (scripts/ is not a package)


def bundle_configs(variant: str, *names: str, bundle: Path | None = None) -> str:
    """``--config_file`` value of ``variant`` (``rd_classification_2d``, ``rd_segmentation_3d``, ...) of
    the RD bundle (``bundles/rd``, or the copied bundle folder ``bundle``), for ``names`` in order:
    ``train.yaml`` (the variant's training files), ``evaluate.yaml``, ``inference.yaml``,
    ``multi_gpu_train.yaml`` (the variant's files for that use, without the training ones) and
    ``methods/<...>.yaml`` (a method overlay of the bundle)."""
    folder = bundle or bundle_variants.BUNDLE
    paths: list[Path] = []
    for name in names:
        if name.startswith("methods/"):
            paths.append(folder / "configs" / name)
        elif name == "train.yaml":
            paths += bundle_variants.config_files(variant, "train", folder)
        elif name == "inference.yaml":
            paths += bundle_variants.config_files(variant, "inference", folder)
        else:
            use = Path(name).stem
            training = bundle_variants.config_files(variant, "train", folder)
            paths += bundle_variants.config_files(variant, use, folder)[len(training):]
    strings = [str(p) for p in paths]
    return strings[0] if len(strings) == 1 else json.dumps(strings)


def bundle_files(variant: str, *names: str, bundle: Path | None = None) -> list[str]:
    """:func:`bundle_configs` as a list of paths."""
    value = bundle_configs(variant, *names, bundle=bundle)
    return json.loads(value) if value.startswith("[") else [value]


def parse_bundle(variant: str, *names: str, **overrides) -> "ConfigParser":
    """The variant's ``names`` configs merged in a ``ConfigParser`` in-process (``bundle_root`` the
    bundle folder, as a run from it has), with ``overrides`` set."""
    from monai.bundle import ConfigParser

    parser = ConfigParser(ConfigParser.load_config_files(bundle_files(variant, *names)))
    parser["bundle_root"] = str(bundle_variants.BUNDLE)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def copy_bundle(destination: Path) -> Path:
    """Copy the RD bundle (configs, method overlays, docs, licence; no outputs) to ``destination``."""
    shutil.copytree(bundle_variants.BUNDLE, destination, ignore=shutil.ignore_patterns("eval", "models", "predictions"))
    return destination


def bundle_command(run_id: str, config_file: str, **overrides) -> list[str]:
    """``python -m monai.bundle run <run_id> --config_file ... --key value ...``."""
    cmd = [sys.executable, "-m", "monai.bundle", "run"] + ([run_id] if run_id else []) + ["--config_file", config_file]
    for key, value in overrides.items():
        # the bundle CLI (python-fire) reads Python literals: True, None, [32, 32]
        cmd += [f"--{key}", value if isinstance(value, str) else repr(value)]
    return cmd


def bundle_env() -> dict[str, str]:
    """Environment of a bundle run: quiet warnings, no inherited MLflow URI, 2 threads (1 when
    pytest-xdist runs tests side by side, so the workers do not oversubscribe the cores)."""
    threads = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": threads}
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def run_bundle(run_id: str, config_file: str, cwd: Path, timeout: int = 900, **overrides) -> subprocess.CompletedProcess:
    """Run ``python -m monai.bundle run <run_id>`` with ``--key value`` overrides; fail with its log."""
    cmd = bundle_command(run_id, config_file, **overrides)
    result = subprocess.run(cmd, cwd=cwd, env=bundle_env(), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"bundle run failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-6000:]}")
    return result
