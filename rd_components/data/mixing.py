"""Batches that mix labelled and unlabelled training items at a set ratio."""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from .datalist import is_labeled

__all__ = ["LabeledRatioBatchSampler", "labeled_ratio_sampler"]


class LabeledRatioBatchSampler(Sampler[list[int]]):
    """Batch sampler giving each batch ``round(labeled_ratio * batch_size)`` labelled items.

    With scarce labels a plain shuffle gives most batches no labelled item at all (1 % labels,
    batch 32: a labelled item every third batch), so the cross-entropy terms barely train. This
    sampler fixes the share: labelled items are drawn from a reshuffled cycle of the labelled
    pool (so, with few labels, each is seen many times per epoch), the rest of the batch from a
    reshuffled cycle of the unlabelled pool.

    An epoch has ``len(items) / batch_size`` batches (rounded down with ``drop_last``, up
    otherwise), whatever the label fraction and the ratio: every method trained on the same
    images gets the same number of optimizer steps, the budget the comparison needs.

    Args:
        labels: one label per item; ``UNLABELED`` (-1) or ``None`` marks an unlabelled item.
        batch_size: items per batch.
        labeled_ratio: share of labelled items per batch, in ``[0, 1]``; ``None``: a plain
            shuffle of all items (the natural mix). With no unlabelled items every batch is
            labelled; with no labelled ones every batch is unlabelled.
        drop_last: drop a last incomplete batch (as ``DataLoader``'s flag).
        generator: random generator; default: seeded from torch's global RNG at each epoch,
            so ``monai.utils.set_determinism`` and a resumed RNG state reproduce the batches.

    Yields:
        lists of item indices, one list per batch.
    """

    def __init__(
        self,
        labels: Sequence[int | None],
        batch_size: int,
        labeled_ratio: float | None = 0.5,
        drop_last: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"LabeledRatioBatchSampler: batch_size must be >= 1, got {batch_size}.")
        if labeled_ratio is not None and not 0.0 <= float(labeled_ratio) <= 1.0:
            raise ValueError(f"LabeledRatioBatchSampler: labeled_ratio must be in [0, 1] or None, got {labeled_ratio}.")
        if not labels:
            raise ValueError("LabeledRatioBatchSampler: no items.")
        self.batch_size = int(batch_size)
        self.drop_last = drop_last
        self.generator = generator
        self.labeled = [i for i, lab in enumerate(labels) if lab is not None and int(lab) >= 0]
        self.unlabeled = [i for i, lab in enumerate(labels) if lab is None or int(lab) < 0]
        self.num_items = len(labels)
        self.labeled_ratio = None if labeled_ratio is None else float(labeled_ratio)

    def __len__(self) -> int:
        if self.drop_last and self.num_items >= self.batch_size:
            return self.num_items // self.batch_size
        return math.ceil(self.num_items / self.batch_size)

    def labeled_per_batch(self) -> int | None:
        """Labelled items in a full batch, or ``None`` for the natural mix."""
        if self.labeled_ratio is None:
            return None
        if not self.unlabeled:
            return self.batch_size
        if not self.labeled:
            return 0
        return min(self.batch_size, max(1 if self.labeled_ratio > 0 else 0, round(self.labeled_ratio * self.batch_size)))

    def __iter__(self) -> Iterator[list[int]]:
        generator = self.generator
        if generator is None:
            generator = torch.Generator()
            generator.manual_seed(int(torch.empty((), dtype=torch.int64).random_().item()))
        n_labeled = self.labeled_per_batch()
        if n_labeled is None:
            order = torch.randperm(self.num_items, generator=generator).tolist()
            for b in range(len(self)):
                yield order[b * self.batch_size:(b + 1) * self.batch_size]
            return
        pools = (_Cycle(self.labeled, generator), _Cycle(self.unlabeled, generator))
        remaining = self.num_items
        for _ in range(len(self)):
            size = min(self.batch_size, remaining) if not self.drop_last else self.batch_size
            remaining -= size
            k = round(n_labeled * size / self.batch_size)
            yield pools[0].take(k) + pools[1].take(size - k)


class _Cycle:
    """Endless reshuffled passes over a pool of indices."""

    def __init__(self, pool: list[int], generator: torch.Generator) -> None:
        self.pool, self.generator, self.order = pool, generator, []

    def take(self, n: int) -> list[int]:
        out: list[int] = []
        while len(out) < n and self.pool:
            if not self.order:
                self.order = [self.pool[i] for i in torch.randperm(len(self.pool), generator=self.generator).tolist()]
            out.append(self.order.pop())
        return out


def labeled_ratio_sampler(items: Sequence[dict], batch_size: int, labeled_ratio: float | None,
                          drop_last: bool = True) -> LabeledRatioBatchSampler:
    """:class:`LabeledRatioBatchSampler` over datalist items (``label == UNLABELED`` marks unlabelled).

    ``labeled_ratio`` may come from the bundle command line as a string: ``"none"`` or
    ``"null"`` selects the natural mix.
    """
    if isinstance(labeled_ratio, str):
        labeled_ratio = None if labeled_ratio.strip().lower() in ("none", "null", "") else float(labeled_ratio)
    # a segmentation item's label is its label-map file: only labelled or not matters here
    labels = [(0 if isinstance(it.get("label"), (str, os.PathLike)) else it.get("label")) if is_labeled(it) else None
              for it in items]
    return LabeledRatioBatchSampler(labels, min(batch_size, len(items)), labeled_ratio,
                                    drop_last=drop_last and len(items) > batch_size)
