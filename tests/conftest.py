"""Test isolation: ``mlflow.set_tracking_uri`` also sets ``MLFLOW_TRACKING_URI`` in the process
environment, which every later subprocess (bundle runs, compare.py) would inherit. Under
pytest-xdist (``-n 2``) each worker computes with one thread, so the workers share the cores
instead of oversubscribing them."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _restore_mlflow_tracking_uri():
    saved = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    import mlflow.tracking._tracking_service.utils as tracking_utils

    tracking_utils._tracking_uri = None
    if saved is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = saved
