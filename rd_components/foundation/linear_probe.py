"""Fit a linear probe on frozen (cached) teacher features.

A scikit-learn logistic regression on the pooled features of the frozen teacher: the reference
``linear_probe`` of ``scripts/compare.py`` and the fixed KD targets of ``bundles/rd/configs/methods/kd.yaml``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from ..networks.teacher_heads import LinearProbe, _pool
from .teacher_features import TeacherFeatureSource

__all__ = ["extract_pooled_features", "fit_linear_probe"]

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
