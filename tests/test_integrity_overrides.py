"""A command-line id that the configs never define, or that the chosen configuration never reads,
is said in one warning line, not silently added or ignored."""

from __future__ import annotations

import subprocess

from bundle_helpers import bundle_command, bundle_configs, bundle_env, bundle_files
from monai.bundle import ConfigParser

from rd_components.overrides import (command_line_overrides, read_ids, unknown_overrides, unread_overrides,
                                     warn_unknown_overrides)

ROOTS = ["imports", "initialize", "training", "finalize"]


def _config(bundle: str, *names: str) -> dict:
    return ConfigParser.load_config_files(bundle_files(bundle, *names))


def test_command_line_overrides_reads_both_forms():
    argv = ["monai.bundle", "run", "training", "--config_file", "a.yaml", "--epochs", "3", "--seed=1", "--augment"]
    assert command_line_overrides(argv) == {"config_file": "a.yaml", "epochs": "3", "seed": "1", "augment": None}


def test_mistyped_label_fraction_is_named_with_the_nearest_id():
    unknown = unknown_overrides(_config("rd_classification_2d", "train.yaml"), ["lable_fraction", "epochs", "seed"])
    assert list(unknown) == ["lable_fraction"]
    assert unknown["lable_fraction"][0] == "label_fraction"


def test_known_nested_ids_and_extensions_are_not_flagged():
    config = _config("rd_classification_2d", "train.yaml")
    overrides = ["train#dataloader#num_workers", "+loss_weights", "loss_weights#kd_weight", "best_model_saver#save_dir",
                 "config_file", "tracking"]
    assert unknown_overrides(config, overrides) == {}
    assert unread_overrides(config, overrides, ROOTS) == []
    # a key under an id the config does not define is unknown too
    assert list(unknown_overrides(config, ["trian#dataloader#num_workers"])) == ["trian#dataloader#num_workers"]


def test_every_id_a_classification_run_uses_is_read():
    """The ids users override most are read by a classification training run: no false warning."""
    config = _config("rd_classification_2d", "train.yaml")
    used = ["dataset_dir", "epochs", "seed", "resume", "label_fraction", "unlabeled_dir", "augment", "teacher",
            "tracking_uri", "experiment_name", "output_dir", "ckpt_dir", "bundle_root", "loss_weights", "temperature"]
    assert unread_overrides(config, used, ROOTS) == []
    assert "resume_handler" in read_ids(config, ROOTS)


def test_augment_on_segmentation_is_flagged_as_not_read():
    """Segmentation trains without the random flips: --augment would do nothing (--resume is read)."""
    segmentation = _config("rd_segmentation_3d", "train.yaml")
    assert "augment" in segmentation  # defined by the shared base...
    assert unread_overrides(segmentation, ["resume", "augment", "epochs", "patch_size"], ROOTS) == ["augment"]


def test_warn_unknown_overrides_reads_config_files_from_the_command_line(caplog):
    files = bundle_configs("rd_classification_2d", "train.yaml", "evaluate.yaml")
    argv = ["monai.bundle", "run", "evaluating", "--config_file", files, "--lable_fraction", "0.1", "--eval_split", "test"]
    with caplog.at_level("WARNING"):
        unknown = warn_unknown_overrides(argv)
    assert list(unknown) == ["lable_fraction"]
    lines = [r.getMessage() for r in caplog.records if "lable_fraction" in r.getMessage()]
    assert len(lines) == 1 and "--label_fraction" in lines[0]
    # no config file named (a bundle run from Python): nothing to compare with, nothing said
    assert warn_unknown_overrides(["monai.bundle", "run", "--lable_fraction", "0.1"]) == {}


def test_bundle_run_warns_about_an_id_it_never_reads(tmp_path):
    """The real command line: ``--lable_fraction`` (a typo) on classification, ``--augment`` on segmentation."""
    cases = [("rd_classification_2d", "lable_fraction", "0.1", "is not an id", "--label_fraction"),
             ("rd_segmentation_2d", "augment", "true", "is not read by this configuration", None)]
    for bundle, name, value, said, hint in cases:
        cmd = bundle_command("initialize", bundle_configs(bundle, "train.yaml"), output_dir=str(tmp_path / bundle),
                             **{name: value})
        result = subprocess.run(cmd, cwd=tmp_path, env=bundle_env(), capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        warned = [line for line in output.splitlines() if f"--{name} {said}" in line]
        assert len(warned) == 1, output[-3000:]
        assert hint is None or hint in warned[0]
