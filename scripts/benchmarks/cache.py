"""Cache correctness: a cached and an uncached run from the same seed must give the same losses."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .setup import BenchmarkSetup, configuration_parser, instantiate


def check_cache_correctness(setup: BenchmarkSetup, seed: int, work: Path, epochs: int = 2) -> dict[str, Any]:
    """Per-iteration loss terms of an uncached and a cached run from the same seed.

    Both runs are the bundle's RD trainer (``use_feature_cache`` false / true) on a dataset of
    (at most) two batches' worth of items, for ``epochs`` epochs, so that the cached run's later
    epochs are served from the cache; returns the max abs difference per loss term.
    """
    import torch
    from ignite.engine import Events
    from monai.utils import set_determinism
    from rd_components.engines import loss_terms

    batch_size = setup.loader.batch_sampler.batch_size
    n = min(setup.settings["n_train"], 2 * batch_size)
    terms: list[str] = []  # the names the loss returned (the same in both runs)

    def run(variant: str) -> tuple[torch.Tensor, dict]:
        parser = configuration_parser(setup, variant, cache_dir=work / "correctness_cache", epochs=epochs, n_train=n)
        # after the dataset is in place (building one may draw random numbers), before any
        # network exists: both runs start from the same weights and draw the same batches
        set_determinism(seed=seed)
        parts = instantiate(parser)
        rows: list[list[float]] = []

        def record(engine: Any) -> None:
            output = engine.state.output[0] if isinstance(engine.state.output, list) else engine.state.output
            terms[:] = loss_terms(engine)
            rows.append([float(output[t]) for t in terms])

        parts.trainer.add_event_handler(Events.ITERATION_COMPLETED, record)
        parts.trainer.run()
        return torch.tensor(rows, dtype=torch.float64), (parts.cache.stats() if parts.cache is not None else {})

    uncached, _ = run("rd_uncached")
    cached, stats = run("rd_cached")
    set_determinism(seed=None)
    diff = (uncached - cached).abs()
    return {
        "max_abs_diff": float(diff.max()),
        "per_term_max_abs_diff": {t: float(diff[:, i].max()) for i, t in enumerate(terms)},
        "iterations": int(diff.shape[0]),
        "items": n,
        "epochs": epochs,
        "cache_stats": dict(stats),
        "first_losses": {"uncached": uncached[0].tolist(), "cached": cached[0].tolist()},
    }
