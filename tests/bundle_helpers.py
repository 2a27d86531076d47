"""Helpers for the end-to-end bundle tests: run ``python -m monai.bundle`` as users do."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def bundle_configs(bundle: str | Path, *names: str) -> str:
    """``--config_file`` value for the configs ``names`` of ``bundles/<bundle>/configs/`` (or of
    ``<bundle>/configs/`` when ``bundle`` is a folder, a copied bundle); a name with a folder
    (``methods/kd.yaml``) is taken relative to ``bundles/``."""
    folder = bundle if isinstance(bundle, Path) else REPO / "bundles" / bundle
    paths = [str(REPO / "bundles" / name if "/" in name else folder / "configs" / name) for name in names]
    return paths[0] if len(paths) == 1 else json.dumps(paths)


def copy_bundle(bundle: str, destination: Path) -> Path:
    """Copy ``bundles/<bundle>`` (configs, docs, licence; no outputs) to ``destination``."""
    shutil.copytree(REPO / "bundles" / bundle, destination, ignore=shutil.ignore_patterns("eval", "models", "predictions"))
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
