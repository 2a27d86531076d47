"""Bad training input fails fast with one line per file, or is skipped and reported."""

from __future__ import annotations

import logging

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from rd_components.data import classification_transforms, load_datalist, preflight_items
from rd_components.embedded import build_dataset
from rd_components.errors import BadInputError
from rd_components.losses import cka


@pytest.fixture(scope="module")
def tiny_items(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    datalist = build_dataset(root, "mni152_tissue", 2, "nifti", patch_size=16, n_train=6, n_val=3, n_test=3, progress=False)
    return load_datalist(datalist, "training"), root


def _bad_files(folder):
    folder.mkdir(exist_ok=True)
    truncated = folder / "truncated.dcm"
    truncated.write_bytes(open(get_testdata_file("CT_small.dcm"), "rb").read()[:1500])
    text = folder / "notes.dcm"
    text.write_text("this is not an image")
    nan = folder / "nan.nii.gz"
    data = np.random.rand(16, 16).astype(np.float32)
    data[3, 4] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), nan)
    volume = folder / "volume.nii.gz"
    nib.save(nib.Nifti1Image(np.random.rand(16, 16, 16).astype(np.float32), np.eye(4)), volume)
    return {"truncated": truncated, "text": text, "nan": nan, "volume": volume}


@pytest.mark.parametrize(
    "case,expected",
    [("truncated", "truncated.dcm"), ("text", "notes.dcm"), ("nan", "NaN"), ("volume", "wrong dimensionality"),
     ("missing_label", "missing 'label'"), ("label_range", "out of range"), ("missing_file", "missing.nii.gz")],
)
def test_each_bad_input_fails_fast_naming_the_file(tiny_items, tmp_path, case, expected):
    items, _ = tiny_items
    bad = _bad_files(tmp_path / "bad")
    if case in bad:
        item = {"image": str(bad[case]), "label": 0, "id": case}
    elif case == "missing_label":
        item = {"image": items[0]["image"], "id": case}
    elif case == "label_range":
        item = {"image": items[0]["image"], "label": 7, "id": case}
    else:
        item = {"image": str(tmp_path / "missing.nii.gz"), "label": 0, "id": case}
    transform = classification_transforms(2, 16, "auto")
    with pytest.raises(BadInputError) as info:
        preflight_items(items + [item], transform, 2, 3, "error", progress=False)
    message = str(info.value)
    assert "1 bad training item" in message and expected in message
    assert str(item["image"]) in message  # names the file


def test_skip_policy_drops_and_reports(tiny_items, tmp_path, caplog):
    items, _ = tiny_items
    bad = _bad_files(tmp_path / "bad")
    extra = [{"image": str(path), "label": 0, "id": name} for name, path in bad.items()]
    with caplog.at_level(logging.WARNING):
        good = preflight_items(items + extra, classification_transforms(2, 16, "auto"), 2, 3, "skip", progress=False)
    assert len(good) == len(items)
    for path in bad.values():
        assert path.name in caplog.text


def test_empty_datalist_and_unknown_policy(tiny_items):
    with pytest.raises(BadInputError, match="empty"):
        preflight_items([], classification_transforms(2, 16), 2, 3)
    with pytest.raises(ValueError, match="on_bad_input"):
        preflight_items(tiny_items[0], classification_transforms(2, 16), 2, 3, "ignore")


def test_batch_too_small_for_cka_estimator_is_a_clear_error():
    import torch

    with pytest.raises(ValueError, match="4"):
        cka(torch.randn(3, 5), torch.randn(3, 6), unbiased=True)
