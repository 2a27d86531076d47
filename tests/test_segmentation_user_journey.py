"""A user's Medical Segmentation Decathlon folder, end to end with ``--dataset_dir`` and no other data
option: DRD trains, is killed and resumed into the run an uninterrupted training gives, evaluates on
the split it saved, segments the folder's test images, and its registered student answers a REST
request with a label map. Nothing is written inside the user's folder."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from bundle_helpers import REPO, bundle_configs, run_bundle
from test_mlflow_server import _free_port, _stop
from test_resume import _kill_after_epoch, _last_per_step, _run_metrics
from test_segmentation_serving import _post_when_served
from test_segmentation_user_data import NAMES, _listing, _msd

BUNDLE = "rd_segmentation_2d"


@pytest.mark.slow
def test_msd_folder_trains_resumes_evaluates_infers_and_serves(tmp_path, monkeypatch):
    import test_resume

    monkeypatch.setattr(test_resume, "BUNDLE", BUNDLE)  # _kill_after_epoch trains this variant
    data = _msd(tmp_path / "Task09_Tiny", n=4)
    before = _listing(data)
    common = dict(dataset_dir=str(data), patch_size=32, num_train_patches=8, batch_size=4, epochs=2, num_workers=0)

    def folders(name: str) -> dict:
        return {"output_dir": str(tmp_path / name / "eval"), "ckpt_dir": str(tmp_path / name / "models"),
                "experiment_name": name, "registered_model_name": f"{name}_student"}

    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **common, **folders("uninterrupted"))
    resumed = {**common, **folders("msd"), "resume": True}
    checkpoint = tmp_path / "msd" / "models" / "resume.pt"
    assert _kill_after_epoch(resumed, checkpoint, epoch=1) == 1
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **resumed)

    client, runs = _run_metrics(tmp_path / "msd", "msd")
    ref_client, (ref_run,) = _run_metrics(tmp_path / "uninterrupted", "uninterrupted")
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    for key in ("train_loss", "val_mean_dice", "teacher_val_mean_dice"):
        got, want = (_last_per_step(c, r.info.run_id, key) for c, r in ((client, runs[0]), (ref_client, ref_run)))
        assert sorted(got) == [1, 2] and all(abs(got[s] - want[s]) <= 1e-6 for s in want), key
    models = tmp_path / "msd" / "models"
    for name, tensor in torch.load(tmp_path / "uninterrupted" / "models" / "model.pt", weights_only=True).items():
        torch.testing.assert_close(torch.load(models / "model.pt", weights_only=True)[name], tensor, rtol=0, atol=1e-6)
    assert json.loads((models / "model_info.json").read_text())["class_names"] == NAMES

    # evaluation on the split training saved, with the same data option only
    run_bundle("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml"), REPO, run_name="test",
               **{**common, **folders("msd")})
    metrics = dict(csv.reader(open(tmp_path / "msd" / "eval" / "test" / "metrics.csv")))
    assert 0.0 <= float(metrics["test_mean_dice"]) <= 1.0

    # the folder's own test images (imagesTs), segmented on their own grid
    predictions = tmp_path / "predictions"
    run_bundle("inferring", bundle_configs(BUNDLE, "inference.yaml"), REPO, ckpt_dir=str(models),
               input_dir=str(data / "imagesTs"), output_dir=str(predictions))
    (row,) = list(csv.DictReader(open(predictions / "segmentations.csv")))
    assert row["file"] == "case_100.nii.gz" and not row["error"] and (predictions / row["output"]).is_file()

    # the registered student over REST: a label map and one probability map per class
    port, log = _free_port(), tmp_path / "serve.log"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'msd' / 'eval' / 'mlruns.db'}"}
    serve = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                              "models:/msd_student/1", "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)],
                             env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        image = np.random.default_rng(0).random((1, 1, 40, 36)).astype(np.float32)
        answer = _post_when_served(port, json.dumps({"inputs": image.tolist()}).encode(), serve, log)
    finally:
        _stop(serve)
    assert np.asarray(answer["label_map"]).shape == (1, 40, 36)
    probabilities = np.stack([np.asarray(answer[f"prob_{name}"]) for name in NAMES], axis=1)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert _listing(data) == before  # nothing written inside the user's folder


def _forms(root: Path) -> dict[str, Path]:
    """The same three labelled volumes as a decathlon datalist, a CSV of pairs, and a CSV whose first
    image is a DICOM series folder; the user's data is the file given to --dataset_dir."""
    from rd_components.data.writers import DicomPatchWriter
    from test_segmentation_user_data import AFFINE, _pair

    data = _msd(root, n=4, test=False)
    pairs = [(f"imagesTr/case_{i:03d}.nii.gz", f"labelsTr/case_{i:03d}.nii.gz") for i in range(4)]
    (data / "pairs.json").write_text(json.dumps({"labels": {str(i): n for i, n in enumerate(NAMES)},
                                                 "training": [{"image": a, "label": b} for a, b in pairs]}))
    (data / "pairs.csv").write_text("image,label\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    image, _ = _pair(0)
    series = np.rint(image / image.max() * 4095).astype(np.uint16)
    DicomPatchWriter(image.shape[:2], (1.5, 1.5, 2.0), "journey", "user").write_3d(data / "series", series, AFFINE, "case")
    dicom = [("series", pairs[0][1]), *pairs[1:]]
    (data / "dicom").mkdir()
    (data / "dicom" / "pairs.csv").write_text("image,label\n" + "".join(f"../{a},../{b}\n" for a, b in dicom))
    return {"datalist": data / "pairs.json", "csv": data / "pairs.csv", "dicom": data / "dicom" / "pairs.csv"}


@pytest.mark.slow
def test_datalist_csv_and_dicom_series_train_evaluate_and_infer_with_dataset_dir_only(tmp_path):
    """The other forms segmentation data comes in take the same path as the MSD folder above."""
    forms = _forms(tmp_path / "user")
    before = _listing(tmp_path / "user")
    for form, source in forms.items():
        out = {"output_dir": str(tmp_path / form / "eval"), "ckpt_dir": str(tmp_path / form / "models"),
               "dataset_dir": str(source), "patch_size": 32, "num_train_patches": 8, "batch_size": 4, "num_workers": 0}
        run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, epochs=1, experiment_name=form, **out)
        info = json.loads((tmp_path / form / "models" / "model_info.json").read_text())
        assert info["spatial_dims"] == 2 and len(info["class_names"]) == 3, form
        run_bundle("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml"), REPO, run_name="test",
                   experiment_name=form, **out)
        metrics = dict(csv.reader(open(tmp_path / form / "eval" / "test" / "metrics.csv")))
        assert 0.0 <= float(metrics["test_mean_dice"]) <= 1.0, form
    # a DICOM series in, a NIfTI label map and a DICOM SEG out
    predictions = tmp_path / "predictions"
    run_bundle("inferring", bundle_configs(BUNDLE, "inference.yaml"), REPO, ckpt_dir=str(tmp_path / "dicom" / "models"),
               input_dir=str(tmp_path / "user" / "series"), output_dir=str(predictions))
    (row,) = list(csv.DictReader(open(predictions / "segmentations.csv")))
    assert not row["error"] and row["output"] and row["dicom_seg"], row
    assert _listing(tmp_path / "user") == before
