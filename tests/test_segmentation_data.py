"""Embedded segmentation tasks: label maps of the real volumes, hemisphere splits with no shared voxel."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from rd_components.embedded import SEGMENTATION_CLASSES, build_segmentation_dataset, segmentation_label_map
from rd_components.embedded.sources import load_mni152
from test_data import needs_colin


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
    assert datalist["labels"] == {str(i): n for i, n in enumerate(SEGMENTATION_CLASSES["mni152_tissue"])}
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


def test_coarsen_averages_intensity_takes_majority_labels_and_centres_the_affine():
    from rd_components.embedded.segmentation import coarsen

    image = np.arange(7 * 6 * 3, dtype=np.uint16).reshape(7, 6, 3)
    labels = np.zeros((7, 6, 3), dtype=np.uint8)
    labels[:3, :3, :2] = 2  # 18 of the first block's 27 voxels
    affine = np.diag([1.0, 2.0, 1.0, 1.0])
    affine[:3, 3] = (-90.0, -120.0, -70.0)
    small, small_labels, small_affine = coarsen(image, labels, affine, 3)
    assert small.shape == small_labels.shape == (2, 2, 1)  # the 7th x row is dropped
    assert small[0, 0, 0] == np.rint(image[:3, :3, :3].mean()) and small_labels[0, 0, 0] == 2 and small_labels[1, 1, 0] == 0
    # the coarse voxel's centre is the centre of its block of fine voxels
    np.testing.assert_allclose(nib.affines.apply_affine(small_affine, [1, 1, 0]),
                               nib.affines.apply_affine(affine, [4, 4, 1]))


@needs_colin
def test_lobe_patches_hold_left_hemisphere_voxels_only_and_every_second_is_mirrored(tmp_path):
    """colin27_aal: 3 mm whole-context cubes cut from the volume with the right hemisphere zeroed;
    a mirrored patch is the left-hemisphere patch flipped and placed at the mirrored world position."""
    from rd_components.embedded.segmentation import CONTEXT_GRID_FACTOR, coarsen
    from rd_components.embedded.sources import load_colin27_aal

    datalist_path = build_segmentation_dataset(tmp_path, "colin27_aal", 3, patch_size=32, n_train=4, n_val=2)
    datalist, folder = json.loads(datalist_path.read_text()), datalist_path.parent
    source = load_colin27_aal()
    _, labels, affine = coarsen(source.quantised, segmentation_label_map("colin27_aal", source), source.affine,
                                CONTEXT_GRID_FACTOR["colin27_aal"])
    to_voxel = np.linalg.inv(affine)
    for split in ("training", "validation"):
        for index, item in enumerate(datalist[split]):
            label = nib.load(str(folder / item["label"]))
            values = np.asarray(label.dataobj)
            assert values.shape == (32, 32, 32) and np.diag(label.affine)[:3].tolist() == [3.0, 3.0, 3.0]
            voxels = np.argwhere(values > 0)
            world = nib.affines.apply_affine(label.affine, voxels)
            mirrored = index % 2 == 1
            assert (world[:, 0] > 1.0).all() if mirrored else (world[:, 0] < -1.0).all(), (split, index)
            # each labelled voxel carries the label of the source voxel it came from (x -> -x when mirrored)
            source_world = world * np.array([-1.0 if mirrored else 1.0, 1.0, 1.0])
            ijk = np.rint(nib.affines.apply_affine(to_voxel, source_world)).astype(int)
            np.testing.assert_array_equal(values[tuple(voxels.T)], labels[tuple(ijk.T)])
            assert len(np.unique(values)) > 3  # a whole-context cube shows several lobes
    test_lo, _ = _world_box(folder / datalist["test"][0]["image"])
    assert test_lo[0] > 1.0


def test_training_voxel_size_is_the_training_grid(mni_seg_3d, tmp_path):
    from rd_components.data import training_voxel_size

    assert training_voxel_size(mni_seg_3d) == [1.0, 1.0, 1.0]
    flat = build_segmentation_dataset(tmp_path, "mni152_tissue", 2, patch_size=32, n_train=3, n_val=2)
    assert training_voxel_size(flat) == [1.0, 1.0, 0.0]  # 2D patches: keep the input's slice spacing
