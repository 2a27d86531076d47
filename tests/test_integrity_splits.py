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

from bundle_helpers import REPO, bundle_files, bundle_variants, parse_bundle

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
    return parse_bundle("rd_classification_2d", *configs, dataset_dir=str(tmp_path / "data"),
                        output_dir=str(tmp_path / "eval"), ckpt_dir=str(tmp_path / "models"), seed=seed, patch_size=[16, 16])


def _train_split(tmp_path):
    """What training leaves beside the model: the train config's TrainedSplitSaver (validation
    handler) built and called as after the first validation; the trained test ids."""
    parser = _parser(tmp_path, "train.yaml")
    assert "@split_saver" in parser.get("validate#handlers")
    saver = parser.get_parsed_content("split_saver")
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
    """The evaluation's datalist is the saved split, checked against the training files' own
    resolution (the same id: the check cannot drift from training); training saves the split
    after the saver that writes model.pt."""
    train = ConfigParser.load_config_files(bundle_files(bundle, "train.yaml"))
    evaluate = ConfigParser.load_config_files(bundle_files(bundle, "train.yaml", "evaluate.yaml"))
    assert train["datalist"] == "@resolved_datalist"
    assert evaluate["datalist"] == "$rd_components.data.trained_datalist(@ckpt_dir, lambda: @resolved_datalist)"
    handlers = train["validate"]["handlers"]
    assert handlers.index("@split_saver") > handlers.index("@best_model_saver")
    assert train["best_model_saver"]["key_metric_filename"] == "model.pt"
    assert train["split_saver"]["_target_"].endswith("TrainedSplitSaver")


def test_compare_scores_a_cell_on_its_trained_split(tmp_path):
    """compare.py's scoring reads the cell's saved split, not the one the grid resolves now."""
    sys.path.insert(0, str(REPO / "scripts"))
    from comparison import cells, scoring

    _add_images(tmp_path / "data", 0, 10)
    args = argparse.Namespace(bundle="rd_classification_2d", bundle_dir=bundle_variants.BUNDLE, out=tmp_path / "out")
    common = {"dataset_dir": str(tmp_path / "data"), "patch_size": [16, 16]}
    ckpt = tmp_path / "out" / "cells" / "student-f1-s0" / "models"
    parser = cells.load_bundle(args, common, "student", 0, 1.0)
    save_trained_split(parser.get_parsed_content("datalist"), ckpt)
    trained_test = _ids(load_datalist(ckpt / TRAINED_SPLIT, "test"))
    _add_images(tmp_path / "data", 10, 3)
    parser = cells.load_bundle(args, common, "student", 0, 1.0)
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
    # the model names the data it was trained on (the class folders' folder), not the embedded task
    assert json.loads((tmp_path / "models" / "model_info.json").read_text())["task"] == "data"
    _add_images(tmp_path / "data", 10, 3)
    result = run_bundle("evaluating", bundle_configs("rd_classification_2d", "train.yaml", "methods/student.yaml",
                                                     "evaluate.yaml"), tmp_path, run_name="test", **common)
    assert "differs from the split trained on" in result.stdout + result.stderr
    metrics = json.loads((out / "test" / "metrics.json").read_text())
    # the saved split, recorded relative to the bundle folder the run started from (metrics.json goes to MLflow)
    assert metrics["datalist"] == f"models/{TRAINED_SPLIT}"
    assert metrics["num_samples"] == len(trained_test) == 6


def _fake_grid(tmp_path, monkeypatch):
    """``compare.run_grid`` with each cell's training replaced by what a bundle run leaves (its
    split beside the model, a FINISHED MLflow run with the parameters the bundle logs) and its
    scoring by a fixed row: the grid's decision to reuse or retrain a cell runs for real.
    Returns ``run(*argv) -> names of the cells trained``."""
    sys.path.insert(0, str(REPO / "scripts"))
    import compare
    from comparison import grid

    from rd_components.data import resolve_datalist

    trained: list[str] = []

    def train(args, method, seed, fraction, cell, common, threads):
        trained.append(cell)
        cell_dir = args.out / "cells" / cell
        save_trained_split(resolve_datalist(common["dataset_dir"], cell_dir, seed, spatial_dims=2), cell_dir / "models")
        client = mlflow.MlflowClient(tracking_uri=common["tracking_uri"])
        run_id = client.create_run(client.get_experiment_by_name(common["experiment_name"]).experiment_id,
                                   run_name=cell).info.run_id
        logged = {"method": method, "seed": seed, "label_fraction": fraction,
                  **{k: v for k, v in common.items() if k in ("epochs", "temperature", "patch_size", "batch_size")}}
        client.log_batch(run_id, params=[mlflow.entities.Param(k, str(v)) for k, v in logged.items()])
        client.set_terminated(run_id, "FINISHED")
        return cell_dir / "models"

    def score(args, client, experiment, common, method, seed, fraction, cell, threads=None):
        return {"bundle": args.bundle, "method": method, "seed": seed, "label_fraction": fraction, "accuracy": 0.5,
                "macro_f1": 0.5, "auc": 0.5, "params": 1, "latency_ms": 1.0, "run_id": "x"}

    monkeypatch.setattr(grid, "run_cell", train)
    monkeypatch.setattr(grid, "score_cell", score)

    def run(*argv):
        trained.clear()
        args = compare.parse_args(["--methods", "student", "kd", "--seeds", "0", "--label_fractions", "1.0",
                                   "--epochs", "1", "--out", str(tmp_path / "out"), "--experiment_name", "cmp", *argv])
        args.out.mkdir(exist_ok=True)
        grid.run_grid(args)
        return sorted(trained)

    return run


def test_grid_restarted_with_other_dataset_dir_or_set_value_retrains_every_cell(tmp_path, monkeypatch, capsys):
    """A grid restarted with the same --out reuses a FINISHED cell only when it was started with
    every same parameter (--dataset_dir, --set values included) on the same data items."""
    run = _fake_grid(tmp_path, monkeypatch)
    _add_images(tmp_path / "a", 0, 5)
    _add_images(tmp_path / "b", 0, 5, seed=7)
    cells = ["kd-f1-s0", "student-f1-s0"]
    first = ("--dataset_dir", str(tmp_path / "a"), "--set", "temperature=4.0")
    assert run(*first) == cells
    assert run(*first) == []  # the same grid again: every cell reused
    assert "0 to train, 2 already FINISHED" in capsys.readouterr().out
    assert run("--dataset_dir", str(tmp_path / "b"), "--set", "temperature=4.0") == cells
    assert "2 to train (2 of them trained before with other parameters or data)" in capsys.readouterr().out
    assert run("--dataset_dir", str(tmp_path / "b"), "--set", "temperature=2.0") == cells
    assert run("--dataset_dir", str(tmp_path / "b"), "--set", "temperature=2.0") == []
    # back to the first settings: their MLflow runs still exist, but the models in the cells'
    # folders are those trained since, so every cell trains again
    assert run(*first) == cells


def test_grid_restarted_after_the_data_folder_changed_retrains_every_cell(tmp_path, monkeypatch):
    """Same --dataset_dir, other items in it (images added): the cells' splits differ, retrain."""
    run = _fake_grid(tmp_path, monkeypatch)
    _add_images(tmp_path / "a", 0, 5)
    argv = ("--dataset_dir", str(tmp_path / "a"))
    assert run(*argv) == ["kd-f1-s0", "student-f1-s0"]
    _add_images(tmp_path / "a", 5, 3)
    assert run(*argv) == ["kd-f1-s0", "student-f1-s0"]
    assert run(*argv) == []


def test_compare_results_csv_is_replaced_atomically(tmp_path, monkeypatch):
    """results.csv is written to a temporary file and renamed: a reader (or a kill) never sees half of it."""
    sys.path.insert(0, str(REPO / "scripts"))
    import os

    from comparison import tables

    from rd_components import atomic

    replaced = []
    real_replace = os.replace
    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: (replaced.append(str(dst)), real_replace(src, dst)))
    rows = [{"bundle": "b", "method": "rd", "seed": 0, "label_fraction": 0.1, "accuracy": 0.5}]
    tables.write_csv(rows, tmp_path / "results.csv")
    assert replaced == [str(tmp_path / "results.csv")]
    assert list(csv.DictReader(open(tmp_path / "results.csv")))[0]["method"] == "rd"
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]
