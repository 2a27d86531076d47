"""Random choice among a fixed set of views, so augmented training can still use the feature cache."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Flip, MapTransform, Randomizable

__all__ = ["FixedViewsd", "flip_view_axes"]


def flip_view_axes(view: int) -> tuple[int, ...]:
    """Spatial axes flipped in ``view``: bit ``a`` of the view index is a flip along spatial axis ``a``."""
    return tuple(axis for axis in range(8) if (int(view) >> axis) & 1)


class FixedViewsd(Randomizable, MapTransform):
    """Flip each item along a random subset of ``flip_axes`` and record which subset as ``view``.

    Random left-right flips are the augmentation the bundles use. Drawn per item, they only
    produce ``2 ** len(flip_axes)`` distinct teacher inputs, so the teacher feature cache can
    hold every view and stay valid: the view index goes into the cache key. The index is a bit
    mask over *spatial* axes (bit ``a`` set: flipped along spatial axis ``a``), so it means the
    same image whatever ``flip_axes`` a run uses; view 0 is the unflipped item, the same entry
    as a run without augmentation.

    Args:
        keys: keys of the images to flip, each ``(C, *spatial)``.
        flip_axes: spatial axes that may be flipped, each with probability ``prob``.
        prob: flip probability per axis.
        view_key: key that receives the view index (an ``int``).

    Shapes:
        images ``(C, *spatial)`` -> same shape; adds ``view_key: int``.
    """

    def __init__(
        self,
        keys: KeysCollection = ("image",),
        flip_axes: Sequence[int] = (0,),
        prob: float = 0.5,
        view_key: str = "view",
    ) -> None:
        MapTransform.__init__(self, keys)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"FixedViewsd: prob must be in [0, 1], got {prob}.")
        self.flip_axes = tuple(int(a) for a in flip_axes)
        if any(a < 0 for a in self.flip_axes):
            raise ValueError(f"FixedViewsd: flip_axes must be non-negative spatial axes, got {flip_axes}.")
        self.prob = prob
        self.view_key = view_key
        self._view = 0

    def randomize(self, data: Any = None) -> None:
        self._view = 0
        for axis in self.flip_axes:
            if self.R.rand() < self.prob:
                self._view |= 1 << axis

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        self.randomize()
        axes = flip_view_axes(self._view)
        for key in self.key_iterator(d):
            if axes:
                flipped = Flip(spatial_axis=list(axes))(d[key])
                # keep the input's type: a batch must not mix MetaTensors and plain tensors
                d[key] = flipped if isinstance(d[key], MetaTensor) else flipped.as_tensor()
        d[self.view_key] = self._view
        return d
