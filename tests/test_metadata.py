"""metadata.json: valid against the schema and carrying measured figures, not placeholders."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from bundle_helpers import bundle_variants
from monai.bundle import verify_metadata

REPO = Path(__file__).resolve().parents[1]
BUNDLES = ["rd_classification_2d", "rd_classification_3d", "rd_segmentation_2d", "rd_segmentation_3d"]
spec = importlib.util.spec_from_file_location("update_metadata", REPO / "scripts" / "update_metadata.py")
update_metadata = importlib.util.module_from_spec(spec)
spec.loader.exec_module(update_metadata)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_is_valid_and_states_measured_test_figures(bundle, tmp_path):
    meta_file = bundle_variants.metadata_file(bundle)
    verify_metadata(meta_file=str(meta_file), filepath=str(REPO / "bundles" / "schema" / "meta_schema.json"))
    figures = json.loads(meta_file.read_text())["eval_metrics"]
    assert figures["split"] == "test" and figures["num_samples"] > 0
    if "segmentation" in bundle:
        assert 0.0 < figures["mean_dice"] <= 1.0 and figures["hd95_voxels"] >= 0.0
        assert all(0.0 <= d <= 1.0 for d in figures["dice_per_foreground_class"].values())
        return
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


def test_update_metadata_reads_a_segmentation_evaluation(tmp_path):
    (tmp_path / "metrics.csv").write_text("test_mean_dice,0.61234\ntest_hd95,7.5\n")
    (tmp_path / "test_mean_dice_summary.csv").write_text("class,mean,median\nclass0,0.5,0.5\nclass1,0.7,0.7\nmean,0.6,0.6\n")
    (tmp_path / "test_mean_dice_raw.csv").write_text("filename,class0,class1,mean\na,0.5,0.7,0.6\nb,0.5,0.7,0.6\n")
    assert update_metadata.eval_metrics(tmp_path / "metrics.csv") == {
        "mean_dice": 0.6123, "hd95_voxels": 7.5, "dice_per_foreground_class": {"class0": 0.5, "class1": 0.7},
        "split": "test", "num_samples": 2}
    (tmp_path / "metrics.csv").write_text("val_mean_dice,0.6\n")
    with pytest.raises(KeyError, match="test_mean_dice"):
        update_metadata.eval_metrics(tmp_path / "metrics.csv")
