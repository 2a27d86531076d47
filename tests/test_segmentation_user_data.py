"""A user's own segmentation data: MSD / nnU-Net folders, datalists, CSVs and DICOM series read
as pairs, checked (one line per bad pair), cut into patches under output_dir (never inside the
user's folder), and trained on through the real bundle command."""

from __future__ import annotations

import csv
import json
import os

import nibabel as nib
import numpy as np
import pytest
from bundle_helpers import bundle_configs, copy_bundle, run_bundle

from rd_components.data import (
    resolve_segmentation_datalist,
    segmentation_training_items,
)
from rd_components.errors import BadInputError, DataConfigError

NAMES = ["background", "liver", "tumour"]
AFFINE = np.diag([1.5, 1.5, 2.0, 1.0])
AFFINE[:3, 3] = [-12.0, -12.0, -16.0]


def _pair(seed: int, shape=(16, 16, 16)) -> tuple[np.ndarray, np.ndarray]:
    """A tiny volume ``(X, Y, Z)`` and its label map: a liver block holding a tumour block."""
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, dtype=np.uint8)
    label[2:11, 3:12, 2:12] = 1
    label[5:8, 6:9, 5:9] = 2
    image = (rng.normal(100.0, 5.0, shape) + 40.0 * label).astype(np.float32)
    return image, label


def _save(path, array, affine=AFFINE) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return str(path)


def _msd(folder, n=3, test=True):
    for i in range(n):
        image, label = _pair(i)
        _save(folder / "imagesTr" / f"case_{i:03d}.nii.gz", image)
        _save(folder / "labelsTr" / f"case_{i:03d}.nii.gz", label)
    if test:
        _save(folder / "imagesTs" / "case_100.nii.gz", _pair(100)[0])
    (folder / "dataset.json").write_text(json.dumps({
        "name": "tiny", "labels": {str(i): n for i, n in enumerate(NAMES)}, "modality": {"0": "CT"},
        "training": [{"image": f"./imagesTr/case_{i:03d}.nii.gz", "label": f"./labelsTr/case_{i:03d}.nii.gz"} for i in range(n)],
        "test": ["./imagesTs/case_100.nii.gz"] if test else []}))
    return folder


def _listing(folder) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def _load(datalist):
    return json.loads(open(datalist).read())


def test_msd_folder_gives_patches_under_output_dir_and_leaves_the_folder_alone(tmp_path):
    data = _msd(tmp_path / "Task01_Tiny")
    before = _listing(data)
    path = resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=4)
    assert _listing(data) == before  # nothing written inside the user's folder
    assert str(path).startswith(str(tmp_path / "out"))
    datalist = _load(path)
    assert datalist["labels"] == {"0": "background", "1": "liver", "2": "tumour"} and datalist["num_classes"] == 3
    # three images: one each for training, validation (drawn) and test (drawn), per image
    images = datalist["images"]
    assert sorted(images) == ["test", "training", "unlabeled", "validation"]
    assert [len(images[k]) for k in ("training", "validation", "test", "unlabeled")] == [1, 1, 1, 1]
    assert set(datalist["generated_splits"]) == {"validation", "test"}
    all_ids = images["training"] + images["validation"] + images["test"]
    assert len(set(all_ids)) == 3 and all(i.startswith("imagesTr/case_") and "@" in i for i in all_ids)
    assert len(datalist["training"]) == 4 and len(datalist["validation"]) == 1 and len(datalist["test"]) == 1
    folder = os.path.dirname(path)
    patch = nib.load(os.path.join(folder, datalist["training"][0]["image"]))
    assert patch.shape == (32, 32, 32) and np.allclose(patch.header.get_zooms(), (1.5, 1.5, 2.0))
    assert 0.0 <= float(patch.get_fdata().min()) and float(patch.get_fdata().max()) <= 1.0
    assert nib.load(os.path.join(folder, datalist["test"][0]["image"])).shape == (16, 16, 16)  # the whole volume
    assert all(it["label"] == -1 for it in datalist["unlabeled"]) and datalist["unlabeled"]  # imagesTs
    # the same data again: the build is reused, not redone
    stamp = os.stat(path).st_mtime_ns
    assert resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=4) == path
    assert os.stat(path).st_mtime_ns == stamp
    items = segmentation_training_items(path, 1.0, 0)
    assert len(items) == 8 and sum(it["label"] == -1 for it in items) == 4  # as many per image as a training one


def test_nnunet_v2_layout_maps_names_to_indices(tmp_path):
    data = tmp_path / "Dataset001_Tiny"
    for i in range(3):
        image, label = _pair(i)
        _save(data / "imagesTr" / f"tiny_{i:03d}_0000.nii.gz", image)
        _save(data / "labelsTr" / f"tiny_{i:03d}.nii.gz", label)
    (data / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"tumour": 2, "background": 0, "liver": 1},
                                                   "numTraining": 3, "file_ending": ".nii.gz"}))
    datalist = _load(resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=2))
    assert [datalist["labels"][str(i)] for i in range(3)] == NAMES
    assert "unlabeled" not in datalist
    _save(data / "imagesTr" / "tiny_000_0001.nii.gz", _pair(0)[0])
    with pytest.raises(DataConfigError, match="several channels"):
        resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=2)


def test_datalist_and_csv_of_pairs_resolve_like_the_folder(tmp_path):
    data = _msd(tmp_path / "pairs", test=False)
    pairs = [{"image": f"imagesTr/case_{i:03d}.nii.gz", "label": f"labelsTr/case_{i:03d}.nii.gz"} for i in range(3)]
    (data / "pairs.json").write_text(json.dumps({"labels": {str(i): n for i, n in enumerate(NAMES)}, "training": pairs}))
    with open(data / "pairs.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["image", "label", "split"])
        writer.writeheader()
        writer.writerows([{**p, "split": s} for p, s in zip(pairs, ("training", "training", "test"))])
    from_json = _load(resolve_segmentation_datalist(data / "pairs.json", tmp_path / "a", 0, 3, patch_size=32, n_train=2))
    from_csv = _load(resolve_segmentation_datalist(data / "pairs.csv", tmp_path / "b", 0, 3, patch_size=32, n_train=2))
    assert from_json["labels"]["1"] == "liver" and from_json["num_classes"] == 3
    assert from_csv["labels"] == {"0": "0", "1": "1", "2": "2"}  # no mapping: numbered from the label maps
    assert from_csv["images"]["test"] == ["imagesTr/case_002.nii.gz@" + from_csv["images"]["test"][0].split("@")[1]]
    assert from_csv["generated_splits"] == ["validation"]
    (data / "classes.csv").write_text("image,label\nimagesTr/case_000.nii.gz,1\n")
    with pytest.raises(DataConfigError, match="not a label map path"):
        resolve_segmentation_datalist(data / "classes.csv", tmp_path / "c", 0, 3, patch_size=32, n_train=2)


def test_a_dicom_series_folder_is_an_image(tmp_path):
    from rd_components.data.writers import DicomPatchWriter

    data = _msd(tmp_path / "dicom", test=False)
    image, _ = _pair(0)
    quantised = np.rint(image / image.max() * 4095).astype(np.uint16)
    DicomPatchWriter(image.shape[:2], (1.5, 1.5, 2.0), "test-user-seg", "user").write_3d(data / "series", quantised, AFFINE, "case")
    pairs = [("series", "labelsTr/case_000.nii.gz")] + [(f"imagesTr/case_{i:03d}.nii.gz", f"labelsTr/case_{i:03d}.nii.gz") for i in (1, 2)]
    (data / "pairs.csv").write_text("image,label\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    datalist = _load(resolve_segmentation_datalist(data / "pairs.csv", tmp_path / "out", 0, 3, patch_size=32, n_train=3))
    ids = [i for k in ("training", "validation", "test") for i in datalist["images"][k]]
    assert any(i.startswith("series@") for i in ids)


def test_preflight_names_every_bad_pair_on_one_line(tmp_path):
    data = _msd(tmp_path / "bad", test=False)
    image, label = _pair(7)
    cases = {
        "shape": (image, label[:, :, :12], AFFINE),
        "affine": (image, label, _shift(5.0)),
        "range": (image, np.where(label == 2, 7, label).astype(np.uint8), AFFINE),
        "empty": (image, np.zeros_like(label), AFFINE),
        "nan": (np.where(label == 2, np.nan, image).astype(np.float32), label, AFFINE),
    }
    for name, (img, lab, label_affine) in cases.items():
        _save(data / "imagesTr" / f"{name}.nii.gz", img)
        _save(data / "labelsTr" / f"{name}.nii.gz", lab, label_affine)
    meta = json.loads((data / "dataset.json").read_text())
    meta.pop("training")
    (data / "dataset.json").write_text(json.dumps(meta))
    with pytest.raises(BadInputError) as caught:
        resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=2)
    lines = str(caught.value).splitlines()
    assert lines[0].startswith("5 bad image / label pair(s)") and len(lines) == 6
    reasons = {"shape": "shape (16, 16, 12) differs", "affine": "affine differs", "range": "label values 7 outside the classes 0..2",
               "empty": "empty (background only)", "nan": "NaN"}
    for name, reason in reasons.items():
        [line] = [ln for ln in lines if f"imagesTr/{name}.nii.gz" in ln]
        assert reason in line and f"labelsTr/{name}.nii.gz" in line, line
    assert not any((tmp_path / "out").glob("bad_seg_3d*"))  # nothing half-built is left
    # skip: the bad pairs are dropped, the good ones train
    datalist = _load(resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=2, on_bad_input="skip"))
    assert sum(len(v) for v in datalist["images"].values()) == 8  # the images were split before the check
    assert datalist["training"] and datalist["validation"] and datalist["test"]


def _shift(mm: float) -> np.ndarray:
    out = AFFINE.copy()
    out[0, 3] += mm
    return out


def test_2d_bundle_slices_volumes_and_refuses_2d_images(tmp_path):
    data = _msd(tmp_path / "slices", test=False)
    datalist = _load(resolve_segmentation_datalist(data, tmp_path / "out", 0, 2, patch_size=32, n_train=4))
    folder = tmp_path / "out" / "slices_seg_2d"
    assert nib.load(str(folder / datalist["training"][0]["image"])).shape == (32, 32)  # axial patches
    assert len(datalist["test"]) == 4 and all(nib.load(str(folder / t["image"])).shape == (16, 16) for t in datalist["test"])  # whole slices
    _save(data / "imagesTr" / "case_000.nii.gz", _pair(0)[0][:, :, 0])
    _save(data / "labelsTr" / "case_000.nii.gz", _pair(0)[1][:, :, 0])
    with pytest.raises(BadInputError, match="image is 2D .16, 16.: give 3D volumes"):
        resolve_segmentation_datalist(data, tmp_path / "out", 0, 2, patch_size=32, n_train=4)


def test_unlabeled_dir_adds_hidden_label_patches(tmp_path):
    data = _msd(tmp_path / "scarce", test=False)
    extra = tmp_path / "extra"
    _save(extra / "a.nii.gz", _pair(50)[0])
    _save(extra / "b.nii.gz", _pair(51)[0])
    path = resolve_segmentation_datalist(data, tmp_path / "out", 0, 3, patch_size=32, n_train=4)
    before = _listing(extra)
    items = segmentation_training_items(path, 1.0, 0, unlabeled_dir=extra, output_dir=tmp_path / "out", spatial_dims=3)
    hidden = [it for it in items if it["label"] == -1]
    assert len(hidden) == 8 and all(it["id"].startswith("unlabeled/") for it in hidden)  # 4 per volume, as per training image
    assert all(nib.load(it["image"]).shape == (32, 32, 32) for it in hidden) and _listing(extra) == before


def test_no_user_data_builds_the_embedded_task(tmp_path, monkeypatch):
    import rd_components.data.segmentation.datalist as module

    calls = []
    monkeypatch.setattr(module, "build_segmentation_dataset", lambda *a, **k: calls.append((a, k)) or tmp_path / "x.json")
    assert resolve_segmentation_datalist(tmp_path / "empty", tmp_path / "out", 0, 3, "mni152_tissue", 32, 8) == str(tmp_path / "x.json")
    assert calls == [((tmp_path / "empty", "mni152_tissue", 3, 32), {"n_train": 8})]


def _train(tmp_path, data, *methods, **extra):
    copy = copy_bundle(tmp_path / "bundle")
    configs = bundle_configs("rd_segmentation_3d", "train.yaml", *methods, bundle=copy)
    run_bundle("training", configs, copy, **{**dict(dataset_dir=str(data), patch_size=32, num_train_patches=4,
                                                    batch_size=2, epochs=1, num_workers=0), **extra})
    return copy


def test_msd_folder_trains_through_the_bundle_with_dataset_dir_only(tmp_path):
    """The student method (no teacher: fast) on an MSD folder: the model's class names are the folder's."""
    data = _msd(tmp_path / "Task01_Tiny")
    before = _listing(data)
    copy = _train(tmp_path, data, "methods/segmentation/student.yaml")
    assert _listing(data) == before
    info = json.loads((copy / "models" / "model_info.json").read_text())
    assert info["class_names"] == NAMES and info["pixdim"] == [1.5, 1.5, 2.0]
    assert info["task"] == "Task01_Tiny"  # the data it was trained on, not the embedded task's name
    saved = json.loads((copy / "models" / "datalist.json").read_text())  # the split, saved with the model
    assert len(saved["test"]) == 1 and saved["labels"]["2"] == "tumour"
    assert saved["name"] == "Task01_Tiny"  # not the temporary folder the patches were built in
    # evaluation scores the saved split's whole test volume
    run_bundle("evaluating", bundle_configs("rd_segmentation_3d", "train.yaml", "evaluate.yaml", bundle=copy), copy,
               dataset_dir=str(data), patch_size=32, num_train_patches=4)
    [eval_dir] = [p for p in (copy / "eval").iterdir() if p.name.startswith("evaluate-")]
    metrics = dict(csv.reader(open(eval_dir / "metrics.csv")))
    assert 0.0 <= float(metrics["test_mean_dice"]) <= 1.0
    assert _listing(data) == before


@pytest.mark.slow
def test_msd_folder_trains_drd_with_the_real_teacher(tmp_path):
    data = _msd(tmp_path / "Task01_Tiny")
    before = _listing(data)
    copy = _train(tmp_path, data)
    assert _listing(data) == before
    assert json.loads((copy / "models" / "model_info.json").read_text())["class_names"] == NAMES


@pytest.mark.slow
def test_probe_kd_gated_logs_a_gate_that_follows_each_validation(tmp_path):
    """probe_kd_gated with the real teacher: the probe's validation Dice is logged beside the
    student's, and after each epoch's validation the KD gate is open exactly when the probe is ahead."""
    import mlflow

    data = _msd(tmp_path / "Task01_Tiny")
    copy = _train(tmp_path, data, "methods/segmentation/probe_kd_gated.yaml", epochs=3)
    info = json.loads((copy / "models" / "model_info.json").read_text())
    assert info["class_names"] == NAMES and info["task"] == "Task01_Tiny"  # the folder's, not the embedded task's
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{copy / 'eval' / 'mlruns.db'}")
    [run] = client.search_runs([client.get_experiment_by_name("rd_segmentation_3d").experiment_id])
    assert run.data.params["kd_gate"] == "True" and run.data.params["method"] == "probe_kd_gated"

    def history(key):
        return {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}

    gate, probe, student = history("kd_gate"), history("teacher_val_mean_dice"), history("val_mean_dice")
    assert sorted(gate) == sorted(probe) == sorted(student) == [1, 2, 3]
    assert all(gate[e] == float(probe[e] > student[e]) for e in gate), (gate, probe, student)
