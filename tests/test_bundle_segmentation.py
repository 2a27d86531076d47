"""The DRD segmentation variants end to end at tiny size: train, export, evaluate on a held-out volume."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import mlflow
import pytest
from bundle_helpers import REPO, bundle_configs, copy_bundle, run_bundle


@pytest.mark.slow
# the 2D bundle trains and evaluates in test_compare_student_and_drd_... below, through compare.py
@pytest.mark.parametrize("bundle,patch,n_train", [("rd_segmentation_3d", 32, 8)])
def test_train_export_and_evaluate(bundle, patch, n_train, tmp_path):
    copy = copy_bundle(tmp_path / bundle)
    common = dict(dataset_dir=str(tmp_path / "data"), patch_size=patch, num_train_patches=n_train, batch_size=4)
    # every teacher term on every step: one epoch reads (and caches) every cube's stage maps; the
    # default (drd_every_3) reads them on one step in three, so its first epoch caches only those
    first = run_bundle("training", bundle_configs(bundle, "train.yaml", bundle=copy), copy, epochs=1, label_fraction=0.5,
                       hybrid_interval=1, cka_interval=1, **common)
    assert "building teacher" in first.stdout + first.stderr  # cold cache: the teacher is loaded
    models = copy / "models"
    assert (models / "model.pt").is_file() and (models / "model.ts").is_file()  # export checked against eager inside
    # inference resamples to the training grid recorded here (1 mm tissue cubes)
    assert json.loads((models / "model_info.json").read_text())["pixdim"] == [1.0, 1.0, 1.0]
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'eval' / 'mlruns.db'}")
    run = client.search_runs([client.get_experiment_by_name(bundle).experiment_id])[0]
    assert run.info.status == "FINISHED"
    assert 0.0 <= run.data.metrics["val_mean_dice"] <= 1.0
    assert int(run.data.params["num_train_labeled"]) == n_train // 2
    assert int(run.data.params["num_train_unlabeled"]) == n_train - n_train // 2
    for term in ("train_sup_student", "train_sup_hybrid", "train_kd", "train_cka"):
        assert term in run.data.metrics
    if bundle == "rd_segmentation_3d":  # where the teacher is heavy: a warm cache never builds it
        second = run_bundle("training", bundle_configs(bundle, "train.yaml", bundle=copy), copy, epochs=1, **common)
        assert "building teacher" not in second.stdout + second.stderr

    run_bundle("evaluating", bundle_configs(bundle, "train.yaml", "evaluate.yaml", bundle=copy), copy, **common)
    [eval_dir] = [p for p in (copy / "eval").iterdir() if p.name.startswith("evaluate-")]
    metrics = dict(csv.reader(open(eval_dir / "metrics.csv"), delimiter=","))
    assert 0.0 < float(metrics["test_mean_dice"]) <= 1.0 and float(metrics["test_hd95"]) >= 0.0
    rows = list(csv.DictReader(open(eval_dir / "test_mean_dice_raw.csv"), delimiter=","))
    assert rows and all("test" in r["filename"] for r in rows)  # whole held-out images, not patches
    if bundle == "rd_segmentation_3d":
        check_inference_writes_label_maps_on_the_input_grid(copy, tmp_path)


def check_inference_writes_label_maps_on_the_input_grid(copy, tmp_path):
    """inference.yaml on the held-out volume as NIfTI, a left-right flipped copy, the same volume as a
    DICOM series and a broken file: label maps on each input's grid (shape, affine) that agree in
    world space across the three encodings; the broken file reported in the CSV, not fatal."""
    import nibabel as nib
    import numpy as np

    from rd_components.data.writers import DicomPatchWriter

    datalist = json.loads((next((tmp_path / "data").rglob("datalist.json"))).read_text())
    [test] = datalist["test"]
    source = nib.load(str(next((tmp_path / "data").rglob("datalist.json")).parent / test["image"]))
    data, affine = np.asarray(source.dataobj, dtype=np.float32), source.affine
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    nib.save(nib.Nifti1Image(data, affine), str(inputs / "volume.nii.gz"))
    flipped_affine = affine.copy()
    flipped_affine[:, 0] *= -1
    flipped_affine[:3, 3] = affine[:3, 3] + affine[:3, 0] * (data.shape[0] - 1)
    nib.save(nib.Nifti1Image(data[::-1].copy(), flipped_affine), str(inputs / "flipped.nii.gz"))
    quantised = np.rint(data / max(float(data.max()), 1e-6) * 4095).astype(np.uint16)
    writer = DicomPatchWriter(data.shape[:2], tuple(float(v) for v in np.abs(np.diag(affine)[:3])), "test-seg", "test")
    writer.write_3d(inputs / "series", quantised, affine, "volume")
    (inputs / "broken.nii.gz").write_bytes(b"not a volume")
    out = tmp_path / "predictions"
    run_bundle("inferring", bundle_configs("rd_segmentation_3d", "inference.yaml", bundle=copy), copy, input_dir=str(inputs), output_dir=str(out))
    rows = {r["file"]: r for r in csv.DictReader(open(out / "segmentations.csv"))}
    assert rows["broken.nii.gz"]["error"] and not rows["broken.nii.gz"]["output"]
    maps = {}
    for name, expected_affine in (("volume", affine), ("flipped", flipped_affine)):
        written = nib.load(str(out / f"{name}_seg.nii.gz"))
        assert written.shape == data.shape and written.get_data_dtype() == np.uint8
        np.testing.assert_allclose(written.affine, expected_affine, atol=1e-4)  # the input's own affine
        maps[name] = np.asarray(written.dataobj)
    assert len(np.unique(maps["volume"])) > 1  # a segmentation, not a constant map
    np.testing.assert_array_equal(maps["flipped"][::-1], maps["volume"])  # the same anatomy, voxel for voxel
    # a DICOM series is read (MONAI's PydicomReader) with its own voxel order and a matching RAS
    # affine: brought to the closest canonical orientation, label map and affine equal the NIfTI's
    series = nib.as_closest_canonical(nib.load(str(out / "series_seg.nii.gz")))
    volume = nib.as_closest_canonical(nib.load(str(out / "volume_seg.nii.gz")))
    np.testing.assert_allclose(series.affine, volume.affine, atol=1e-3)
    # the series stores 12-bit intensities: a few boundary voxels may differ from the float NIfTI
    assert (np.asarray(series.dataobj) == np.asarray(volume.dataobj)).mean() > 0.99
    # ... and its DICOM SEG, readable by pydicom and highdicom, references the series and holds the same labels
    import highdicom
    import pydicom

    assert rows["series/"]["dicom_seg"] == "series_seg.dcm" and not rows["series/"]["note"]
    seg_file = out / "series_seg.dcm"
    assert pydicom.dcmread(seg_file).Modality == "SEG"
    seg = highdicom.seg.segread(seg_file)
    referenced = {ref.ReferencedSOPInstanceUID for item in seg.ReferencedSeriesSequence for ref in item.ReferencedInstanceSequence}
    assert referenced == {pydicom.dcmread(f).SOPInstanceUID for f in (inputs / "series").iterdir()}
    # frame by frame against the NIfTI input's label map: file k of the series is slice k of the
    # volume, its pixel grid the slice's under the layout the writer used (found from the intensities)
    flips = [lambda a: a, lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1]]
    layouts = [lambda a, f=f: f(a) for f in flips] + [lambda a, f=f: f(a.T) for f in flips]
    agreement = []
    for k in range(data.shape[2]):
        ds = pydicom.dcmread(inputs / "series" / f"{k:03d}.dcm")
        [layout] = [f for f in layouts if f(quantised[:, :, k]).shape == ds.pixel_array.shape
                    and np.array_equal(f(quantised[:, :, k]), ds.pixel_array)][:1]
        expected = layout(maps["volume"][:, :, k])
        frame = np.zeros_like(expected)
        for number in seg.get_segment_numbers():
            mask = seg.get_pixels_by_source_instance([ds.SOPInstanceUID], segment_numbers=[number],
                                                     assert_missing_frames_are_empty=True)[0, ..., 0]
            frame[mask > 0] = number
        agreement.append((frame == expected).mean())
    assert np.mean(agreement) > 0.99, agreement


@pytest.mark.slow
def test_compare_student_and_drd_scores_dice_and_the_student_never_builds_the_teacher(tmp_path):
    """scripts/compare.py on a segmentation bundle: the student overlay, DRD, evaluate.yaml scoring, Dice tables."""
    out = tmp_path / "out"
    cmd = [sys.executable, str(REPO / "scripts" / "compare.py"), "--bundle", "rd_segmentation_2d", "--methods", "student",
           "drd", "--seeds", "0", "--label_fractions", "0.5", "--epochs", "1", "--out", str(out),
           "--dataset_dir", str(tmp_path / "data"), "--experiment_name", "seg",
           "--set", "patch_size=32", "num_train_patches=16", "batch_size=4", "--threads", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS")}
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    student_log = (out / "cells" / "student-f0.5-s0" / "train.log").read_text()
    assert "building teacher" not in student_log
    assert "building teacher" in (out / "cells" / "drd-f0.5-s0" / "train.log").read_text()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["method"] for r in rows] == ["student", "drd"]
    for row in rows:
        assert row["task"] == "mni152_tissue_2d" and int(row["n_labeled"]) == 8 and int(row["n_unlabeled"]) == 8
        assert 0.0 <= float(row["mean_dice"]) <= 1.0 and float(row["hd95"]) >= 0.0
        # one column per foreground class; mean_dice is MONAI's MeanDice (per image over the classes it holds)
        assert all(0.0 <= float(row[f"dice_{c}"]) <= 1.0 for c in ("grey_matter", "white_matter", "csf"))
    table = (out / "results.md").read_text()
    assert "Dice / HD95" in table and "| drd minus |" in table
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    runs = {r.info.run_name: r for r in client.search_runs([client.get_experiment_by_name("seg").experiment_id])}
    assert runs["student-f0.5-s0"].data.params["method"] == "student"
    assert runs["student-f0.5-s0"].data.metrics["train_kd"] == 0.0
    drd = runs["drd-f0.5-s0"]
    assert int(drd.data.params["num_train_labeled"]) == 8 and int(drd.data.params["num_train_unlabeled"]) == 8
    assert all(drd.data.metrics[t] > 0 for t in ("train_sup_student", "train_sup_hybrid", "train_cka"))
    assert runs["drd-f0.5-s0"].data.metrics["test_mean_dice"] == pytest.approx(float(rows[1]["mean_dice"]))
    assert runs["drd-f0.5-s0-test"].info.status == "FINISHED"  # the evaluation's own run
