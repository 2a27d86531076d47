"""Training cost: epoch times of the three configurations, where a step's time goes, and a profile."""

from __future__ import annotations

import contextlib
import cProfile
import io
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from . import REPO
from .setup import BenchmarkSetup, Parts, build

CONFIGURATIONS = ("student", "rd_cached", "rd_uncached")


class EpochTimer:
    """Records per-epoch wall time and the time spent fetching batches (ignite events).

    ``wait`` is GET_BATCH_STARTED -> GET_BATCH_COMPLETED, i.e. the loader's ``next()``; on CUDA
    the iteration end synchronises so that asynchronous kernels are not counted as data wait.
    """

    def __init__(self, engine: Any, cuda: bool) -> None:
        from ignite.engine import Events

        self.epochs: list[float] = []
        self.waits: list[float] = []
        self._wait = 0.0
        self._t0 = self._b0 = 0.0
        engine.add_event_handler(Events.EPOCH_STARTED, self._epoch_started)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._epoch_completed)
        engine.add_event_handler(Events.GET_BATCH_STARTED, self._batch_started)
        engine.add_event_handler(Events.GET_BATCH_COMPLETED, self._batch_completed)
        if cuda:
            engine.add_event_handler(Events.ITERATION_COMPLETED, lambda _engine: synchronize("cuda"))

    def _epoch_started(self, _engine: Any) -> None:
        self._wait = 0.0
        self._t0 = time.perf_counter()

    def _epoch_completed(self, _engine: Any) -> None:
        self.epochs.append(time.perf_counter() - self._t0)
        self.waits.append(self._wait)

    def _batch_started(self, _engine: Any) -> None:
        self._b0 = time.perf_counter()

    def _batch_completed(self, _engine: Any) -> None:
        self._wait += time.perf_counter() - self._b0


def synchronize(device: str) -> None:
    """Wait for queued CUDA kernels, so that a timer stops after the work it times; no-op on CPU."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def summary(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the rounded runs of a list of times."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values),
            "runs": [round(v, 4) for v in values]}


def build_configurations(setup: BenchmarkSetup, cache_dir: Path) -> dict[str, Parts]:
    """The three configurations :func:`time_training` times, each from its bundle parser.

    ``student``: ``train.yaml`` + ``methods/student.yaml``; ``rd_cached``: ``train.yaml`` with a
    fresh feature cache under ``cache_dir``; ``rd_uncached``: ``train.yaml`` with
    ``use_feature_cache: false``. One epoch per ``run()``.
    """
    return {"student": build(setup, "student"),
            "rd_cached": build(setup, "rd_cached", cache_dir=cache_dir),
            "rd_uncached": build(setup, "rd_uncached")}


def time_training(setup: BenchmarkSetup, repeats: int, work: Path) -> dict[str, Any]:
    """Epoch times of student alone, RD with warm cache and RD without cache, round-robin.

    Every configuration first runs one untimed epoch (for the cached one, that is the cold
    epoch that fills the cache, and it is reported); then ``repeats`` rounds of one epoch each,
    so that machine noise hits the three alike.
    """
    cuda = setup.device.startswith("cuda")
    parts = build_configurations(setup, work / "timing_cache")
    timers = {name: EpochTimer(p.trainer, cuda) for name, p in parts.items()}
    for p in parts.values():  # warm-up; the cached trainer's is the cold epoch
        p.trainer.run()
    cold = timers["rd_cached"].epochs[0]
    for _ in range(repeats):
        for p in parts.values():
            p.trainer.run()
    epochs = {name: timer.epochs[1:] for name, timer in timers.items()}
    warm, alone = timers["rd_cached"], timers["student"]
    cache = parts["rd_cached"].cache
    # the cache exposes no size accessor; its in-memory dict holds one CPU tensor per entry
    entry_bytes = [t.numel() * t.element_size() for t in cache._memory.values()]
    med = {name: statistics.median(v) for name, v in epochs.items()}
    return {
        "cache_ratio": med["rd_cached"] / med["student"],
        "cache_speedup": med["rd_uncached"] / med["rd_cached"],
        "epoch_s": {name: summary(v) for name, v in epochs.items()},
        "cold_epoch_s": cold,
        "cold_over_uncached": cold / med["rd_uncached"],
        "per_sample_ms": {name: 1000 * m / setup.settings["n_train"] for name, m in med.items()},
        "data_wait_share": sum(warm.waits[1:]) / sum(warm.epochs[1:]),
        "data_wait_share_student": sum(alone.waits[1:]) / sum(alone.epochs[1:]),
        "cache": {**cache.stats(), "bytes_per_entry": statistics.median(entry_bytes) if entry_bytes else 0,
                  "disk": setup.settings["disk_cache"]},
    }


def step_breakdown(setup: BenchmarkSetup, repeats: int) -> dict[str, Any]:
    """Where one training step's time goes, on one batch of the loader (medians, interleaved).

    ``teacher_forward``: the frozen teacher on the batch (what the cache saves);
    ``cache_fetch``: warm cache lookup and stacking; ``student_step``: the student-alone step
    (forward, CE, backward, optimizer); ``rd_step``: the RD step on cached features (student and
    reprogrammer forward, the config's loss, backward, optimizer over both);
    ``reprogrammer_step``: the reprogrammer branch alone (forward, classifier, CE, backward,
    optimizer on its parameters); ``rd_loss``: the loss forward; ``student_step_plain_tensor``:
    the student step with the batch as a plain tensor instead of MONAI's MetaTensor. Engine
    overhead (decollation, postprocessing, metrics, events) is the epoch time per step minus these.
    """
    import torch
    import torch.nn.functional as F

    device = setup.device
    batch = next(iter(setup.loader))
    images = batch["image"].to(device)
    plain = images.as_tensor() if hasattr(images, "as_tensor") else images
    labels = batch["label"].to(device).reshape(-1).long()
    # an in-memory cache: the fetch timed is a warm cache's, not the disk's
    rd = build(setup, "rd_cached", cache_dir=None)
    alone = build(setup, "student")
    source = rd.teacher_source.to(device)
    with torch.no_grad():
        feats = source(images, batch)  # fills the cache
    net, rep = rd.network, rd.reprogrammer
    # the bundle has no reprogrammer-only optimizer: this probe takes its config optimizer's settings
    group = rd.optimizer.param_groups[0]
    rep_optimizer = type(rd.optimizer)(rep.parameters(), lr=group["lr"], weight_decay=group["weight_decay"])
    # the trainer's precision: float16 autocast around forward and loss on CUDA (no scaler: timing only)
    autocast = (lambda: torch.autocast("cuda")) if setup.amp else contextlib.nullcontext

    def teacher_forward() -> None:
        with torch.no_grad():  # the trainer calls the teacher outside autocast
            setup.teacher(images)

    def cache_fetch() -> None:
        with torch.no_grad():
            source(images, batch)

    def student_step(x: torch.Tensor = images) -> None:
        student = alone.network.train()
        alone.optimizer.zero_grad()
        with autocast():
            loss = F.cross_entropy(student.classifier(student.features(x)).float(), labels)
        loss.backward()
        alone.optimizer.step()

    def rd_step() -> None:
        net.train()
        rep.train()
        rd.optimizer.zero_grad()
        with autocast():
            z_s = net.features(images)
            z_t = rep(feats)
            terms = rd.loss(student_logits=net.classifier(z_s), teacher_logits=net.classifier(z_t),
                            student_features=z_s, teacher_features=z_t, labels=labels)
        terms["loss"].backward()
        rd.optimizer.step()

    def reprogrammer_step() -> None:
        rep.train()
        rep_optimizer.zero_grad()
        with autocast():
            loss = F.cross_entropy(net.classifier(rep(feats)).float(), labels)
        loss.backward()
        rep_optimizer.step()

    with torch.no_grad():
        z_s, z_t = net.features(images), rep(feats)
        logits = (net.classifier(z_s), net.classifier(z_t))

    def rd_loss() -> None:
        with torch.no_grad(), autocast():
            rd.loss(student_logits=logits[0], teacher_logits=logits[1], student_features=z_s,
                    teacher_features=z_t, labels=labels)

    steps: dict[str, Callable[[], None]] = {
        "teacher_forward": teacher_forward, "cache_fetch": cache_fetch, "student_step": student_step,
        "student_step_plain_tensor": lambda: student_step(plain), "rd_step": rd_step,
        "reprogrammer_step": reprogrammer_step, "rd_loss": rd_loss}
    times: dict[str, list[float]] = {k: [] for k in steps}
    for fn in steps.values():  # warm-up
        fn()
    for _ in range(repeats):
        for k, fn in steps.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[k].append(time.perf_counter() - t0)
    out: dict[str, Any] = {f"{k}_ms": 1000 * statistics.median(v) for k, v in times.items()}
    out["batch"] = int(images.shape[0])
    out["repeats"] = repeats
    # the ceiling of cache_speedup if the engine had no overhead: (teacher + RD step) / RD step
    out["cache_speedup_ceiling"] = (out["teacher_forward_ms"] + out["rd_step_ms"] + out["cache_fetch_ms"]) / (
        out["rd_step_ms"] + out["cache_fetch_ms"])
    out["rd_over_student_step"] = (out["rd_step_ms"] + out["cache_fetch_ms"]) / out["student_step_ms"]
    return out


def profile_epochs(setup: BenchmarkSetup, work: Path, path: Path) -> None:
    """Write torch.profiler and cProfile tables of one warm RD epoch and one student epoch."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    runs = {
        "RD, warm cache": build(setup, "rd_cached", cache_dir=work / "profile_cache").trainer,
        "student alone": build(setup, "student").trainer,
    }
    s = setup.settings
    text = io.StringIO()
    text.write(f"# profile of bundle {setup.bundle}: {s['n_train']} items, batch {s['batch_size']}, "
               f"{s['steps_per_epoch']} steps per epoch, device {setup.device}\n")
    for name, trainer in runs.items():
        trainer.run()  # warm-up (fills the cache)
        with profile(activities=activities) as prof:
            trainer.run()
        sort = "self_cuda_time_total" if torch.cuda.is_available() else "self_cpu_time_total"
        text.write(f"\n## {name}: torch.profiler, top operators by self time\n")
        text.write(prof.key_averages().table(sort_by=sort, row_limit=25))
        profiler = cProfile.Profile()
        profiler.enable()
        trainer.run()
        profiler.disable()
        stream = io.StringIO()
        pstats.Stats(profiler, stream=stream).sort_stats("cumulative").print_stats(35)
        text.write(f"\n## {name}: cProfile, top Python functions by cumulative time\n")
        # drop pstats' header (call counts and the profile's file name)
        text.write(stream.getvalue().split("\n", 3)[-1] if "\n" in stream.getvalue() else stream.getvalue())
    path.write_text(anonymise(text.getvalue()))


def anonymise(text: str) -> str:
    """Replace this machine's install locations in profiler output by placeholders."""
    import sysconfig

    # longest first, so that a venv inside the repository is named as the venv
    for prefix, name in sorted(((sysconfig.get_paths()["purelib"], "<site-packages>"),
                                (sysconfig.get_paths()["stdlib"], "<stdlib>"),
                                (str(REPO), "<repo>"), (sys.prefix, "<venv>"), (sys.base_prefix, "<python>")),
                               key=lambda p: -len(p[0])):
        text = text.replace(prefix, name)
    return text
