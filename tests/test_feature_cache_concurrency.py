"""The teacher feature cache shared by concurrent cells: two writers of the same entries and a reader."""

from __future__ import annotations

import multiprocessing as mp

import torch

from rd_components.foundation import TeacherFeatureCache

N_ENTRIES = 100


def _features(i: int) -> torch.Tensor:
    # a deterministic "teacher output" per sample, as two cells computing the same item get
    return torch.arange(64 * 9, dtype=torch.float32).reshape(64, 3, 3) * (i + 1)


def _writer(cache_dir: str, order: int, start) -> None:
    cache = TeacherFeatureCache("toy", "digest", {"size": 24}, cache_dir=cache_dir, in_memory=False)
    start.wait()
    ids = range(N_ENTRIES) if order > 0 else reversed(range(N_ENTRIES))
    for i in ids:
        cache.put(cache.entry_key(f"item{i}", 0), _features(i))


def _reader(cache_dir: str, start, bad) -> None:
    cache = TeacherFeatureCache("toy", "digest", {"size": 24}, cache_dir=cache_dir, in_memory=False)
    start.wait()
    for _ in range(3):
        for i in range(N_ENTRIES):
            found = cache.get(cache.entry_key(f"item{i}", 0))
            # an entry is either absent or complete: never a half-written file
            if found is not None and not torch.equal(found, _features(i)):
                bad.value += 1


def test_two_writers_and_a_reader_of_the_same_entries(tmp_path):
    # fork: the children start at once, without importing torch again (Linux; the CI machine)
    ctx = mp.get_context("fork")
    start, bad = ctx.Barrier(3), ctx.Value("i", 0)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), 1, start)),
             ctx.Process(target=_writer, args=(str(tmp_path), -1, start)),
             ctx.Process(target=_reader, args=(str(tmp_path), start, bad))]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert bad.value == 0, f"{bad.value} reads returned a damaged entry"
    cache = TeacherFeatureCache("toy", "digest", {"size": 24}, cache_dir=tmp_path, in_memory=False)
    for i in range(N_ENTRIES):
        assert torch.equal(cache.get(cache.entry_key(f"item{i}", 0)), _features(i))
    assert not list(tmp_path.rglob("*.tmp")), "temporary files left behind"
    assert len(list(tmp_path.rglob("*.safetensors"))) == N_ENTRIES
