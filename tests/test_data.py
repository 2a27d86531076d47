"""Tests of rd_components.data: builds of tiny real-data tasks, formats, splits and presets."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from rd_components.data import (
    class_counts,
    classification_transforms,
    has_random_transforms,
    UNLABELED,
    LabeledRatioBatchSampler,
    labeled_items,
    load_datalist,
    preflight_items,
    read_datalist,
    subsample_training,
)
from rd_components.data.writers import QUANT_LEVELS
from rd_components.embedded import build_dataset, ensure_dataset
from rd_components.embedded.sources import mricron_template_dir
from rd_components.errors import BadInputError

TINY = {"n_train": 9, "n_val": 6, "n_test": 6}
SPLITS = ("training", "validation", "test")


def _colin_available() -> bool:
    try:
        mricron_template_dir()
    except FileNotFoundError:
        return False
    return True


needs_colin = pytest.mark.skipif(
    not _colin_available(),
    reason="Colin27/AAL templates missing: apt-get install mricron-data (or set RD_MRICRON_TEMPLATES)",
)


def _tree_digest(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def mni(tmp_path_factory) -> dict:
    """Tiny MNI152 builds: 2D (P=16) and 3D (P=8), NIfTI and DICOM, all under one root."""
    root = tmp_path_factory.mktemp("mni")
    paths = {}
    for dims, p in ((2, 16), (3, 8)):
        for fmt in ("nifti", "dicom"):
            paths[(dims, fmt)] = build_dataset(root, "mni152_tissue", dims, fmt, patch_size=p, progress=False, **TINY)
    return {"root": root, "paths": paths}


def test_datalist_layout_and_monai_loading(mni):
    from monai.data import load_decathlon_datalist

    path = mni["paths"][(2, "nifti")]
    assert path == mni["root"] / "mni152_tissue_2d_nifti" / "datalist.json"
    dl = read_datalist(path)
    for key in ("name", "description", "task", "label_set", "spatial_dims", "format", "patch_size", "num_classes",
                "labels", "intensity", "source", "training", "validation", "test"):
        assert key in dl, key
    assert dl["labels"] == {"0": "grey matter", "1": "white matter", "2": "CSF/other"}
    assert dl["patch_size"] == [16, 16] and dl["spatial_dims"] == 2 and dl["num_classes"] == 3
    assert dl["intensity"]["percentile"] == 99.5 and "nilearn" in dl["source"]
    items = load_decathlon_datalist(path, is_segmentation=False, data_list_key="training")
    assert len(items) == 9 and all(os.path.isabs(it["image"]) and os.path.exists(it["image"]) for it in items)
    assert not os.path.isabs(dl["training"][0]["image"])  # stored relative to the datalist folder
    ids = [it["id"] for s in SPLITS for it in dl[s]]
    assert len(set(ids)) == len(ids)
    assert load_datalist(path, "val") == load_decathlon_datalist(path, False, "validation")


def test_class_balance_and_label_range(mni):
    for (dims, fmt), path in mni["paths"].items():
        dl = read_datalist(path)
        assert class_counts(dl["training"]) == {0: 3, 1: 3, 2: 3}
        assert class_counts(dl["validation"]) == class_counts(dl["test"]) == {0: 2, 1: 2, 2: 2}
        assert all(0 <= it["label"] < dl["num_classes"] for s in SPLITS for it in dl[s])


def test_labels_follow_tissue_maps(mni):
    from rd_components.embedded.sources import load_mni152

    vol = load_mni152()
    gm, wm, mask = (vol.label_maps[k] for k in ("gm", "wm", "mask"))
    dl = read_datalist(mni["paths"][(3, "nifti")])
    for it in dl["training"] + dl["test"]:
        c = tuple(it["centre"])
        probs = [gm[c], wm[c], 1.0 - gm[c] - wm[c]]
        assert mask[c] and int(np.argmax(probs)) == it["label"] and max(probs) >= 0.5


def test_spatial_split_disjoint(mni):
    # 2D: axial slabs with a gap, patches are one slice thick -> distinct slices >= gap apart
    dl2 = read_datalist(mni["paths"][(2, "nifti")])
    gap = dl2["split"]["gap_voxels"]
    z = {s: np.array([it["centre"][2] for it in dl2[s]]) for s in SPLITS}
    for a, b in (("training", "validation"), ("training", "test"), ("validation", "test")):
        assert np.abs(z[a][:, None] - z[b][None, :]).min() > gap
    # 3D: coronal slabs, gap = patch size -> cubes of different splits never overlap
    dl3 = read_datalist(mni["paths"][(3, "nifti")])
    axis = "xyz".index(dl3["split"]["axis"])
    p = dl3["patch_size"][0]
    c = {s: np.array([it["centre"] for it in dl3[s]]) for s in SPLITS}
    for a, b in (("training", "validation"), ("training", "test"), ("validation", "test")):
        dist = np.abs(c[a][:, None, :] - c[b][None, :, :]).max(-1)  # Chebyshev: overlap iff < p
        assert dist.min() >= p
        assert np.abs(c[a][:, None, axis] - c[b][None, :, axis]).min() >= p


def test_deterministic_and_idempotent(mni, tmp_path):
    first = mni["paths"][(2, "dicom")]
    again = build_dataset(mni["root"], "mni152_tissue", 2, "dicom", patch_size=16, progress=False, **TINY)
    assert again == first
    # idempotent: nothing rewritten
    folder = first.parent
    before = {p: p.stat().st_mtime_ns for p in folder.rglob("*")}
    build_dataset(mni["root"], "mni152_tissue", 2, "dicom", patch_size=16, progress=False, **TINY)
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*")} == before
    # deterministic: a fresh build elsewhere is byte-identical (files, UIDs, datalist)
    other = build_dataset(tmp_path, "mni152_tissue", 2, "dicom", patch_size=16, progress=False, **TINY)
    assert other.read_text() == first.read_text()
    assert _tree_digest(other.parent) == _tree_digest(folder)
    # other parameters -> rebuilt, different samples
    seeded = build_dataset(tmp_path, "mni152_tissue", 2, "dicom", patch_size=16, seed=1, progress=False, **TINY)
    assert seeded == other and read_datalist(seeded)["training"] != read_datalist(first)["training"]


def test_nifti_pixel_data_deterministic(mni, tmp_path):
    other = build_dataset(tmp_path, "mni152_tissue", 3, "nifti", patch_size=8, progress=False, **TINY)

    def pixel_hash(path):
        dl = read_datalist(path)
        digest = hashlib.sha256()
        for it in dl["training"] + dl["validation"] + dl["test"]:
            digest.update(np.asarray(nib.load(str(path.parent / it["image"])).dataobj).tobytes())
        return digest.hexdigest()

    assert pixel_hash(other) == pixel_hash(mni["paths"][(3, "nifti")])
    assert _tree_digest(other.parent) == _tree_digest(mni["paths"][(3, "nifti")].parent)  # byte-identical gz


def test_ensure_dataset_logs_one_line(mni, caplog):
    with caplog.at_level(logging.INFO, logger="rd_components.embedded"):
        path = ensure_dataset(mni["root"], "mni152_tissue", 2, "nifti", patch_size=16, progress=False, **TINY)
    assert path == mni["paths"][(2, "nifti")]
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("rd_components.embedded")]
    assert len(lines) == 1 and "using dataset" in lines[0]


def test_refuses_foreign_folder(tmp_path):
    foreign = tmp_path / "mni152_tissue_2d_nifti"
    foreign.mkdir()
    (foreign / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        build_dataset(tmp_path, "mni152_tissue", 2, "nifti", patch_size=16, progress=False, **TINY)
    assert (foreign / "mine.txt").exists()


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown task"):
        build_dataset(tmp_path, "mednist")
    with pytest.raises(ValueError, match="fmt"):
        build_dataset(tmp_path, fmt="png")
    with pytest.raises(TypeError, match="n_tain"):
        build_dataset(tmp_path, n_tain=3)
    with pytest.raises(ValueError, match="at least one"):
        build_dataset(tmp_path, patch_size=16, progress=False, n_train=2, n_val=3, n_test=3)


def test_subsample_training_stratified():
    training = [{"image": f"{i}.nii.gz", "label": i % 4 if i < 380 else 0, "id": str(i)} for i in range(400)]
    dl = {"training": training, "validation": [{"image": "v", "label": 1}], "test": [{"image": "t", "label": 2}]}
    counts = class_counts(training)
    for fraction in (0.01, 0.1, 1.0):
        sub = subsample_training(dl, fraction, seed=3)
        got = class_counts(sub["training"])
        assert got == {c: max(1, int(np.floor(fraction * n + 0.5))) for c, n in counts.items()}
        assert sub["validation"] == dl["validation"] and sub["test"] == dl["test"]
        assert sub["training_fraction"] == fraction
    assert dl["training"] == training  # input untouched
    ids = {f: {it["id"] for it in subsample_training(dl, f, 3)["training"]} for f in (0.01, 0.1, 1.0)}
    assert ids[0.01] <= ids[0.1] <= ids[1.0]  # nested
    assert subsample_training(dl, 0.1, 3) == subsample_training(dl, 0.1, 3)
    assert ids[0.1] != {it["id"] for it in subsample_training(dl, 0.1, 4)["training"]}
    with pytest.raises(ValueError):
        subsample_training(dl, 0.0, 0)


def test_load_datalist_fraction_hides_labels_keeps_images(mni):
    path = mni["paths"][(2, "nifti")]
    full = load_datalist(path, "training")
    sub = load_datalist(path, "training", fraction=0.34, seed=0)
    # every image stays; a stratified third keeps its label, the rest are UNLABELED
    assert [it["image"] for it in sub] == [it["image"] for it in full]
    assert class_counts(sub) == {0: 1, 1: 1, 2: 1} and all(os.path.isabs(it["image"]) for it in sub)
    assert sum(it["label"] == UNLABELED for it in sub) == len(full) - 3
    kept = {it["id"] for it in labeled_items(sub)}
    assert all(it["label"] == ref["label"] for it, ref in zip(sub, full) if it["id"] in kept)
    with pytest.raises(ValueError):
        load_datalist(path, "test", fraction=0.5)


def test_load_datalist_unlabeled_list_and_folder(mni, tmp_path):
    import shutil

    source = mni["paths"][(2, "nifti")]
    dl = read_datalist(source)
    folder = tmp_path / "own"
    folder.mkdir()
    for it in dl["test"][:2]:  # the user's own unlabelled images
        shutil.copy(source.parent / it["image"], folder / Path(it["image"]).name)
    dl["unlabeled"] = [{"image": str(source.parent / it["image"])} for it in dl["validation"][:3]]
    path = tmp_path / "datalist.json"
    path.write_text(json.dumps(dl))
    items = load_datalist(path, "training", unlabeled_dir=folder, spatial_dims=2)
    assert len(items) == len(dl["training"]) + 3 + 2
    extra = items[len(dl["training"]):]
    assert all(it["label"] == UNLABELED and it["id"] for it in extra)
    assert len({it["id"] for it in extra}) == 5  # the feature cache needs distinct ids
    assert len(load_datalist(path, "training", unlabeled=False)) == len(dl["training"])
    with pytest.raises(ValueError, match="spatial_dims"):
        load_datalist(path, "training", unlabeled_dir=folder)


def test_preflight_accepts_unlabeled_training_items_only(mni):
    path = mni["paths"][(2, "nifti")]
    transform = classification_transforms(2, (16, 16), "nifti")
    items = load_datalist(path, "training", fraction=0.34, seed=0)
    good = preflight_items(items, transform, 2, 3, progress=False)
    assert len(good) == len(items)
    with pytest.raises(BadInputError, match="out of range"):
        preflight_items(items, transform, 2, 3, split="validation", progress=False)


def test_labeled_ratio_batch_sampler():
    labels = [0, 1, 2, 3] + [UNLABELED] * 60
    sampler = LabeledRatioBatchSampler(labels, 8, labeled_ratio=0.5, drop_last=True)
    torch.manual_seed(0)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 8  # len(items) / batch: the same steps at any ratio
    for batch in batches:
        assert len(batch) == 8 and sum(labels[i] >= 0 for i in batch) == 4
    unlabelled_seen = [i for b in batches for i in b if labels[i] < 0]
    assert len(set(unlabelled_seen)) == len(unlabelled_seen) == 32  # no repeat within a pass
    torch.manual_seed(0)
    assert list(sampler) == batches  # seeded by torch's global RNG (set_determinism, resume)
    natural = LabeledRatioBatchSampler(labels, 8, labeled_ratio=None, drop_last=False)
    assert sorted(i for b in natural for i in b) == list(range(64))
    only_labelled = LabeledRatioBatchSampler(labels, 8, labeled_ratio=1.0)
    assert all(labels[i] >= 0 for b in only_labelled for i in b) and len(only_labelled) == 8
    all_labelled = LabeledRatioBatchSampler([0, 1] * 5, 4, labeled_ratio=0.25)
    assert sum(len(b) for b in all_labelled) == 10  # no unlabelled pool: plain batches
    with pytest.raises(ValueError):
        LabeledRatioBatchSampler(labels, 8, labeled_ratio=1.5)


def _source_crop(vol: np.ndarray, centre, p: int, dims: int) -> np.ndarray:
    s = np.array(centre) - p // 2
    padded = np.pad(vol, p)
    s = s + p
    if dims == 2:
        return padded[s[0]:s[0] + p, s[1]:s[1] + p, centre[2] + p]
    return padded[s[0]:s[0] + p, s[1]:s[1] + p, s[2]:s[2] + p]


@pytest.mark.parametrize("dims", [2, 3])
def test_dicom_and_nifti_give_same_tensor(mni, dims):
    from rd_components.embedded.sources import load_mni152

    real = load_mni152().quantised.astype(np.float32) / QUANT_LEVELS
    nif = load_datalist(mni["paths"][(dims, "nifti")], "test")
    dcm = load_datalist(mni["paths"][(dims, "dicom")], "test")
    p = 16 if dims == 2 else 8
    t_nif = classification_transforms(dims, p, "nifti", train=False)
    t_dcm = classification_transforms(dims, p, "dicom", train=False)
    for a, b in zip(nif, dcm):
        assert a["id"] == b["id"]
        if dims == 3:
            assert os.path.isdir(b["image"]) and len(os.listdir(b["image"])) == p
        x, y = t_nif(a), t_dcm(b)
        assert x["image"].shape == y["image"].shape == (1,) + (p,) * dims
        assert x["image"].dtype == y["image"].dtype == torch.float32
        assert (x["image"] - y["image"]).abs().max().item() <= 1.0 / 4095
        assert np.allclose(x["image"].affine, y["image"].affine)
        # the right voxels, in RAS order: equal to the crop of the source volume
        np.testing.assert_allclose(x["image"][0].numpy(), _source_crop(real, a["centre"], p, dims), atol=1e-7)
        assert x["label"].dtype == torch.long and x["label"].ndim == 0 and int(x["label"]) == a["label"]
        assert x["id"] == a["id"]


def test_dicom_tags(mni):
    dl = read_datalist(mni["paths"][(3, "dicom")])
    folder = mni["paths"][(3, "dicom")].parent / dl["training"][0]["image"]
    files = sorted(folder.iterdir())
    slices = [pydicom.dcmread(f) for f in files]
    first = slices[0]
    assert first.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert first.SOPClassUID == pydicom.uid.MRImageStorage and first.Modality == "MR"
    assert str(first.PatientName) == "ANON" and first.PatientID == "ANON"
    assert float(first.RescaleSlope) == 1.0 / QUANT_LEVELS and float(first.RescaleIntercept) == 0.0
    assert [float(v) for v in first.PixelSpacing] == [1.0, 1.0] and float(first.SliceThickness) == 1.0
    assert len({s.StudyInstanceUID for s in slices}) == len({s.SeriesInstanceUID for s in slices}) == 1
    assert len({s.SOPInstanceUID for s in slices}) == len(slices)
    assert [int(s.InstanceNumber) for s in slices] == list(range(1, len(slices) + 1))
    z = [float(s.ImagePositionPatient[2]) for s in slices]
    assert np.allclose(np.diff(z), 1.0)
    for s in slices:
        assert s.SOPInstanceUID.is_valid and s.StudyInstanceUID.is_valid and len(s.SOPInstanceUID) <= 64
        assert s.pixel_array.dtype == np.uint16 and s.pixel_array.max() <= QUANT_LEVELS
    # 2D: one file per patch
    dl2 = read_datalist(mni["paths"][(2, "dicom")])
    one = pydicom.dcmread(mni["paths"][(2, "dicom")].parent / dl2["test"][0]["image"])
    assert one.Rows == one.Columns == 16 and [float(v) for v in one.ImageOrientationPatient] == [1, 0, 0, 0, 1, 0]


def test_squeeze_singleton_2d_volume(tmp_path):
    arr = np.random.default_rng(0).random((12, 10, 1)).astype(np.float32)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "slice.nii.gz"))
    out = classification_transforms(2, None, "nifti")({"image": str(tmp_path / "slice.nii.gz"), "label": 1})
    assert out["image"].shape == (1, 12, 10)
    np.testing.assert_allclose(out["image"][0].numpy(), arr[..., 0], atol=1e-6)


def test_preset_resizes_clips_and_flags_randomness(tmp_path):
    arr = np.linspace(-0.5, 1.5, 20 * 20, dtype=np.float32).reshape(20, 20)
    nib.save(nib.Nifti1Image(arr, np.eye(4)), str(tmp_path / "big.nii.gz"))
    out = classification_transforms(2, 8, "nifti")({"image": str(tmp_path / "big.nii.gz")})
    assert out["image"].shape == (1, 8, 8) and out["image"].min() >= 0 and out["image"].max() <= 1
    assert not has_random_transforms(classification_transforms(2, 8, "nifti", train=True, augment=False))
    assert not has_random_transforms(classification_transforms(2, 8, "nifti", train=False, augment=True))
    assert has_random_transforms(classification_transforms(2, 8, "nifti", train=True, augment=True))


def test_missing_mricron_error_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        build_dataset(tmp_path, "colin27_aal", template_dir=tmp_path / "nowhere")
    assert "apt-get install mricron-data" in str(err.value) and "\n" not in str(err.value)


@needs_colin
def test_colin27_left_right_split(tmp_path):
    from rd_components.embedded.sources import aal_lobe_of_code, load_colin27_aal

    path = build_dataset(tmp_path, "colin27_aal", 2, "nifti", "lobe", patch_size=16, progress=False,
                         n_train=16, n_val=8, n_test=8)
    dl = read_datalist(path)
    assert dl["num_classes"] == 8 and class_counts(dl["training"]) == {c: 2 for c in range(8)}
    vol = load_colin27_aal()
    x_world = lambda it: vol.affine[0, 0] * it["centre"][0] + vol.affine[0, 3]  # noqa: E731
    assert all(x_world(it) < 0 for it in dl["training"] + dl["validation"])
    assert all(x_world(it) > 0 for it in dl["test"])
    # validation centres sit on slices no training centre uses
    assert not {it["centre"][2] for it in dl["training"]} & {it["centre"][2] for it in dl["validation"]}
    aal = vol.label_maps["aal"]
    for it in dl["training"] + dl["test"]:
        region = int(aal[tuple(it["centre"])])
        assert region > 0 and aal_lobe_of_code(vol.names[region][1]) == it["label"]
        side = vol.names[region][0][-2:]
        assert side in ("_L", "_R") or vol.names[region][0].startswith("Vermis")
    item = load_datalist(path, "test")[0]
    out = classification_transforms(2, 16, "nifti")(item)
    assert out["image"].shape == (1, 16, 16)


@needs_colin
def test_colin27_region_classes_and_3d_dicom(tmp_path):
    path = build_dataset(tmp_path, "colin27_aal", 3, "dicom", "region", patch_size=8, progress=False,
                         n_train=62, n_val=62, n_test=62)
    dl = read_datalist(path)
    assert dl["num_classes"] == 62 and dl["labels"]["0"] == "Precentral" and dl["labels"]["61"] == "Vermis_10"
    assert class_counts(dl["test"]) == {c: 1 for c in range(62)}
    item = load_datalist(path, "test")[0]
    out = classification_transforms(3, 8, "dicom")(item)
    assert out["image"].shape == (1, 8, 8, 8)


def test_cli_prints_path_and_counts(tmp_path, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    try:
        import prepare_data
    finally:
        sys.path.pop(0)
    status = prepare_data.main(["--root", str(tmp_path), "--patch_size", "16", "--n_train", "6", "--n_val", "3",
                                "--n_test", "3", "--quiet"])
    out = capsys.readouterr().out
    assert status == 0
    assert str(tmp_path / "mni152_tissue_2d_nifti" / "datalist.json") in out
    assert "training" in out and "{0: 2, 1: 2, 2: 2}" in out
    assert json.loads((tmp_path / "mni152_tissue_2d_nifti" / "manifest.json").read_text())["n_train"] == 6
