"""The registered student as an MLflow pyfunc model that answers with class names and probabilities.

MLflow logs this file as "model from code" (``mlflow.pyfunc.log_model(python_model=<this
file>)``): loading the model runs this short, readable file and ``torch.jit.load`` on the
exported ``model.ts``; no pickled object is ever deserialised. It needs torch, numpy and pandas
only, not ``rd_components``, so a served model does not depend on this package.

Input: a float32 array ``(N, C, *spatial)`` (the bundle's patch size, intensities 0..1).
Output: a DataFrame with ``predicted_class`` (a class name) and one ``prob_<class name>``
column per class, the softmax of the student's logits.
"""

from __future__ import annotations

import json
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import torch
from mlflow.pyfunc import PythonModel


class ServedStudent(PythonModel):
    """TorchScript student (``artifacts["model"]``) with the class names of ``artifacts["model_info"]``."""

    def load_context(self, context: Any) -> None:
        """Load ``model.ts`` on CPU and the class names from ``model_info.json``."""
        self.model = torch.jit.load(context.artifacts["model"], map_location="cpu").eval()
        with open(context.artifacts["model_info"]) as file:
            self.class_names = list(json.load(file)["class_names"])

    def predict(self, context: Any, model_input: Any, params: dict | None = None) -> pd.DataFrame:
        """``(N, C, *spatial)`` float array -> DataFrame ``(N, 1 + K)``: class name and probabilities."""
        images = torch.as_tensor(np.asarray(model_input, dtype=np.float32))
        with torch.no_grad():
            probs = torch.softmax(self.model(images).float(), dim=1).numpy()
        table = pd.DataFrame(probs, columns=[f"prob_{name}" for name in self.class_names])
        table.insert(0, "predicted_class", [self.class_names[i] for i in probs.argmax(axis=1)])
        return table


mlflow.models.set_model(ServedStudent())
