"""Output transforms that turn the engines' decollated outputs into batch tensors for ignite metrics."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

__all__ = ["stacked_output"]


def stacked_output(pred_key: str = "pred", label_key: str = "label", one_hot: int | None = None) -> Callable:
    """Output transform giving ``(y_pred (B, K), y (B,))`` or, with ``one_hot=K``, ``y (B, K)``.

    Works on MONAI's decollated outputs (a list of per-item dicts) and on plain batch dicts,
    so ignite's ``Accuracy``/``Fbeta`` and MONAI's ``ROCAUC`` can share one definition. Items
    whose label is ``-1`` (unlabelled) are left out.
    """

    def transform(output: Any) -> tuple[torch.Tensor, torch.Tensor]:
        items = output if isinstance(output, list) else [output]
        preds = torch.stack([torch.as_tensor(i[pred_key]).float().reshape(-1) for i in items]) if isinstance(output, list) \
            else torch.as_tensor(output[pred_key]).float()
        labels = torch.cat([torch.as_tensor(i[label_key]).reshape(-1) for i in items]).long()
        # label-scarce training: items with a hidden label (-1) are not scored
        keep = labels >= 0
        if not bool(keep.all()):
            preds, labels = preds[keep], labels[keep]
        if one_hot is not None:
            labels = torch.nn.functional.one_hot(labels, one_hot).float()
        return preds, labels

    return transform
