"""Centered Kernel Alignment (CKA) between two batches of representations.

References:
    Kornblith et al., "Similarity of Neural Network Representations Revisited", ICML 2019
    (and its demo notebook, whose ``gram_rbf`` / ``center_gram`` / ``cka`` we follow).
    Song et al., "Supervised Feature Selection via Dependence Estimation", ICML 2007
    (unbiased HSIC estimator).
"""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch
from torch import nn

__all__ = ["cka", "CKALoss"]

_KERNELS = ("linear", "rbf")


def autocast_disabled(device_type: str) -> ContextManager:
    """Context in which autocast is off for ``device_type``, so float32 math stays float32.

    A no-op for device types without autocast support.
    """
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return contextlib.nullcontext()


def _compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    # Half precision loses too much in the n x n gram sums; float64 stays float64.
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _prepare(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Flatten ``(n, ...)`` to ``(n, p)``, center the columns and bring to unit max-abs scale.

    Centering the features first avoids the cancellation of ``X X^T`` centred afterwards
    (features with a large common offset). The scale is detached: CKA (linear, and RBF with
    a median bandwidth) is invariant to isotropic scaling, so dividing by a constant changes
    neither the value nor the gradient, but it keeps sums of squares far from float32
    overflow and underflow.
    """
    x = x.reshape(x.shape[0], -1).to(dtype)
    x = x - x.mean(dim=0, keepdim=True)
    scale = x.detach().abs().amax().clamp_min(torch.finfo(dtype).tiny)
    return x / scale


def _median(values: torch.Tensor) -> torch.Tensor:
    """Median of all elements, averaging the two middle ones for an even count (as numpy)."""
    flat = values.reshape(-1)
    m = flat.numel()
    upper = torch.kthvalue(flat, m // 2 + 1).values
    if m % 2:
        return upper
    lower = torch.kthvalue(flat, m // 2).values
    return 0.5 * (lower + upper)


def _gram(x: torch.Tensor, kernel: str, threshold: float, eps: float) -> torch.Tensor:
    """Gram matrix ``(n, n)`` of features ``x`` ``(n, p)``."""
    dot = x @ x.T
    if kernel == "linear":
        return dot
    sq_norms = torch.diagonal(dot)
    # Rounding can make tiny distances negative; exp of a positive number would exceed 1.
    sq_dist = (sq_norms[:, None] + sq_norms[None, :] - 2.0 * dot).clamp_min(0.0)
    # As in Kornblith's gram_rbf: the median runs over all n^2 entries, diagonal included.
    # Clamped so that identical points (median 0) give a constant kernel, not 0/0.
    sq_median = _median(sq_dist).clamp_min(eps)
    return torch.exp(-sq_dist / (2.0 * threshold**2 * sq_median))


def _center_gram(gram: torch.Tensor, unbiased: bool) -> torch.Tensor:
    """Double-centre a symmetric gram matrix ``(n, n)``.

    ``unbiased=True`` is the U-centering of Kornblith's ``center_gram(unbiased=True)``: the
    Frobenius inner product of two U-centred grams is ``n (n - 3)`` times the unbiased HSIC of
    Song et al. 2007, and that factor cancels in CKA.
    """
    n = gram.shape[0]
    if unbiased:
        gram = gram - torch.diag_embed(torch.diagonal(gram))
        means = gram.sum(dim=0) / (n - 2)
        means = means - means.sum() / (2 * (n - 1))
    else:
        means = gram.mean(dim=0)
        means = means - means.mean() / 2
    gram = gram - means[:, None] - means[None, :]
    if unbiased:
        gram = gram - torch.diag_embed(torch.diagonal(gram))
    return gram


def _check_inputs(x: torch.Tensor, y: torch.Tensor, kernel: str, unbiased: bool, threshold: float) -> None:
    if kernel not in _KERNELS:
        raise ValueError(f"cka: kernel must be one of {_KERNELS}, got {kernel!r}.")
    if kernel == "rbf" and not threshold > 0:
        raise ValueError(f"cka: threshold must be > 0 for the rbf kernel, got {threshold}.")
    if x.ndim == 0 or y.ndim == 0:
        raise ValueError("cka: inputs must have a batch dimension, shape (n, ...).")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"cka: x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}.")
    n = x.shape[0]
    min_n = 4 if unbiased else 2
    if n < min_n:
        mode = "unbiased (debiased HSIC)" if unbiased else "biased"
        raise ValueError(f"cka: {mode} CKA needs a batch of at least {min_n} samples, got {n}.")


def cka(
    x: torch.Tensor,
    y: torch.Tensor,
    kernel: str = "linear",
    unbiased: bool = False,
    threshold: float = 1.0,
    eps: float = 1e-8,
) -> torch.Tensor:
    """Centered Kernel Alignment between two representations of the same ``n`` samples.

    Args:
        x: features ``(n, ...)``, flattened to ``(n, p)``.
        y: features ``(n, ...)``, flattened to ``(n, q)``; ``q`` may differ from ``p``.
        kernel: ``"linear"`` or ``"rbf"``. The RBF bandwidth squared is ``threshold**2`` times
            the median pairwise squared distance (Kornblith et al.).
        unbiased: use the unbiased HSIC estimator (Song et al. 2007), which needs ``n >= 4``
            and can make CKA slightly negative. Default: biased HSIC (needs ``n >= 2``).
        threshold: RBF bandwidth as a fraction of the median distance; ignored for linear.
        eps: lower bound of each gram norm in the denominator (and of the RBF median), so
            that constant features give 0 instead of NaN.

    Returns:
        0-dim tensor, float32 (float64 if an input is float64), differentiable w.r.t. both
        inputs. Computed in float32 or higher whatever the input dtype, autocast disabled.

    Raises:
        ValueError: unknown kernel, mismatched ``n``, or a batch too small for the estimator.
    """
    _check_inputs(x, y, kernel, unbiased, threshold)
    dtype = _compute_dtype(x, y)
    with autocast_disabled(x.device.type):
        gram_x = _center_gram(_gram(_prepare(x, dtype), kernel, threshold, eps), unbiased)
        gram_y = _center_gram(_gram(_prepare(y, dtype), kernel, threshold, eps), unbiased)
        hsic_xy = (gram_x * gram_y).sum()
        # vector_norm's backward is defined (0) at an all-zero gram; sqrt(sum of squares) is not.
        norm_x = torch.linalg.vector_norm(gram_x).clamp_min(eps)
        norm_y = torch.linalg.vector_norm(gram_y).clamp_min(eps)
        return hsic_xy / (norm_x * norm_y)


class CKALoss(nn.Module):
    """CKA distillation loss ``1 - cka(x, y)``, in ``[0, 1]`` for biased CKA.

    Args:
        kernel: ``"linear"`` or ``"rbf"``.
        unbiased: unbiased HSIC estimator (batch of at least 4).
        threshold: RBF bandwidth as a fraction of the median distance.
        eps: denominator guard, see :func:`cka`.

    The loss is computed over the whole batch (CKA compares the batch's sample-by-sample
    similarity structure), so there is no per-sample reduction.
    """

    def __init__(self, kernel: str = "linear", unbiased: bool = False, threshold: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        if kernel not in _KERNELS:
            raise ValueError(f"CKALoss: kernel must be one of {_KERNELS}, got {kernel!r}.")
        self.kernel = kernel
        self.unbiased = unbiased
        self.threshold = threshold
        self.eps = eps

    @property
    def min_batch_size(self) -> int:
        """Smallest batch for which the estimator is defined."""
        return 4 if self.unbiased else 2

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Args: x ``(n, ...)``, y ``(n, ...)``. Returns a 0-dim float32 (or float64) loss."""
        return 1.0 - cka(x, y, kernel=self.kernel, unbiased=self.unbiased, threshold=self.threshold, eps=self.eps)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, unbiased={self.unbiased}, threshold={self.threshold}"
