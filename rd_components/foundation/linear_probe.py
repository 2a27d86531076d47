"""Fit a linear probe on frozen (cached) teacher features.

Classification: a scikit-learn logistic regression on the pooled features of the frozen
teacher, the reference ``linear_probe`` of ``scripts/compare.py`` and the fixed KD targets of
``bundles/rd/configs/methods/kd.yaml``. Segmentation: a per-voxel linear probe on the teacher's
stage maps (:func:`fit_stage_probe`), the segmentation bundles' reference row.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from ..networks.stage_probe import StageProbe
from ..networks.teacher_heads import LinearProbe, _pool
from .teacher_features import TeacherFeatureSource

__all__ = ["extract_pooled_features", "fit_linear_probe", "fit_stage_probe"]

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_pooled_features(teacher: torch.nn.Module, items: Sequence[dict], device: str | torch.device = "cpu",
                            batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Pooled teacher features ``(N, C_T)`` and labels ``(N,)`` of preprocessed items.

    ``teacher`` may be a :class:`TeacherFeatureSource`, so a feature cache is used and filled.
    """
    source = TeacherFeatureSource.wrap(teacher).to(device)
    loader = DataLoader(Dataset(list(items)), batch_size=batch_size, shuffle=False)
    features, labels = [], []
    for batch in loader:
        images = batch["image"].to(device)
        features.append(_pool(source(images, batch)).float().cpu())
        labels.append(torch.as_tensor(batch["label"]).reshape(-1).cpu())
    return torch.cat(features).numpy(), torch.cat(labels).numpy()


def fit_linear_probe(teacher: torch.nn.Module, items: Sequence[dict], num_classes: int,
                     device: str | torch.device = "cpu", batch_size: int = 32, c: float = 1.0) -> LinearProbe:
    """Fit a multinomial logistic regression on standardised pooled teacher features.

    Args:
        teacher: frozen teacher or :class:`TeacherFeatureSource`.
        items: preprocessed training items ``{"image": (1, *spatial), "label": int, "id": ...}``;
            unlabelled ones (``label == -1``) are left out.
        num_classes: ``K``; classes absent from ``items`` get a bias of -1e4.
        c: inverse L2 regularisation strength (scikit-learn's ``C``).

    Returns:
        a frozen :class:`LinearProbe` on ``device``.
    """
    from sklearn.linear_model import LogisticRegression

    from ..data.datalist import labeled_items

    # label-scarce training lists unlabelled items too (label -1): the probe needs labels
    items = labeled_items(items)
    if not items:
        raise ValueError("fit_linear_probe: no labelled training item.")
    x, y = extract_pooled_features(teacher, items, device, batch_size)
    mean, std = x.mean(0), x.std(0) + 1e-6
    model = LogisticRegression(C=c, max_iter=2000)
    model.fit((x - mean) / std, y)
    weight = np.zeros((num_classes, x.shape[1]), dtype=np.float32)
    bias = np.full((num_classes,), -1e4, dtype=np.float32)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn stores one row for two classes
        coef, intercept = np.vstack([-coef, coef]) / 2, np.array([-intercept[0], intercept[0]]) / 2
    weight[model.classes_] = coef
    bias[model.classes_] = intercept
    accuracy = float((model.predict((x - mean) / std) == y).mean())
    logger.info("Linear probe fitted on %d x %d teacher features (training accuracy %.3f).", *x.shape, accuracy)
    probe = LinearProbe(torch.from_numpy(mean), torch.from_numpy(std), torch.from_numpy(weight), torch.from_numpy(bias))
    return probe.to(device)


def fit_stage_probe(teacher: torch.nn.Module, dataset: Sequence[dict], num_classes: int, spatial_dims: int,
                    device: str | torch.device = "cpu", steps: int = 300, learning_rate: float = 0.05,
                    weight_decay: float = 1e-4, batch_size: int = 16, seed: int | None = None) -> StageProbe:
    """Fit a :class:`StageProbe` on the teacher's stage maps of the labelled items of ``dataset``.

    The probe is trained full-batch (every labelled voxel each step) with Adam on MONAI's Dice +
    cross-entropy, the students' supervised loss, so that its Dice is comparable with theirs.
    The stage maps are read once (through the feature cache when ``teacher`` is a
    :class:`TeacherFeatureSource` with ``stages=True``) and kept at their own resolution.

    Args:
        teacher: frozen teacher with ``stage_features``, or a :class:`TeacherFeatureSource`.
        dataset: preprocessed items ``{"image": (C, *spatial), "label": (1, *spatial), "id": ...}``
            (a MONAI ``Dataset``); items whose label map is hidden (all ``-1``) are left out.
        num_classes: ``K``, background included.
        spatial_dims: 2 or 3.
        seed: seeds the probe's initial weights (the Dice part of the loss makes the fit depend
            on them); ``None`` draws them from the caller's RNG, which a bundle run has seeded.

    Returns:
        the fitted probe on ``device``, frozen.
    """
    from monai.losses import DiceCELoss

    source = TeacherFeatureSource.wrap(teacher).to(device)
    if not source.stages:
        source = TeacherFeatureSource(source.teacher, source.cache, source.id_key, source.view_key, stages=True)
    stages: list[list[torch.Tensor]] = []
    labels: list[torch.Tensor] = []
    with torch.no_grad():
        for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            label = torch.as_tensor(batch["label"]).long()
            keep = (label >= 0).flatten(1).all(dim=1)
            if not bool(keep.any()):
                continue
            maps = source(batch["image"].to(device), batch)
            stages.append([m[keep.to(m.device)].float() for m in maps])
            labels.append(label[keep].to(device))
    if not labels:
        raise ValueError("fit_stage_probe: no labelled training item.")
    maps = [torch.cat([b[s] for b in stages]) for s in range(len(stages[0]))]
    target = torch.cat(labels)
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)
        probe = StageProbe(spatial_dims, [m.shape[1] for m in maps], num_classes).to(device)
    dims = [0] + list(range(2, 2 + spatial_dims))
    for s, m in enumerate(maps):
        getattr(probe, f"mean_{s}").copy_(m.mean(dim=dims))
        getattr(probe, f"std_{s}").copy_(m.std(dim=dims).clamp_min(1e-6))
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.Adam(probe.parameters(), lr=learning_rate, weight_decay=weight_decay)
    for _ in range(int(steps)):
        optimizer.zero_grad()
        loss = loss_function(probe(maps, target.shape[2:]), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((probe(maps, target.shape[2:]).argmax(1, keepdim=True) == target).float().mean())
    logger.info("Stage probe fitted on %d labelled items (%s; final Dice + CE %.3f, voxel accuracy %.3f).",
                target.shape[0], ", ".join(str(tuple(m.shape[1:])) for m in maps), float(loss.detach()), accuracy)
    return probe.requires_grad_(False).eval()
