"""Where teacher features come from: the frozen teacher, through an optional feature cache.

Used by the engines (RDTrainer, RDEvaluator) and by the linear probe (:mod:`.linear_probe`). It
lives with the teacher and its cache, below the engines, so that the probe needs nothing from them.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from torch import nn

from ..data.item_ids import file_digest
from .feature_cache import TeacherFeatureCache

__all__ = ["TeacherFeatureSource"]

logger = logging.getLogger(__name__)


class TeacherFeatureSource(nn.Module):
    """Frozen teacher plus an optional :class:`~rd_components.foundation.TeacherFeatureCache`.

    With a cache, each batch needs the sample ids (``id_key``; when the batch carries the image's
    source file as MONAI metadata, its name and a digest of its content (:func:`rd_components.data.item_ids.file_digest`)
    join the key, so a file rebuilt or replaced under the same name and id is a cache miss, never
    a stale hit) and, when the teacher's input is
    randomly augmented, the view index (``view_key``) written by
    :class:`~rd_components.data.views.FixedViewsd`; without a view key every sample is view 0,
    which is only correct when the teacher's input is deterministic. The bundles' augmentation
    is ``FixedViewsd``, so their cache stays on with and without augmentation; any other random
    transform on the teacher's input needs the cache off (``use_feature_cache: false``).

    Args:
        teacher: frozen module ``(B, C, *spatial) -> (B, C_T, *spatial')``.
        cache: feature cache, or ``None`` to call the teacher on every batch.
        id_key: batch key holding sample ids.
        view_key: batch key holding view indices.
        stages: give the teacher's stage features (``teacher.stage_features``, for dense
            distillation) instead of its last map; cached under keys of their own.

    Shapes:
        ``images (B, C, *spatial)`` -> features ``(B, C_T, *spatial')`` on the images' device;
        with ``stages``, a list of ``(B, C_s, *spatial_s)``, shallow to deep.
    """

    def __init__(
        self,
        teacher: nn.Module,
        cache: TeacherFeatureCache | None = None,
        id_key: str = "id",
        view_key: str = "view",
        stages: bool = False,
    ) -> None:
        super().__init__()
        self.teacher = teacher
        self.cache = cache
        self.id_key = id_key
        self.view_key = view_key
        self.stages = bool(stages)
        self._warned = False

    def _compute(self, images: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        return self.teacher.stage_features(images) if self.stages else self.teacher(images)

    @classmethod
    def wrap(cls, teacher: nn.Module) -> TeacherFeatureSource:
        """Return ``teacher`` if it already is a source, else an uncached source around it."""
        return teacher if isinstance(teacher, cls) else cls(teacher)

    def train(self, mode: bool = True) -> TeacherFeatureSource:
        # the teacher is frozen: BatchNorm statistics never update
        super().train(False)
        return self

    @torch.no_grad()
    def forward(self, images: torch.Tensor, batchdata: Any = None) -> torch.Tensor | list[torch.Tensor]:
        """Teacher features of a batch (or its stage maps), from the cache where possible."""
        self.teacher.eval()
        if self.cache is not None and not (isinstance(batchdata, dict) and self.id_key in batchdata) and not self._warned:
            # said once, on the first batch, so that a slow run is not a mystery
            logger.warning("Teacher feature cache not used: the items carry no '%s' (give each item one, or load the "
                           "data through rd_components.data.resolve_datalist, which adds stable ids).", self.id_key)
            self._warned = True
        if self.cache is None or not isinstance(batchdata, dict) or self.id_key not in batchdata:
            return self._compute(images)
        ids = [str(i) for i in batchdata[self.id_key]]
        if self.stages:
            ids = [f"stages\x00{i}" for i in ids]  # stage lists never share a key with last maps
        files = getattr(images, "meta", {}).get("filename_or_obj") if hasattr(images, "meta") else None
        if isinstance(files, (list, tuple)) and len(files) == len(ids):
            # the source file and its content join the id in the key: ids repeated across splits or
            # datalists never collide, and new pixels under an old name and id are a miss
            ids = [f"{i}\x00{f}\x00{file_digest(f) if isinstance(f, (str, os.PathLike)) else ''}"
                   for i, f in zip(ids, files)]
        views = batchdata.get(self.view_key)
        views = [0] * len(ids) if views is None else [int(v) for v in torch.as_tensor(views).reshape(-1)]
        keys, found = self.cache.lookup_batch(ids, views)
        missing = [i for i, f in enumerate(found) if f is None]
        if missing:
            computed = self._compute(images[missing])
            for row, index in enumerate(missing):
                entry = [c[row] for c in computed] if self.stages else computed[row]
                self.cache.put(keys[index], entry)
                found[index] = entry
        if self.stages:
            return [torch.stack([f[s].to(images.device, non_blocking=True) for f in found]).float()
                    for s in range(len(found[0]))]
        return torch.stack([f.to(images.device, non_blocking=True) for f in found]).float()
