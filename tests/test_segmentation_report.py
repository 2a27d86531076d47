"""Segmentation validation reports: per-class Dice / HD95 per epoch, curves and an overlay PNG."""

from __future__ import annotations

import json

import numpy as np
import torch
from monai.data import DataLoader
from monai.engines import SupervisedEvaluator
from monai.transforms import AsDiscreted

from rd_components.handlers import SegmentationReportHandler

NAMES = ["background", "grey matter", "white matter"]


class _Oracle(torch.nn.Module):
    """Predicts the label map it is given in the image's second channel-free copy: perfect on
    class 1, class 2 predicted as background (so its Dice is 0)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        labels = x[:, 0].round().long().clamp(0, 2)
        labels = torch.where(labels == 2, torch.zeros_like(labels), labels)
        return torch.nn.functional.one_hot(labels, 3).movedim(-1, 1).float() * 10


def _data(n: int = 4) -> list[dict]:
    rng = np.random.default_rng(0)
    items = []
    for _ in range(n):
        label = np.zeros((1, 16, 16), dtype=np.float32)
        label[0, 2:8, 2:8] = 1
        label[0, 9:14, 9:14] = 2
        items.append({"image": torch.as_tensor(label + rng.normal(0, 0.01, label.shape).astype(np.float32)),
                      "label": torch.as_tensor(label)})
    return items


def test_per_class_dice_and_hd95_reach_the_metrics_and_the_report(tmp_path):
    report = SegmentationReportHandler(tmp_path / "report", NAMES)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(_data(), batch_size=2), network=_Oracle(),
        postprocessing=AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=3), val_handlers=[report])
    for epoch in (1, 2):
        evaluator.run(epoch)
    metrics = evaluator.state.metrics
    assert metrics["val_dice_grey_matter"] == 1.0 and metrics["val_hd95_grey_matter"] == 0.0
    assert metrics["val_dice_white_matter"] == 0.0  # never predicted
    assert np.isnan(metrics["val_hd95_white_matter"])  # no predicted surface: no distance
    history = json.loads((tmp_path / "report" / "segmentation_history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    files = sorted(p.name for p in (tmp_path / "report").iterdir())
    assert files == ["overlay_epoch_001.png", "overlay_epoch_002.png", "segmentation_curves.png",
                     "segmentation_history.json"]
    # resumed: the history comes back with the checkpoint
    restored = SegmentationReportHandler(tmp_path / "other", NAMES)
    restored.load_state_dict(report.state_dict())
    assert json.dumps(restored.history) == json.dumps(history)  # NaN (a class never predicted) compares unequal


def test_a_disabled_report_writes_nothing(tmp_path):
    report = SegmentationReportHandler(tmp_path / "report", NAMES, enabled=False)
    evaluator = SupervisedEvaluator(
        device=torch.device("cpu"), val_data_loader=DataLoader(_data(2), batch_size=2), network=_Oracle(),
        postprocessing=AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=3), val_handlers=[report])
    evaluator.run()
    assert not (tmp_path / "report").exists() and "val_dice_grey_matter" not in evaluator.state.metrics


def test_the_report_runs_no_collective_operation(tmp_path, monkeypatch):
    """The report runs on rank 0 only: with torch.distributed initialised, a gather in it (MONAI's cumulative
    metrics do one) waits for the other ranks forever (a torchrun segmentation run hung). The handler is driven
    here with torch.distributed reporting itself initialised and every collective failing."""
    from types import SimpleNamespace

    import torch.distributed as dist

    def collective(*args, **kwargs):
        raise AssertionError("collective operation in a rank-0-only handler")

    for name in ("all_gather", "all_gather_object", "all_reduce", "broadcast", "barrier"):
        monkeypatch.setattr(dist, name, collective)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_world_size", lambda *a, **k: 2)
    post = AsDiscreted(keys=["pred", "label"], argmax=[True, False], to_onehot=3)
    items = [post({"image": d["image"], "label": d["label"], "pred": _Oracle()(d["image"][None])[0]}) for d in _data(2)]
    engine = SimpleNamespace(state=SimpleNamespace(output=items, metrics={}, epoch=1))
    report = SegmentationReportHandler(tmp_path / "report", NAMES)
    report._reset(engine)
    report._collect(engine)
    report._report(engine)
    assert engine.state.metrics["val_dice_grey_matter"] == 1.0
