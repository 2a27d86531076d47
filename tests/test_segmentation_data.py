"""Embedded segmentation tasks: label maps of the real volumes, hemisphere splits with no shared voxel."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from rd_components.data.segmentation_tasks import SEG_CLASS_NAMES, build_segmentation_dataset, segmentation_label_map
from rd_components.data.sources import load_mni152


@pytest.fixture(scope="module")
def mni_seg_3d(tmp_path_factory):
    root = tmp_path_factory.mktemp("seg")
    return build_segmentation_dataset(root, "mni152_tissue", 3, patch_size=32, n_train=12, n_val=4)


def _world_box(path):
    img = nib.load(str(path))
    corners = np.array([[0, 0, 0], [s - 1 for s in img.shape[:3]] + [0] * (3 - len(img.shape))])[:, :3]
    world = nib.affines.apply_affine(img.affine, corners)
    return world.min(0), world.max(0)


def test_hemisphere_split_and_voxel_labels_match_the_source(mni_seg_3d):
    datalist = json.loads(mni_seg_3d.read_text())
    folder = mni_seg_3d.parent
    assert datalist["labels"] == {str(i): n for i, n in enumerate(SEG_CLASS_NAMES["mni152_tissue"])}
    assert (len(datalist["training"]), len(datalist["validation"]), len(datalist["test"])) == (12, 4, 1)
    for split, side in (("training", -1), ("validation", -1), ("test", 1)):
        for item in datalist[split]:
            lo, hi = _world_box(folder / item["image"])
            assert (hi[0] < -1.0) if side < 0 else (lo[0] > 1.0), (split, lo, hi)  # left / right of the midline
            image, label = nib.load(str(folder / item["image"])), nib.load(str(folder / item["label"]))
            assert np.allclose(image.affine, label.affine) and image.shape == label.shape
    # training and validation patches share no voxel: disjoint axial slabs
    z = {s: [_world_box(folder / i["image"]) for i in datalist[s]] for s in ("training", "validation")}
    for lo_t, hi_t in z["training"]:
        for lo_v, hi_v in z["validation"]:
            assert hi_t[2] < lo_v[2] or hi_v[2] < lo_t[2]
    # a patch's labels are the task's label map at the patch's own voxels (found through its affine)
    source = load_mni152()
    full = segmentation_label_map("mni152_tissue", source)
    item = datalist["training"][0]
    label = nib.load(str(folder / item["label"]))
    corner = np.rint(nib.affines.apply_affine(np.linalg.inv(source.affine), label.affine[:3, 3])).astype(int)
    expected = full[corner[0] : corner[0] + 32, corner[1] : corner[1] + 32, corner[2] : corner[2] + 32]
    np.testing.assert_array_equal(np.asarray(label.dataobj), expected)
    assert set(np.unique(full)) == {0, 1, 2, 3}


def test_build_is_idempotent_and_checks_arguments(mni_seg_3d, tmp_path):
    before = mni_seg_3d.stat().st_mtime_ns
    again = build_segmentation_dataset(mni_seg_3d.parent.parent, "mni152_tissue", 3, patch_size=32, n_train=12, n_val=4)
    assert again == mni_seg_3d and again.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="multiple of 16"):
        build_segmentation_dataset(tmp_path, "mni152_tissue", 3, patch_size=40)
    with pytest.raises(ValueError, match="unknown segmentation task"):
        build_segmentation_dataset(tmp_path, "spleen", 3)
