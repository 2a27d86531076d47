"""The bundle's configs are plain MONAI configs: valid YAML, each idea written once, every
reference of every variant defined, every method overlay carried by the bundle folder."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml
from bundle_helpers import bundle_files, bundle_variants
from monai.bundle import ConfigParser

from rd_components.overrides import config_ids

CONFIGS = sorted((bundle_variants.BUNDLE / "configs").rglob("*.yaml"))
REFERENCE = re.compile(r"@(\w+(?:#\w+)*)")
USES = ("train.yaml", "evaluate.yaml", "multi_gpu_train.yaml")


def test_every_config_is_valid_yaml_without_template_markers():
    assert len(CONFIGS) > 20
    for path in CONFIGS:
        text = path.read_text()
        assert "{{" not in text, path
        assert isinstance(yaml.safe_load(text), dict), path


def test_no_two_config_files_share_more_than_40_identical_lines():
    """Each idea is written once: the variants are overrides, not copies."""
    lines = {p: [line for line in p.read_text().splitlines() if line.strip() and not line.strip().startswith("#")]
             for p in CONFIGS}
    for a, b in itertools.combinations(CONFIGS, 2):
        shared = sum(min(lines[a].count(line), lines[b].count(line)) for line in set(lines[a]) & set(lines[b]))
        assert shared <= 40, (a.name, b.name, shared)


def _undefined_references(files: list[str]) -> set[str]:
    config = ConfigParser.load_config_files(files)
    known = {i.replace("::", "#") for i in config_ids(config)}
    refs = set()
    for text in re.findall(r"['\"]?([^\n]*@[^\n]*)", "\n".join(_strings(config))):
        refs |= set(REFERENCE.findall(text))
    return {r for r in refs if r not in known}


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


@pytest.mark.parametrize("variant", list(bundle_variants.VARIANTS))
@pytest.mark.parametrize("use", USES)
def test_every_reference_of_every_variant_is_defined(variant, use):
    names = ("train.yaml",) if use == "train.yaml" else ("train.yaml", use)
    assert _undefined_references(bundle_files(variant, *names)) == set()


@pytest.mark.parametrize("variant", list(bundle_variants.VARIANTS))
def test_every_method_overlay_of_the_bundle_merges_on_its_variant(variant):
    overlays = sorted(bundle_variants.methods_dir(variant).glob("*.yaml"))
    assert overlays
    for overlay in overlays:
        files = bundle_files(variant, "train.yaml") + [str(overlay)]
        assert _undefined_references(files) == set(), overlay.name


@pytest.mark.parametrize("variant", list(bundle_variants.VARIANTS))
def test_inference_references_are_defined(variant):
    assert _undefined_references(bundle_files(variant, "inference.yaml")) == set()


def test_a_copied_bundle_runs_its_baselines_from_its_own_overlays(tmp_path):
    """compare.py --bundle_dir: a copy's configs/methods/ are the methods, edited overlays included."""
    import sys

    from bundle_helpers import REPO, copy_bundle

    sys.path.insert(0, str(REPO / "scripts"))
    from comparison import training_configs

    copy = copy_bundle(tmp_path / "my_bundle")
    (copy / "configs" / "methods" / "my_kd.yaml").write_text("method: my_kd\ntemperature: 2.0\n")
    files = training_configs("rd_classification_2d", "my_kd", copy)
    assert files == [str(copy / "configs" / "train.yaml"), str(copy / "configs" / "methods" / "my_kd.yaml")]
    seg = training_configs("rd_segmentation_3d", "student", copy)
    assert all(f.startswith(str(copy)) for f in seg) and seg[-1].endswith("methods/segmentation/student.yaml")
    assert _undefined_references(files) == set()
