"""The bundles' configs are rendered from one copy of the shared wiring and run from anywhere."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import yaml
from monai.bundle import ConfigWorkflow

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("generate_bundles", REPO / "scripts" / "generate_bundles.py")
generate_bundles = importlib.util.module_from_spec(spec)
spec.loader.exec_module(generate_bundles)

SPEC = yaml.safe_load((REPO / "bundles" / "templates" / "bundles.yaml").read_text())
BUNDLES = sorted(SPEC)
# bundle kinds under construction say so in bundles.yaml ("preview") and in their README
PREVIEW = sorted(name for name, entry in SPEC.items() if entry.get("preview"))
MODEL_ZOO_FILES = ["configs/train.yaml", "configs/evaluate.yaml", "configs/inference.yaml", "configs/multi_gpu_train.yaml",
                   "configs/metadata.json", "configs/logging.conf", "docs/README.md", "LICENSE"]
PREVIEW_FILES = ["configs/train.yaml", "configs/evaluate.yaml", "configs/inference.yaml", "configs/multi_gpu_train.yaml", "configs/metadata.json", "configs/logging.conf", "docs/README.md", "LICENSE"]


def test_committed_configs_match_their_templates():
    stale = generate_bundles.drifted()
    assert not stale, f"configs differ from bundles/templates (run scripts/generate_bundles.py): {stale}"


def test_drift_is_detected(tmp_path):
    copy = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles", copy)
    train = copy / BUNDLES[0] / "configs" / "train.yaml"
    train.write_text(train.read_text().replace("learning_rate: 0.001", "learning_rate: 0.002"))
    assert generate_bundles.drifted(copy) == [train]


def test_missing_and_unused_values_are_errors(tmp_path):
    copy = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles" / "templates", copy / "templates")
    spec_file = copy / "templates" / "bundles.yaml"
    spec_data = yaml.safe_load(spec_file.read_text())
    del spec_data[BUNDLES[0]]["values"]["teacher"]
    spec_file.write_text(yaml.safe_dump(spec_data))
    with pytest.raises(KeyError, match="teacher"):
        generate_bundles.rendered_configs(copy)
    spec_data[BUNDLES[0]]["values"]["teacher"] = "x"
    spec_data[BUNDLES[0]]["values"]["not_in_any_template"] = 1
    spec_file.write_text(yaml.safe_dump(spec_data))
    with pytest.raises(KeyError, match="not_in_any_template"):
        generate_bundles.rendered_configs(copy)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_bundle_folder_is_self_contained(bundle):
    folder = REPO / "bundles" / bundle
    missing = [name for name in (PREVIEW_FILES if bundle in PREVIEW else MODEL_ZOO_FILES) if not (folder / name).is_file()]
    assert not missing, f"{bundle} lacks {missing}"
    if bundle in PREVIEW:
        assert "preview" in (folder / "docs" / "README.md").read_text().lower()


@pytest.mark.parametrize("bundle", BUNDLES)
def test_copied_bundle_knows_its_own_root(bundle, tmp_path):
    """A bundle copied elsewhere resolves bundle_root, outputs and checkpoints to the copy."""
    copy = tmp_path / "somewhere" / "my_bundle"
    shutil.copytree(REPO / "bundles" / bundle, copy)
    for config in ("train.yaml",) if bundle in PREVIEW else ("train.yaml", "inference.yaml"):
        workflow = ConfigWorkflow(config_file=str(copy / "configs" / config), workflow_type="train")
        workflow.initialize()
        assert workflow.bundle_root == str(copy.resolve())
    overridden = ConfigWorkflow(config_file=str(copy / "configs" / "train.yaml"), workflow_type="train",
                                bundle_root=str(tmp_path / "elsewhere"))
    overridden.initialize()
    assert overridden.bundle_root == str(tmp_path / "elsewhere")


def test_model_zoo_commands_find_the_copied_bundle(tmp_path):
    """MONAI commands other than ``run`` (here ``verify_net_in_out``) resolve bundle_root too."""
    from monai.bundle import verify_net_in_out

    copy = tmp_path / "my_bundle"
    shutil.copytree(REPO / "bundles" / "rd_classification_2d", copy)
    verify_net_in_out("network_def", meta_file=str(copy / "configs" / "metadata.json"),
                      config_file=str(copy / "configs" / "train.yaml"), dataset_dir=str(tmp_path / "data"))
    assert (tmp_path / "data").is_dir()


def test_partials_render_into_every_kind_and_a_missing_one_is_an_error(tmp_path):
    """A block the kinds share (bundles/templates/partials) is written once and lands in each kind's config."""
    partial = (REPO / "bundles" / "templates" / "partials" / "inference_locations.yaml").read_text()
    for bundle in BUNDLES:
        assert partial in (REPO / "bundles" / bundle / "configs" / "inference.yaml").read_text(), bundle
    copy = tmp_path / "bundles"
    shutil.copytree(REPO / "bundles" / "templates", copy / "templates")
    (copy / "templates" / "partials" / "inference_locations.yaml").unlink()
    with pytest.raises(KeyError, match="inference_locations"):
        generate_bundles.rendered_configs(copy)
