"""metadata.json: valid against the schema and carrying measured figures, not placeholders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from monai.bundle import verify_metadata

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ["rd_classification_2d", "rd_classification_3d"]
spec = importlib.util.spec_from_file_location("update_metadata", REPO / "scripts" / "update_metadata.py")
update_metadata = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_metadata)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_is_valid_and_states_measured_test_figures(bundle, tmp_path):
    meta_file = REPO / "bundles" / bundle / "configs" / "metadata.json"
    verify_metadata(meta_file=str(meta_file), filepath=str(REPO / "bundles" / "schema" / "meta_schema.json"))
    figures = json.loads(meta_file.read_text())["eval_metrics"]
    assert figures["split"] == "test" and figures["num_samples"] > 0
    for key in ("accuracy", "macro_auc", "macro_f1"):
        assert 0.0 < figures[key] <= 1.0, (key, figures[key])


def test_update_metadata_copies_the_evaluation(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"split": "test", "num_samples": 12,
                                   "metrics": {"test_accuracy": 0.75, "test_auc": 0.9, "test_macro_f1": 0.7, "other": 1.0}}))
    assert update_metadata.eval_metrics(metrics) == {"accuracy": 0.75, "macro_auc": 0.9, "macro_f1": 0.7,
                                                      "split": "test", "num_samples": 12}
    metrics.write_text(json.dumps({"split": "test", "metrics": {"val_accuracy": 0.75}}))
    with pytest.raises(KeyError, match="test_accuracy"):
        update_metadata.eval_metrics(metrics)
