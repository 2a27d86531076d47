"""No silent wrong result from a re-drawn split: a model is scored on the test items it was trained
against, whatever happened to its data folder or ``--seed`` since; a restarted comparison grid
reuses a cell only when it was started with the same parameters on the same data."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys

import mlflow
import nibabel as nib
import numpy as np
import pytest
from monai.bundle import ConfigParser

from rd_components.data import load_datalist, save_trained_split
from rd_components.data.trained_split import TRAINED_SPLIT

from bundle_helpers import REPO

CLASSES = ("cyst", "normal", "tumour")
BUNDLES = ("rd_classification_2d", "rd_classification_3d", "rd_segmentation_2d", "rd_segmentation_3d")


def _add_images(folder, first, count, seed=0):
    """``count`` more small random NIfTI slices per class folder, numbered from ``first``."""
    rng = np.random.default_rng(seed + first)
    for name in CLASSES:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(first, first + count):
            image = rng.random((12, 12)).astype(np.float32)
            nib.save(nib.Nifti1Image(image, np.eye(4)), folder / name / f"{name}_{i}.nii.gz")


def _parser(tmp_path, *configs, seed=0):
    """The 2D classification bundle's configs parsed in-process, as ``monai.bundle run`` would,
    on the class folders of ``tmp_path/data`` with the run's folders under ``tmp_path``."""
    files = [str(REPO / "bundles" / "rd_classification_2d" / "configs" / name) for name in configs]
    parser = ConfigParser(ConfigParser.load_config_files(files))
    overrides = {"bundle_root": str(REPO / "bundles" / "rd_classification_2d"), "dataset_dir": str(tmp_path / "data"),
                 "output_dir": str(tmp_path / "eval"), "ckpt_dir": str(tmp_path / "models"), "seed": seed,
                 "patch_size": [16, 16]}
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _train_split(tmp_path):
    """What training leaves beside the model: the train config's TrainedSplitSaver (validation
    handler) built and called as after the first validation; the trained test ids."""
    parser = _parser(tmp_path, "train.yaml")
    handlers = parser.get("validate#handlers")
    (index,) = [i for i, h in enumerate(handlers) if isinstance(h, dict) and h.get("_target_", "").endswith("TrainedSplitSaver")]
    saver = parser.get_parsed_content(f"validate#handlers#{index}")
    saver(None)
    return {it["id"] for it in load_datalist(parser.get_parsed_content("datalist"), "test")}


def _ids(items):
    return {it["id"] for it in items}


@pytest.mark.parametrize("change", ["folder_grows", "other_seed"])
def test_evaluate_keeps_training_split_when_folder_grows_or_seed_changes(tmp_path, caplog, change):
    """A class-folder data set without a test split: images added after training (or evaluation
    with another --seed) would re-draw the test split with former training items in it; the
    evaluate config scores exactly the trained-against test items, with one warning line."""
    _add_images(tmp_path / "data", 0, 10)
    trained_test = _train_split(tmp_path)
    assert (tmp_path / "models" / TRAINED_SPLIT).is_file() and len(trained_test) == 6
    if change == "folder_grows":
        _add_images(tmp_path / "data", 10, 3)
    seed = 1 if change == "other_seed" else 0
    # the defect's setting is real: resolved again now, the test split differs from the trained one
    fresh_test = {it["id"] for it in load_datalist(_parser(tmp_path, "train.yaml", seed=seed).get_parsed_content("datalist"), "test")}
    assert fresh_test != trained_test

    with caplog.at_level(logging.WARNING):
        files = _parser(tmp_path, "train.yaml", "evaluate.yaml", seed=seed).get_parsed_content("validate#files")
    assert _ids(files) == trained_test
    warnings = [r for r in caplog.records if r.name == "rd_components.data.trained_split"]
    assert len(warnings) == 1 and "\n" not in warnings[0].getMessage()
    assert "differs from the split trained on" in warnings[0].getMessage()


def test_evaluate_with_unchanged_data_is_silent(tmp_path, caplog):
    _add_images(tmp_path / "data", 0, 10)
    trained_test = _train_split(tmp_path)
    with caplog.at_level(logging.WARNING):
        files = _parser(tmp_path, "train.yaml", "evaluate.yaml").get_parsed_content("validate#files")
    assert _ids(files) == trained_test
    assert not [r for r in caplog.records if r.name == "rd_components.data.trained_split"]


def test_evaluate_of_a_model_without_saved_split_falls_back_with_one_warning(tmp_path, caplog):
    """A model trained before splits were saved: today's behaviour (the split resolved now), said once."""
    _add_images(tmp_path / "data", 0, 10)
    fresh = _parser(tmp_path, "train.yaml").get_parsed_content("datalist")
    with caplog.at_level(logging.WARNING):
        files = _parser(tmp_path, "train.yaml", "evaluate.yaml").get_parsed_content("validate#files")
    assert _ids(files) == _ids(load_datalist(fresh, "test"))
    warnings = [r.getMessage() for r in caplog.records if r.name == "rd_components.data.trained_split"]
    assert len(warnings) == 1 and "trained before its split was saved" in warnings[0]


def test_edited_saved_split_is_said_and_still_scored(tmp_path, caplog):
    """The saved split no longer matching its recorded digest is said in one line."""
    _add_images(tmp_path / "data", 0, 10)
    _train_split(tmp_path)
    saved = json.loads((tmp_path / "models" / TRAINED_SPLIT).read_text())
    saved["test"] = saved["test"][:-1]
    (tmp_path / "models" / TRAINED_SPLIT).write_text(json.dumps(saved))
    with caplog.at_level(logging.WARNING):
        files = _parser(tmp_path, "train.yaml", "evaluate.yaml").get_parsed_content("validate#files")
    assert _ids(files) == {it["id"] for it in saved["test"]}
    warnings = [r.getMessage() for r in caplog.records if r.name == "rd_components.data.trained_split"]
    assert len(warnings) == 1 and "no longer match the digest" in warnings[0]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_evaluate_config_scores_the_saved_split_and_every_train_config_saves_it(bundle):
    """evaluate.yaml's datalist is the saved split, checked against train.yaml's own resolution
    (the same expression: the check cannot drift from training); train.yaml saves the split
    after the CheckpointSaver that writes model.pt."""
    configs = REPO / "bundles" / bundle / "configs"
    train = ConfigParser.load_config_file(str(configs / "train.yaml"))
    evaluate = ConfigParser.load_config_file(str(configs / "evaluate.yaml"))
    assert evaluate["datalist"] == f"$rd_components.data.trained_datalist(@ckpt_dir, lambda: {train['datalist'][1:]})"
    handlers = train["validate"]["handlers"]
    targets = [h.get("_target_", "") if isinstance(h, dict) else h for h in handlers]
    saver = [i for i, t in enumerate(targets) if t.endswith("TrainedSplitSaver")]
    model = [i for i, h in enumerate(handlers) if isinstance(h, dict) and h.get("key_metric_filename") == "model.pt"]
    assert len(saver) == 1 and model and saver[0] > model[0]


def test_compare_scores_a_cell_on_its_trained_split(tmp_path):
    """compare.py's scoring reads the cell's saved split, not the one the grid resolves now."""
    sys.path.insert(0, str(REPO / "scripts"))
    from comparison import scoring

    _add_images(tmp_path / "data", 0, 10)
    args = argparse.Namespace(bundle="rd_classification_2d", out=tmp_path / "out")
    common = {"dataset_dir": str(tmp_path / "data"), "patch_size": [16, 16]}
    ckpt = tmp_path / "out" / "cells" / "student-f1-s0" / "models"
    parser = scoring.load_bundle(args, common, "student", 0, 1.0)
    save_trained_split(parser.get_parsed_content("datalist"), ckpt)
    trained_test = _ids(load_datalist(ckpt / TRAINED_SPLIT, "test"))
    _add_images(tmp_path / "data", 10, 3)
    parser = scoring.load_bundle(args, common, "student", 0, 1.0)
    assert _ids(load_datalist(parser.get_parsed_content("datalist"), "test")) != trained_test
    assert _ids(scoring.test_items(parser, scoring.cell_datalist(parser, ckpt))) == trained_test


@pytest.mark.slow
def test_bundle_training_saves_its_split_and_evaluate_scores_it_after_the_folder_grows(tmp_path):
    """End to end at tiny size (the student alone, one epoch): training writes models/datalist.json,
    and evaluate after the folder grew scores the trained-against test items (metrics.json's count)."""
    from bundle_helpers import bundle_configs, run_bundle

    _add_images(tmp_path / "data", 0, 10)
    out = tmp_path / "eval"
    common = {"dataset_dir": str(tmp_path / "data"), "output_dir": str(out), "ckpt_dir": str(tmp_path / "models"),
              "patch_size": [16, 16], "batch_size": 6, "experiment_name": "splits"}
    run_bundle("training", bundle_configs("rd_classification_2d", "train.yaml", "methods/student.yaml"), tmp_path,
               epochs=1, registered_model_name=None, **common)
    trained_test = _ids(load_datalist(tmp_path / "models" / TRAINED_SPLIT, "test"))
    _add_images(tmp_path / "data", 10, 3)
    result = run_bundle("evaluating", bundle_configs("rd_classification_2d", "train.yaml", "methods/student.yaml",
                                                     "evaluate.yaml"), tmp_path, run_name="test", **common)
    assert "differs from the split trained on" in result.stdout + result.stderr
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    assert metrics["datalist"] == str(tmp_path / "models" / TRAINED_SPLIT)
    assert metrics["num_samples"] == len(trained_test) == 6
