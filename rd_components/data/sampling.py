"""Seeded, class-balanced choice of patch centres and patch extraction with zero padding."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "SPLITS",
    "PatchSample",
    "per_class_counts",
    "slab_ranges",
    "in_ranges",
    "split_rng",
    "sample_balanced",
    "PatchExtractor",
]

#: datalist keys, in the order they are written
SPLITS = ("training", "validation", "test")


@dataclass(frozen=True)
class PatchSample:
    """One patch to cut: its split, centre voxel ``(i, j, k)`` in the source volume and class."""

    split: str
    centre: tuple[int, int, int]
    label: int


def per_class_counts(total: int, num_classes: int) -> list[int]:
    """Spread ``total`` samples over classes as evenly as possible (earlier classes get the rest)."""
    if total < num_classes:
        raise ValueError(f"{total} samples cannot hold at least one of each of {num_classes} classes")
    base, rest = divmod(int(total), num_classes)
    return [base + (1 if c < rest else 0) for c in range(num_classes)]


def slab_ranges(lo: int, hi: int, layout: Sequence[tuple[str, float]], gap: int) -> dict[str, list[tuple[int, int]]]:
    """Cut the centre coordinates ``lo..hi`` (inclusive) along one axis into slabs.

    Consecutive slabs are separated by ``gap`` unused coordinates, so patches whose extent
    along the axis is ``<= gap`` never overlap across slabs.

    Args:
        lo, hi: first and last coordinate that may hold a centre.
        layout: ``[(split, fraction), ...]`` in axis order; a split may appear several times.
        gap: coordinates left out between consecutive slabs.

    Returns:
        ``{split: [(start, stop), ...]}`` half-open ranges.
    """
    usable = (hi - lo + 1) - gap * (len(layout) - 1)
    if usable < len(layout):
        raise ValueError(f"axis range {lo}..{hi} too short for {len(layout)} slabs with gap {gap}")
    total = sum(f for _, f in layout)
    ranges: dict[str, list[tuple[int, int]]] = {}
    cum = 0.0
    for n, (split, frac) in enumerate(layout):
        start = lo + int(round(cum / total * usable)) + n * gap
        cum += frac
        stop = lo + int(round(cum / total * usable)) + n * gap
        ranges.setdefault(split, []).append((start, stop))
    return ranges


def in_ranges(coords: np.ndarray, ranges: Sequence[tuple[int, int]]) -> np.ndarray:
    """Boolean mask of ``coords`` lying in any of the half-open ``ranges``."""
    keep = np.zeros(coords.shape, dtype=bool)
    for start, stop in ranges:
        keep |= (coords >= start) & (coords < stop)
    return keep


def split_rng(seed: int, *stream: object) -> np.random.Generator:
    """An independent generator per (seed, stream): changing one split's size leaves the others as they were."""
    keys = [int(seed)] + [zlib.crc32(str(s).encode()) for s in stream]
    return np.random.default_rng(np.random.SeedSequence(keys))


def sample_balanced(split: str, candidates: Sequence[np.ndarray], counts: Sequence[int], seed: int,
                    class_names: Sequence[str]) -> list[PatchSample]:
    """Draw ``counts[c]`` distinct centres of each class ``c`` without replacement, then shuffle.

    Args:
        split: datalist key the samples belong to.
        candidates: per class, ``(N_c, 3)`` int voxel coordinates allowed as centres.
        counts: samples wanted per class.
        seed: global seed.
        class_names: for error messages.

    Returns:
        ``sum(counts)`` samples in a seeded random order.
    """
    samples: list[PatchSample] = []
    for c, (cand, n) in enumerate(zip(candidates, counts)):
        if len(cand) < n:
            raise ValueError(
                f"split {split!r}: class {c} ({class_names[c]}) has {len(cand)} candidate centres, "
                f"{n} requested (ask for fewer samples)"
            )
        idx = split_rng(seed, split, "class", c).choice(len(cand), size=n, replace=False)
        samples += [PatchSample(split, tuple(int(v) for v in cand[i]), c) for i in np.sort(idx)]
    order = split_rng(seed, split, "order").permutation(len(samples))
    return [samples[i] for i in order]


class PatchExtractor:
    """Cuts square/cubic patches around centres, padding outside the volume with zeros.

    Args:
        volume: ``(X, Y, Z)`` array.
        affine: ``(4, 4)`` voxel -> world of ``volume``.
        patch_size: side length P.
        spatial_dims: 2 (axial ``(P, P)`` patches in the centre's slice) or 3 (``(P, P, P)``).
    """

    def __init__(self, volume: np.ndarray, affine: np.ndarray, patch_size: int, spatial_dims: int) -> None:
        self.p = int(patch_size)
        self.spatial_dims = spatial_dims
        self.pad = self.p // 2 + 1
        self.padded = np.pad(volume, self.pad, mode="constant")
        self.affine = np.asarray(affine, dtype=np.float64)

    def start(self, centre: Sequence[int]) -> np.ndarray:
        """First voxel ``(3,)`` of the patch in source coordinates (may be negative)."""
        start = np.asarray(centre, dtype=int) - self.p // 2
        if self.spatial_dims == 2:
            start[2] = centre[2]
        return start

    def __call__(self, centre: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(patch, affine)``: ``(P, P)`` or ``(P, P, P)`` and its ``(4, 4)`` affine."""
        s = self.start(centre) + self.pad
        if self.spatial_dims == 2:
            patch = self.padded[s[0]:s[0] + self.p, s[1]:s[1] + self.p, s[2]]
        else:
            patch = self.padded[s[0]:s[0] + self.p, s[1]:s[1] + self.p, s[2]:s[2] + self.p]
        shift = np.eye(4)
        shift[:3, 3] = self.start(centre)
        return np.ascontiguousarray(patch), self.affine @ shift
