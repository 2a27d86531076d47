"""No silent wrong result in the outputs: unique output names, streamed predictions, atomic writes.

The inference bundles run in-process from their generated configs with a tiny TorchScript model
written into a temporary ``models`` folder, so each test takes seconds.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_helpers import bundle_files, parse_bundle
from ignite.engine import Engine
from monai.bundle import ConfigParser
from torch import nn


def _tiny_model_dir(folder: Path, network: nn.Module, **model_info) -> Path:
    """``folder/model.ts`` (scripted ``network``) and ``folder/model_info.json``, as training exports them."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(network.eval()), str(folder / "model.ts"))
    (folder / "model_info.json").write_text(json.dumps(model_info))
    return folder


def _inference(bundle: str, models: Path, inputs: Path, out: Path, **overrides) -> ConfigParser:
    """The variant's inference configs with the model, input and output folders given."""
    return parse_bundle(bundle, "inference.yaml", ckpt_dir=str(models), input_dir=str(inputs), output_dir=str(out),
                        **overrides)


def _volume(path: Path, shape: tuple[int, int, int], seed: int) -> None:
    data = np.random.default_rng(seed).random(shape).astype(np.float32) + 0.1
    nib.save(nib.Nifti1Image(data, np.diag([2.0, 2.0, 2.0, 1.0])), str(path))


def test_colliding_input_names_get_distinct_label_maps(tmp_path, caplog):
    """``a.nii``, ``a.nii.gz`` and the DICOM series folder ``a/`` all used to write ``a_seg.nii.gz``
    (the last one won): each now gets its own label map on its own grid, the CSV maps input to
    output, and one log line lists the renamed outputs."""
    from rd_components.data.writers import DicomPatchWriter

    models = _tiny_model_dir(tmp_path / "models", nn.Conv3d(1, 2, 1), patch_size=8, class_names=["background", "tissue"],
                             spatial_dims=3)
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    shapes = {"a.nii": (8, 8, 8), "a.nii.gz": (9, 8, 8), "a/": (8, 8, 6)}
    _volume(inputs / "a.nii", shapes["a.nii"], 0)
    _volume(inputs / "a.nii.gz", shapes["a.nii.gz"], 1)
    series = np.random.default_rng(2).integers(1, 4000, shapes["a/"]).astype(np.uint16)
    DicomPatchWriter(shapes["a/"][:2], (2.0, 2.0, 2.0), "collision-test", "a").write_3d(inputs / "a", series, np.diag([2.0, 2.0, 2.0, 1.0]), "a")
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO):
        _inference("rd_segmentation_3d", models, inputs, out).get_parsed_content("evaluator").run()

    rows = {r["file"]: r for r in csv.DictReader(open(out / "segmentations.csv"))}
    assert set(rows) == set(shapes) and not any(r["error"] for r in rows.values())
    outputs = [rows[f]["output"] for f in shapes]
    assert len(set(outputs)) == 3, outputs
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(outputs)
    for file, shape in shapes.items():  # each label map is its own input's, not a later input's
        labels = nib.as_closest_canonical(nib.load(str(out / rows[file]["output"])))
        assert sorted(labels.shape) == sorted(shape), (file, labels.shape)
    assert rows["a/"]["dicom_seg"] and (out / rows["a/"]["dicom_seg"]).is_file()
    [renamed] = [r.getMessage() for r in caplog.records if "renamed" in r.getMessage()]
    assert "a.nii.gz" in renamed and "a/" in renamed


def _tiny_2d_inputs(folder: Path, n: int) -> list[str]:
    folder.mkdir()
    names = [f"case_{i}.nii.gz" for i in range(n)]
    for i, name in enumerate(names):
        data = np.random.default_rng(i).random((16, 16)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), str(folder / name))
    return names


def _classifier() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def test_a_crash_keeps_the_predictions_made_so_far(tmp_path, monkeypatch):
    """``predictions.csv`` was written only at the end: a crash after some inputs lost every row.
    Rows are now appended as they are predicted; a complete run still writes the sorted file."""
    from rd_components.data import inference

    models = _tiny_model_dir(tmp_path / "models", _classifier(), patch_size=[16, 16], class_names=["a", "b"], spatial_dims=2)
    names = _tiny_2d_inputs(tmp_path / "inputs", 5)

    complete = tmp_path / "complete"
    _inference("rd_classification_2d", models, tmp_path / "inputs", complete, batch_size=2).get_parsed_content("evaluator").run()
    expected = list(csv.DictReader(open(complete / "predictions.csv")))
    assert [r["file"] for r in expected] == names and all(r["predicted_label"] for r in expected)

    real = inference.SafeInferenceDataset.__getitem__

    def dies_at_the_fourth_input(self, index):
        if index == 3:
            raise RuntimeError("killed")
        return real(self, index)

    monkeypatch.setattr(inference.SafeInferenceDataset, "__getitem__", dies_at_the_fourth_input)
    crashed = tmp_path / "crashed"
    evaluator = _inference("rd_classification_2d", models, tmp_path / "inputs", crashed, batch_size=1).get_parsed_content("evaluator")
    with pytest.raises(RuntimeError, match="killed"):
        evaluator.run()
    rows = list(csv.DictReader(open(crashed / "predictions.csv")))
    assert rows == expected[:3]  # the three predicted before the crash, as the complete run has them


def _saver_block(bundle: str, filename: str) -> dict:
    """The handler block of the variant's training configs that keeps ``filename``."""
    config = ConfigParser.load_config_files(bundle_files(bundle, "train.yaml"))
    [block] = [h for h in config.values() if isinstance(h, dict) and h.get("key_metric_filename") == filename]
    return block


@pytest.mark.parametrize("bundle", ["rd_classification_2d", "rd_segmentation_3d"])
def test_interrupted_checkpoint_save_keeps_the_previous_model(bundle, tmp_path, monkeypatch):
    """MONAI's ``CheckpointSaver`` deletes ``model.pt`` and then writes the new one in place: a run
    killed in between left no model or half a file. The bundles' saver now replaces it atomically."""
    block = {k: v for k, v in _saver_block(bundle, "model.pt").items() if k != "_disabled_"}
    config = {"net": {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2},
              "saver": {**block, "save_dir": str(tmp_path), "save_dict": {"model": "@net"}, "key_metric_name": "score"}}
    parser = ConfigParser(config)
    net, saver = parser.get_parsed_content("net"), parser.get_parsed_content("saver")
    engine = Engine(lambda e, b: None)
    engine.state.metrics = {"score": 0.5}
    saver.metrics_completed(engine)
    first = {k: v.clone() for k, v in net.state_dict().items()}

    def dies_half_way(obj, f, *args, **kwargs):
        handle = open(f, "wb") if isinstance(f, (str, Path)) else f
        handle.write(b"half a checkpoint")
        handle.flush()
        raise RuntimeError("killed while saving")

    with torch.no_grad():
        net.weight.add_(1.0)
    engine.state.metrics = {"score": 0.9}
    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(RuntimeError, match="killed"):
        saver.metrics_completed(engine)
    monkeypatch.undo()
    kept = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True)
    assert all(torch.equal(kept[k], first[k]) for k in first)
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]  # no temporary file left


def test_interrupted_export_keeps_the_previous_torchscript_and_model_info(tmp_path, monkeypatch):
    """``model.ts`` and ``model_info.json`` were written in place: a failure half way left a broken file."""
    from rd_components.handlers import StudentExportHandler

    exporter = StudentExportHandler(nn.Linear(3, 2), tmp_path, (1, 3), model_info={"class_names": ["a", "b"]})
    exporter()
    before = {name: (tmp_path / name).read_bytes() for name in ("model.ts", "model_info.json")}

    def dies_half_way(module, f, *args, **kwargs):
        Path(f).write_bytes(b"half a model")
        raise RuntimeError("killed while saving")

    monkeypatch.setattr(torch.jit, "save", dies_half_way)
    with pytest.raises(RuntimeError, match="killed"):
        exporter()
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt", "model.ts", "model_info.json"]


def test_atomic_write_never_leaves_a_partial_target(tmp_path):
    """A writer failing half way leaves the previous file (or none) and no temporary file."""
    from rd_components.atomic import atomic_write, atomic_write_text

    target = tmp_path / "metrics.json"
    atomic_write_text(target, '{"old": 1}')

    def half_then_fail(path: Path) -> None:
        path.write_text('{"new": ')
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == '{"old": 1}'
    with pytest.raises(OSError, match="disk full"):
        atomic_write(tmp_path / "new.json", half_then_fail)
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    # the temporary file keeps the destination's extension: nibabel picks the format from it
    atomic_write(tmp_path / "labels.nii.gz", lambda p: nib.save(nib.Nifti1Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)), str(p)))
    assert (tmp_path / "labels.nii.gz").read_bytes()[:2] == b"\x1f\x8b"  # gzip


def test_each_series_of_a_mixed_dicom_folder_gets_its_own_dicom_seg(tmp_path):
    """A folder holding two series gives two volumes; each gets a DICOM SEG that references its own
    series' images (it used to get none, silently: its source was a file list, not a folder)."""
    import pydicom
    from test_integrity_inputs import _series

    models = _tiny_model_dir(tmp_path / "models", nn.Conv3d(1, 2, 1), patch_size=8, class_names=["background", "tissue"],
                             spatial_dims=3)
    inputs = tmp_path / "inputs"
    uids = {_series(inputs / "p", [0.0, 2.0, 4.0, 6.0], number=3, base=1500, prefix="a"),
            _series(inputs / "p", [0.0, 2.0, 4.0, 6.0], number=7, base=1600, prefix="b")}
    out = tmp_path / "out"
    _inference("rd_segmentation_3d", models, inputs, out).get_parsed_content("evaluator").run()

    rows = {r["file"]: r for r in csv.DictReader(open(out / "segmentations.csv"))}
    assert set(rows) == {"p/series_3", "p/series_7"} and not any(r["error"] for r in rows.values())
    referenced = set()
    for row in rows.values():
        assert row["dicom_seg"], row
        seg = pydicom.dcmread(out / row["dicom_seg"])
        (reference,) = seg.ReferencedSeriesSequence
        referenced.add(reference.SeriesInstanceUID)
        assert len(reference.ReferencedInstanceSequence) == 4  # this series' four slices, not all eight
    assert referenced == uids
