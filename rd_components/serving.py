"""The registered student as an MLflow pyfunc model: class probabilities, or a label map per image.

MLflow logs this file as "model from code" (``mlflow.pyfunc.log_model(python_model=<this
file>)``): loading the model runs this short, readable file and ``torch.jit.load`` on the
exported ``model.ts``; no pickled object is ever deserialised. It needs torch, numpy and pandas
only, not ``rd_components``, so a served model does not depend on this package.

Input: a float32 array ``(N, C, *spatial)`` (intensities 0..1, as in training).

- Classification (``model_info.json`` without ``task_kind``, or ``classification``): the
  bundle's patch size; the output is a DataFrame with ``predicted_class`` (a class name) and
  one ``prob_<class name>`` column per class, the softmax of the student's logits.
- Segmentation (``task_kind: segmentation``): any spatial size; an input larger than the
  training patch is segmented in windows of the patch (a quarter overlap, logits averaged), as
  the inference bundle does. The output is a dict of arrays: ``label_map`` ``(N, *spatial)``
  int64 class indices (positions in ``model_info.json``'s ``class_names``) and one
  ``prob_<class name>`` ``(N, *spatial)`` float32 softmax map per class. ``mlflow models
  serve`` answers ``{"predictions": {"label_map": [...], "prob_<class>": [...]}}``, nested lists.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel

WINDOW_OVERLAP = 0.25


def window_starts(size: int, window: int, overlap: float = WINDOW_OVERLAP) -> list[int]:
    """First index of each window of ``window`` along an axis of ``size`` (the last one ends at ``size``)."""
    if size <= window:
        return [0]
    stride = max(1, int(window * (1 - overlap)))
    return [*range(0, size - window, stride), size - window]


def windowed_logits(model: Any, images: torch.Tensor, window: Sequence[int]) -> torch.Tensor:
    """``(N, C, *spatial)`` -> logits ``(N, K, *spatial)``: ``model`` on windows of ``window`` (clipped to
    the input), overlapping logits averaged; one call when the input fits one window."""
    spatial = tuple(images.shape[2:])
    window = [min(int(w), s) for w, s in zip(window, spatial)]
    logits, counts = None, torch.zeros(spatial)
    for corner in itertools.product(*(window_starts(s, w) for s, w in zip(spatial, window))):
        region = tuple(slice(c, c + w) for c, w in zip(corner, window))
        out = model(images[(slice(None), slice(None), *region)]).float()
        if logits is None:
            logits = out.new_zeros((images.shape[0], out.shape[1], *spatial))
        logits[(slice(None), slice(None), *region)] += out
        counts[region] += 1
    return logits / counts


class ServedStudent(PythonModel):
    """TorchScript student (``artifacts["model"]``) with the facts of ``artifacts["model_info"]`` (class
    names, task kind, training input shape)."""

    def load_context(self, context: Any) -> None:
        """Load ``model.ts`` on CPU and the class names, task kind and patch from ``model_info.json``."""
        self.model = torch.jit.load(context.artifacts["model"], map_location="cpu").eval()
        with open(context.artifacts["model_info"]) as file:
            info = json.load(file)
        self.class_names = list(info["class_names"])
        self.segmentation = info.get("task_kind", "classification") == "segmentation"
        self.window = list(info.get("input_shape", [])[2:])

    def predict(self, context: Any, model_input: Any, params: dict | None = None) -> pd.DataFrame | dict[str, np.ndarray]:
        """``(N, C, *spatial)`` float array -> classification: DataFrame ``(N, 1 + K)`` of the class name and
        probabilities; segmentation: ``{"label_map": (N, *spatial), "prob_<class>": (N, *spatial)}``."""
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            if self.segmentation:
                probs = torch.softmax(windowed_logits(self.model, images, self.window or images.shape[2:]), dim=1)
                return {"label_map": probs.argmax(dim=1).numpy(),
                        **{f"prob_{name}": probs[:, k].numpy() for k, name in enumerate(self.class_names)}}
            probs = torch.softmax(self.model(images).float(), dim=1).numpy()
        table = pd.DataFrame(probs, columns=[f"prob_{name}" for name in self.class_names])
        table.insert(0, "predicted_class", [self.class_names[i] for i in probs.argmax(axis=1)])
        return table


mlflow.models.set_model(ServedStudent())
