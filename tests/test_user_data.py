"""The user's own labelled data: datalist (with or without labels), CSV, class folders; one-line config errors."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from rd_components.data import (class_names, classification_transforms, load_datalist, normalise_user_data, preflight_items,
                                 read_datalist_info, resolve_datalist, stable_id)
from rd_components.errors import DataConfigError

from bundle_helpers import REPO, bundle_configs, bundle_env

CLASSES = ("cyst", "normal", "tumour")


def _images(folder, n_per_class=4):
    """``{class: [paths]}`` of small random NIfTI slices, one folder per class."""
    rng = np.random.default_rng(0)
    out = {}
    for name in CLASSES:
        (folder / name).mkdir(parents=True)
        out[name] = []
        for i in range(n_per_class):
            path = folder / name / f"{name}_{i}.nii.gz"
            nib.save(nib.Nifti1Image(rng.random((12, 12)).astype(np.float32), np.eye(4)), path)
            out[name].append(path)
    return out


def _items(path):
    return {split: load_datalist(path, split) for split in ("training", "validation", "test")}


def _check_normalised(path, n_total, names=CLASSES):
    info = read_datalist_info(path)
    assert class_names(info) == list(names)
    splits = _items(path)
    assert sum(len(v) for v in splits.values()) == n_total
    assert all(splits[s] for s in ("validation", "test"))
    for items in splits.values():
        for it in items:
            assert 0 <= it["label"] < len(names) and "@" in it["id"]
    # stratified: every class in every split
    assert all({it["label"] for it in v} == set(range(len(names))) for v in splits.values())
    return splits


def test_class_folders(tmp_path):
    _images(tmp_path / "data")
    path = normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2, seed=3)
    assert path.parent == tmp_path / "out"
    splits = _check_normalised(path, 12)
    first = path.read_text()
    # repeatable: the same seed gives the same file
    assert normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2, seed=3).read_text() == first
    assert json.loads(first)["generated_splits"] == ["test", "validation"]
    items = preflight_items(splits["training"], classification_transforms(2, 16), 2, 3, progress=False)
    assert items[0]["image"].shape == (1, 16, 16)


def test_csv_with_string_labels_and_split_column(tmp_path):
    images = _images(tmp_path / "data")
    rows = ["image,label,split"]
    for name, paths in images.items():
        for i, p in enumerate(paths):
            split = ["train", "train", "val", "test"][i]
            rows.append(f"{p.relative_to(tmp_path / 'data')},{name},{split}")
    (tmp_path / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    path = resolve_datalist(tmp_path / "data", tmp_path / "out", 0, spatial_dims=2)
    splits = _check_normalised(path, 12)
    assert [len(splits[s]) for s in ("training", "validation", "test")] == [6, 3, 3]
    assert json.loads(open(path).read())["generated_splits"] == []


def test_csv_without_split_column(tmp_path):
    images = _images(tmp_path / "data", 5)
    rows = ["image,label"] + [f"{p},{name}" for name, paths in images.items() for p in paths]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    _check_normalised(resolve_datalist(tmp_path / "list.csv", tmp_path / "out", 0, spatial_dims=2), 15)


def test_datalist_without_labels_mapping_and_without_ids(tmp_path):
    images = _images(tmp_path / "data")
    training = [{"image": str(p.relative_to(tmp_path / "data")), "label": 2 * c} for c, name in enumerate(CLASSES)
                for p in images[name]]
    (tmp_path / "data" / "datalist.json").write_text(json.dumps({"training": training}))
    path = resolve_datalist(tmp_path / "data", tmp_path / "out", 0, spatial_dims=2)
    # class names from the label values, in numeric order; indices 0..K-1
    _check_normalised(path, 12, names=("0", "2", "4"))


def test_ready_datalist_is_used_as_it_is(tmp_path):
    images = _images(tmp_path / "data")
    # ids ending with their file's content digest (ids without one are normalised, see test_integrity_user_data.py)
    items = [{"image": str(p), "label": c, "id": stable_id(p, tmp_path / "data")} for c, name in enumerate(CLASSES)
             for p in images[name]]
    datalist = {"labels": {str(i): n for i, n in enumerate(CLASSES)}, "training": items[::2], "validation": items[1::4],
                "test": items[3::4]}
    (tmp_path / "dl.json").write_text(json.dumps(datalist))
    assert resolve_datalist(tmp_path / "dl.json", tmp_path / "out", 0, spatial_dims=2) == str(tmp_path / "dl.json")


def test_multiframe_files_in_class_folders_give_one_item_per_frame(tmp_path):
    for name in ("a", "b"):
        (tmp_path / "data" / name).mkdir(parents=True)
        shutil.copy(get_testdata_file("emri_small_RLE.dcm"), tmp_path / "data" / name / "clip.dcm")
    path = normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2)
    items = [it for items in _items(path).values() for it in items]
    assert len(items) == 20 and len({it["id"] for it in items}) == 20
    out = preflight_items(items[:3], classification_transforms(2, 16, "nifti"), 2, 2, progress=False)
    assert out[0]["image"].shape == (1, 16, 16) and "frame" not in out[0]


def test_stable_id_follows_path_and_content(tmp_path):
    path = tmp_path / "x.dcm"
    shutil.copy(get_testdata_file("CT_small.dcm"), path)
    first = stable_id(path, tmp_path)
    assert first == stable_id(path, tmp_path) and first.startswith("x.dcm@")
    path.write_bytes(path.read_bytes()[:-2] + b"\x00\x01")
    assert stable_id(path, tmp_path) != first


@pytest.mark.parametrize("case,expected", [
    ("missing.csv", "missing.csv not found"),
    ("bad_columns", "needs the columns 'image' and 'label'"),
    ("bad_json", "is not valid JSON"),
    ("missing_image", "not found"),
    ("bad_split", "unknown split"),
])
def test_bad_user_data_is_one_line_naming_the_file(tmp_path, case, expected):
    target = tmp_path / case
    if case == "bad_columns":
        target = tmp_path / "t.csv"
        target.write_text("path,class\na.nii.gz,x\n")
    elif case == "bad_json":
        target = tmp_path / "datalist.json"
        target.write_text("{not json")
    elif case == "missing_image":
        target = tmp_path / "t.csv"
        target.write_text("image,label\nnowhere.nii.gz,x\n")
    elif case == "bad_split":
        target = tmp_path / "t.csv"
        target.write_text("image,label,split\na.nii.gz,x,holdout\n")
    with pytest.raises(DataConfigError) as info:
        normalise_user_data(target, tmp_path / "out")
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert target.name in str(info.value) or case == "missing_image"


def test_cache_without_ids_says_so_once(caplog):
    import torch

    from rd_components.foundation import TeacherFeatureCache, TeacherFeatureSource

    source = TeacherFeatureSource(torch.nn.Conv2d(1, 2, 1), TeacherFeatureCache("t", "w"))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            source(torch.rand(2, 1, 4, 4), {"image": None})
    assert caplog.text.count("Teacher feature cache not used") == 1


@pytest.mark.parametrize("override,expected", [
    ({"dataset_dir": "/nonexistent/labels.csv"}, "Error: /nonexistent/labels.csv not found"),
    ({"teacher": "no_such_teacher"}, "Error: unknown teacher 'no_such_teacher'"),
])
def test_bundle_config_errors_are_one_line(tmp_path, override, expected):
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file",
           bundle_configs("rd_classification_2d", "train.yaml"), "--output_dir", str(tmp_path / "eval"),
           "--ckpt_dir", str(tmp_path / "models"), "--dataset_dir", str(tmp_path / "data")]
    for key, value in override.items():
        cmd += [f"--{key}", value]
    if "dataset_dir" not in override:
        _images(tmp_path / "data")
    result = subprocess.run(cmd, cwd=REPO, env=bundle_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and "ConfigExpression" not in result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("form", ["class_folders", "csv"])
def test_bundle_trains_on_own_data_and_fills_the_cache(tmp_path, form):
    """--dataset_dir with class folders or a CSV trains the 2D bundle, and the teacher cache fills."""
    import mlflow

    from bundle_helpers import run_bundle

    images = _images(tmp_path / "data", 6)
    if form == "csv":
        rows = ["image,label"] + [f"{p.relative_to(tmp_path / 'data')},{name}" for name, paths in images.items() for p in paths]
        (tmp_path / "data" / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "out"
    run_bundle("training", bundle_configs("rd_classification_2d", "train.yaml"), tmp_path, dataset_dir=str(tmp_path / "data"),
               output_dir=str(out), ckpt_dir=str(out / "models"), patch_size=[16, 16], batch_size=4, epochs=1,
               experiment_name="own", registered_model_name=None)
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("own").experiment_id])
    assert run.info.status == "FINISHED"
    n_train, n_val = int(run.data.params["num_train"]), int(run.data.params["num_validation"])
    assert n_train + n_val < 18  # a stratified test split was held out
    # every training and validation item has a stable id, so each got one cache entry
    assert len(list((out / "feature_cache").rglob("*.safetensors"))) == n_train + n_val
