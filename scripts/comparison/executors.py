"""Where the cells train: processes on this machine (``--jobs``), or Ray tasks (``--executor ray``).

Both give a ``concurrent.futures.Executor``-like object whose ``submit(fn, *args)`` returns a
``concurrent.futures.Future``, so the grid waits on either with ``as_completed`` and scores each
cell as it finishes. A cell is always a ``python -m monai.bundle run training`` subprocess
(:func:`~comparison.cells.run_cell`); the executor only decides where that process starts.

Ray is an optional dependency (``pip install -r requirements-cluster.txt``). On a cluster every
node needs this repository at the same path (or a shared file system), ``--out`` on a file
system every node sees (cells write their checkpoints there, the driver scores them) and an
MLflow tracking URI every node reaches (``--tracking_uri http://...`` of an ``mlflow server``;
a SQLite file is only safe on one machine).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from . import REPO


class RayExecutor:
    """Submits each call as one Ray task asking for ``num_cpus`` CPUs and ``num_gpus`` GPUs.

    Args:
        address: a running cluster (``ray://host:10001``, ``auto``) or ``None`` to start a local
            Ray instance with ``num_cpus`` (default: all cores) for this grid.
        num_cpus: CPUs per task (the cell's torch threads).
        num_gpus: GPUs per task (0 on CPU machines; 1 trains each cell on its own GPU).
        local_cpus: CPUs of a local instance (``None``: Ray counts the cores).
    """

    def __init__(self, address: str | None, num_cpus: int, num_gpus: float = 0.0, local_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError as err:
            raise SystemExit("--executor ray needs Ray: pip install -r requirements-cluster.txt") from err
        self._ray = ray
        # workers import comparison.cells from this repository, wherever they start
        paths = [str(REPO / "scripts"), str(REPO), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
        runtime_env = {"env_vars": {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths))}}
        local = {} if address else {"num_cpus": local_cpus, "include_dashboard": False}
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=False, **local)
        self._options = {"num_cpus": num_cpus, "num_gpus": num_gpus, "max_retries": 0}

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        """Run ``fn(*args)`` as a Ray task; the returned future resolves to its result."""
        return self._ray.remote(**self._options)(fn).remote(*args).future()

    def shutdown(self) -> None:
        """Disconnect from (and stop, when it was started here) the Ray instance."""
        self._ray.shutdown()


@contextlib.contextmanager
def cell_executor(executor: str, jobs: int, threads: int, address: str | None = None,
                  gpus_per_cell: float = 0.0) -> Iterator[Any]:
    """The executor of ``--executor`` (``local`` or ``ray``), closed on exit.

    ``local``: ``jobs`` threads, each waiting on one cell subprocess. ``ray``: Ray tasks of
    ``threads`` CPUs (and ``gpus_per_cell`` GPUs); a local instance gets ``jobs * threads`` CPUs,
    so it runs ``jobs`` cells at a time like the local executor.
    """
    if executor == "local":
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            yield pool
    elif executor == "ray":
        pool = RayExecutor(address, num_cpus=threads, num_gpus=gpus_per_cell, local_cpus=None if address else jobs * threads)
        try:
            yield pool
        finally:
            pool.shutdown()
    else:
        raise ValueError(f"unknown executor {executor!r}; use local or ray")
