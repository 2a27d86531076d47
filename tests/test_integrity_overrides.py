"""A command-line id that no config of the bundle defines is said in one warning line, not silently added."""

from __future__ import annotations

import subprocess

from bundle_helpers import bundle_command, bundle_configs, bundle_env
from monai.bundle import ConfigParser

from rd_components.overrides import command_line_overrides, unknown_overrides, warn_unknown_overrides


def _config(bundle: str, *names: str) -> dict:
    return ConfigParser.load_config_files([bundle_configs(bundle, n) for n in names])


def test_command_line_overrides_reads_both_forms():
    argv = ["monai.bundle", "run", "training", "--config_file", "a.yaml", "--epochs", "3", "--seed=1", "--augment"]
    assert command_line_overrides(argv) == {"config_file": "a.yaml", "epochs": "3", "seed": "1", "augment": None}


def test_mistyped_label_fraction_is_named_with_the_nearest_id():
    unknown = unknown_overrides(_config("rd_classification_2d", "train.yaml"), ["lable_fraction", "epochs", "seed"])
    assert list(unknown) == ["lable_fraction"]
    assert unknown["lable_fraction"][0] == "label_fraction"


def test_known_nested_ids_and_extensions_are_not_flagged():
    config = _config("rd_classification_2d", "train.yaml")
    overrides = ["train#dataloader#num_workers", "+loss_weights", "loss_weights#kd_weight", "validate#handlers#0#epoch_level",
                 "config_file", "tracking"]
    assert unknown_overrides(config, overrides) == {}
    # a key under an id the config does not define is unknown too
    assert list(unknown_overrides(config, ["trian#dataloader#num_workers"])) == ["trian#dataloader#num_workers"]


def test_resume_on_a_bundle_without_resume_is_flagged():
    segmentation = _config("rd_segmentation_3d", "train.yaml")
    if "resume" in segmentation:  # the segmentation bundles gained resume: the case no longer applies
        return
    assert "resume" in unknown_overrides(segmentation, ["resume"])


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
    """The real command line: ``--lable_fraction`` (a typo) on the classification bundle, ``--resume`` on segmentation."""
    cases = [("rd_classification_2d", "lable_fraction", "0.1", "--label_fraction"),
             ("rd_segmentation_2d", "resume", "true", None)]
    for bundle, name, value, hint in cases:
        cmd = bundle_command("initialize", bundle_configs(bundle, "train.yaml"), output_dir=str(tmp_path / bundle),
                             **{name: value})
        result = subprocess.run(cmd, cwd=tmp_path, env=bundle_env(), capture_output=True, text=True, timeout=300)
        output = result.stdout + result.stderr
        assert result.returncode == 0, output[-3000:]
        warned = [line for line in output.splitlines() if f"--{name} is not an id" in line]
        if bundle == "rd_segmentation_2d" and not warned and "resume" in _config(bundle, "train.yaml"):
            continue  # the segmentation bundle gained resume
        assert warned, output[-3000:]
        assert hint is None or hint in warned[0]
