"""The user's own data is read as the user meant it, or refused in one line: split folders, frames of
unlabelled multi-frame files, numeric labels, CSVs with a byte-order mark, bad ``labels`` mappings, and
item ids that change whenever the pixels behind them do (the teacher feature cache keys on them)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydicom.data import get_testdata_file

from rd_components.data import classification_transforms, load_datalist, preflight_items, unlabeled_folder_items
from rd_components.data import class_names, normalise_user_data, read_datalist_info, stable_id
from rd_components.errors import DataConfigError

CLASSES = ("cyst", "normal", "tumour")
DIGEST = re.compile(r"@[0-9a-f]{16}$")


def _image(path: Path, seed: int = 0) -> Path:
    """A small random NIfTI slice at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.random.default_rng(seed).random((12, 12)).astype(np.float32), np.eye(4)), path)
    return path


def _class_images(folder: Path, n: int, seed: int = 0) -> dict[str, list[Path]]:
    """``{class: [paths]}``: ``n`` images per class in ``folder/<class>/``."""
    return {name: [_image(folder / name / f"{name}_{i}.nii.gz", seed + 10 * c + i) for i in range(n)]
            for c, name in enumerate(CLASSES)}


def _splits(path) -> dict[str, list[dict]]:
    return {s: load_datalist(path, s) for s in ("training", "validation", "test")}


def _one_line(error: pytest.ExceptionInfo, *words: str) -> None:
    text = str(error.value)
    assert "\n" not in text and all(w in text for w in words), text


# --- item 6: split folders ------------------------------------------------------------------------------


@pytest.mark.parametrize("names", [("train", "val", "test"), ("training", "validation", "testing"), ("Train", "valid", "test")])
def test_split_folders_are_read_as_splits_not_classes(tmp_path, names):
    for split, n in zip(names, (4, 2, 3)):
        _class_images(tmp_path / "data" / split, n, seed=len(split) * 100)
    path = normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2)
    assert class_names(read_datalist_info(path)) == list(CLASSES)
    splits = _splits(path)
    assert [len(splits[s]) for s in ("training", "validation", "test")] == [12, 6, 9]
    assert json.loads(path.read_text())["generated_splits"] == []
    # each item stays in the split of its folder, under the class of its sub-folder
    for split, folder in zip(("training", "validation", "test"), names):
        assert all(Path(it["image"]).parts[-3] == folder for it in splits[split])
        assert all(CLASSES[it["label"]] == Path(it["image"]).parts[-2] for it in splits[split])


def test_missing_split_folder_is_drawn_from_training(tmp_path):
    _class_images(tmp_path / "data" / "train", 6)
    _class_images(tmp_path / "data" / "test", 2, seed=50)
    path = normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2)
    splits = _splits(path)
    assert json.loads(path.read_text())["generated_splits"] == ["validation"]
    assert len(splits["test"]) == 6 and all("/test/" in it["image"] for it in splits["test"])
    assert len(splits["training"]) + len(splits["validation"]) == 18 and splits["validation"]
    assert all("/train/" in it["image"] for it in splits["training"] + splits["validation"])


def test_mix_of_split_and_class_folders_is_refused_naming_them(tmp_path):
    _class_images(tmp_path / "data", 3)
    _class_images(tmp_path / "data" / "test", 2)
    with pytest.raises(DataConfigError) as error:
        normalise_user_data(tmp_path / "data", tmp_path / "out", spatial_dims=2)
    _one_line(error, "test", "cyst", "normal", "tumour")


# --- item 7a: frames of unlabelled multi-frame files ------------------------------------------------------


def test_unlabeled_dir_keeps_each_frame_with_its_own_id(tmp_path):
    shutil.copy(get_testdata_file("emri_small_RLE.dcm"), tmp_path / "clip.dcm")  # 10 frames
    items = unlabeled_folder_items(tmp_path, 2)
    assert [it.get("frame") for it in items] == list(range(10))
    assert len({it["id"] for it in items}) == 10
    loaded = preflight_items(items[:2], classification_transforms(2, 16, "auto"), 2, 2, progress=False)
    assert loaded[0]["image"].shape == (1, 16, 16)


# --- item 7b: numeric labels ----------------------------------------------------------------------------


def test_numeric_label_strings_for_the_same_number_are_one_class(tmp_path):
    rows = ["image,label"]
    for c, spellings in enumerate((("1", "1.0", "01"), ("2", "2.0", "2"))):
        for i in range(6):
            _image(tmp_path / f"{c}_{i}.nii.gz", 10 * c + i)
            rows.append(f"{c}_{i}.nii.gz,{spellings[i % 3]}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    path = normalise_user_data(tmp_path / "labels.csv", tmp_path / "out", spatial_dims=2)
    assert class_names(read_datalist_info(path)) == ["1", "2"]
    items = [it for v in _splits(path).values() for it in v]
    assert {it["label"] for it in items if Path(it["image"]).name.startswith("1_")} == {1}


def test_numeric_label_spelt_as_float_finds_its_index_in_the_labels_mapping(tmp_path):
    training = [{"image": str(_image(tmp_path / f"{i}.nii.gz", i)), "label": ["0", "1.0", 1][i % 3]} for i in range(9)]
    (tmp_path / "dl.json").write_text(json.dumps({"labels": {"0": "a", "1": "b"}, "training": training}))
    path = normalise_user_data(tmp_path / "dl.json", tmp_path / "out", spatial_dims=2)
    items = [it for v in _splits(path).values() for it in v]
    assert sorted(it["label"] for it in items) == [0, 0, 0, 1, 1, 1, 1, 1, 1]


# --- item 7c: CSV saved with a byte-order mark ------------------------------------------------------------


def test_csv_with_utf8_byte_order_mark_is_read(tmp_path):
    rows = ["image,label"] + [f"{p.relative_to(tmp_path)},{name}" for name, paths in _class_images(tmp_path, 5).items()
                              for p in paths]
    (tmp_path / "labels.csv").write_bytes(("\n".join(rows) + "\n").encode("utf-8-sig"))
    path = normalise_user_data(tmp_path / "labels.csv", tmp_path / "out", spatial_dims=2)
    assert class_names(read_datalist_info(path)) == list(CLASSES)


# --- item 7d: labels mapping keys that are not class indices ----------------------------------------------


def _ready_datalist(tmp_path: Path, labels) -> Path:
    """A datalist with integer labels, digest ids and all three splits, and the given ``labels``."""
    images = _class_images(tmp_path / "data", 4)
    items = [{"image": str(p), "label": c, "id": stable_id(p, tmp_path / "data")} for c, name in enumerate(CLASSES)
             for p in images[name]]
    path = tmp_path / "data" / "dl.json"
    path.write_text(json.dumps({"labels": labels, "training": items[::2], "validation": items[1::4], "test": items[3::4]}))
    return path


@pytest.mark.parametrize("labels", [{"a": "cyst", "b": "normal", "c": "tumour"}, ["cyst", "normal", "tumour"],
                                    {"0": "cyst", "1": "normal", "2.5": "tumour"}])
def test_labels_mapping_with_non_integer_keys_is_one_line(tmp_path, labels):
    path = _ready_datalist(tmp_path, labels)
    with pytest.raises(DataConfigError) as error:
        normalise_user_data(path, tmp_path / "out", spatial_dims=2)
    _one_line(error, "dl.json", "'labels'")


@pytest.mark.parametrize("labels", [{"a": "normal"}, ["normal"], {"0": "a", "2": "b"}])
def test_class_names_of_a_bad_labels_mapping_is_one_line(tmp_path, labels):
    path = tmp_path / "dl.json"
    path.write_text(json.dumps({"labels": labels, "training": []}))
    with pytest.raises(DataConfigError) as error:
        class_names(read_datalist_info(path))
    _one_line(error, "dl.json", "'labels'")


def test_datalist_info_of_a_json_that_is_not_an_object_is_one_line(tmp_path):
    path = tmp_path / "dl.json"
    path.write_text("[1, 2]")
    with pytest.raises(DataConfigError) as error:
        read_datalist_info(path)
    _one_line(error, "dl.json")


def test_ready_datalist_label_outside_the_labels_mapping_is_one_line(tmp_path):
    path = _ready_datalist(tmp_path, {"0": "cyst", "1": "normal"})  # label 2 has no name
    with pytest.raises(DataConfigError) as error:
        normalise_user_data(path, tmp_path / "out", spatial_dims=2)
    _one_line(error, "dl.json", "2")


# --- item 3: every id changes when the pixels change -------------------------------------------------------


def _ids_by_image(path) -> dict[str, str]:
    return {Path(it["image"]).name: it["id"] for v in _splits(path).values() for it in v}


def test_csv_ids_change_when_the_file_changes(tmp_path):
    images = _class_images(tmp_path, 5)
    rows = ["image,label,id"] + [f"{p.relative_to(tmp_path)},{name},{name}{i}" for name, paths in images.items()
                                 for i, p in enumerate(paths)]
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    before = _ids_by_image(normalise_user_data(tmp_path / "labels.csv", tmp_path / "out", spatial_dims=2))
    assert before["cyst_0.nii.gz"].startswith("cyst0@") and all(DIGEST.search(i) for i in before.values())
    _image(images["cyst"][0], seed=999)  # same path, other pixels
    after = _ids_by_image(normalise_user_data(tmp_path / "labels.csv", tmp_path / "out", spatial_dims=2))
    assert after["cyst_0.nii.gz"] != before["cyst_0.nii.gz"]
    assert {k: v for k, v in after.items() if k != "cyst_0.nii.gz"} == {k: v for k, v in before.items() if k != "cyst_0.nii.gz"}


def test_unlabeled_dir_ids_change_when_the_file_changes(tmp_path):
    image = _image(tmp_path / "u" / "a.nii.gz")
    (first,) = unlabeled_folder_items(tmp_path / "u", 2)
    _image(image, seed=1)
    (second,) = unlabeled_folder_items(tmp_path / "u", 2)
    assert first["id"] != second["id"] and first["id"].startswith("unlabeled/a.nii.gz")


def test_datalist_ids_without_digest_are_not_used_as_they_are(tmp_path):
    images = _class_images(tmp_path / "data", 4)
    items = [{"image": str(p), "label": c, "id": f"{name}{i}"} for c, name in enumerate(CLASSES)
             for i, p in enumerate(images[name])]
    source = tmp_path / "data" / "dl.json"
    source.write_text(json.dumps({"labels": {str(i): n for i, n in enumerate(CLASSES)}, "training": items[::2],
                                  "validation": items[1::4], "test": items[3::4]}))
    listing = sorted(p.name for p in (tmp_path / "data").iterdir())
    path = normalise_user_data(source, tmp_path / "out", spatial_dims=2)
    assert path.parent == tmp_path / "out"
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == listing  # nothing written into the user's folder
    before = _ids_by_image(path)
    assert before["cyst_1.nii.gz"].startswith("cyst1@") and all(DIGEST.search(i) for i in before.values())
    # the normalised copy is itself ready; once its file changes, its id is stale and it is not used as it is
    assert normalise_user_data(path, tmp_path / "out2", spatial_dims=2) == path
    _image(images["cyst"][1], seed=999)
    again = normalise_user_data(path, tmp_path / "out2", spatial_dims=2)
    assert again != path and _ids_by_image(again)["cyst_1.nii.gz"] != before["cyst_1.nii.gz"]
    assert _ids_by_image(again)["cyst_1.nii.gz"].startswith("cyst1@")


def test_user_id_of_a_multiframe_file_differs_per_frame(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        shutil.copy(get_testdata_file("emri_small_RLE.dcm"), tmp_path / name / "clip.dcm")  # 10 frames
    training = [{"image": f"{name}/clip.dcm", "label": name, "frame": k, "id": f"clip_{name}"} for name in ("a", "b")
                for k in range(10)]
    (tmp_path / "dl.json").write_text(json.dumps({"training": training}))
    items = [it for v in _splits(normalise_user_data(tmp_path / "dl.json", tmp_path / "out", spatial_dims=2)).values()
             for it in v]
    assert len(items) == 20 and len({it["id"] for it in items}) == 20
    assert all(it["id"].startswith(f"clip_{Path(it['image']).parent.name}#{it['frame']}@") for it in items)


def test_unlabeled_dir_images_batch_with_datalist_items_that_carry_extra_fields(tmp_path):
    """The embedded datalists give each item extra fields ('centre'); the images of --unlabeled_dir have
    none, and a batch mixing both failed to collate (KeyError 'centre') on the first training step."""
    from monai.data import DataLoader

    data = tmp_path / "data"
    data.mkdir()
    items = [{"image": str(_image(data / f"a{i}.nii.gz", i)), "label": i % 2, "id": f"a{i}", "centre": [i, 0, 0]}
             for i in range(4)]
    (data / "datalist.json").write_text(json.dumps({"training": items, "validation": items, "test": items}))
    unlabeled = tmp_path / "unlabelled"
    unlabeled.mkdir()
    _image(unlabeled / "u.nii.gz", 9)
    files = load_datalist(data / "datalist.json", "training", unlabeled_dir=unlabeled, spatial_dims=2)
    checked = preflight_items(files, classification_transforms(2, 16), 2, 2, "error", "training")
    batch = next(iter(DataLoader(checked, batch_size=len(checked))))
    assert batch["image"].shape[0] == 5 and "centre" not in batch

