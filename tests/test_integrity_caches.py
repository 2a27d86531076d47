"""No silent wrong result from the teacher feature cache or the embedded segmentation datasets.

(a) a rebuilt dataset (other build parameters, same folder, ids and paths) never gets the old features;
(b) a rebuild killed halfway never leaves an image of one build beside the label map of another;
(c) a file replaced at the same path with the same id gets new features;
(d) a cache folder that cannot be written warns once and training goes on.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset
from torch import nn

from rd_components.data import segmentation_transforms
from rd_components.embedded import segmentation as segmentation_tasks
from rd_components.data.segmentation.pipeline import segmentation_items
from rd_components.embedded.segmentation import build_segmentation_dataset
from rd_components.data.writers import write_nifti
from rd_components.foundation import TeacherFeatureCache, TeacherFeatureSource

TINY = dict(task="mni152_tissue", spatial_dims=2, patch_size=16, n_val=1)


class _CountingTeacher(nn.Module):
    """A fixed random conv standing in for a frozen teacher; counts the images it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(1, 3, 3, stride=2, padding=1)
        self.calls = 0
        self.eval().requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += x.shape[0]
        return self.conv(torch.as_tensor(x))


def _batch(items: list[dict]) -> dict:
    """All items in one batch, loaded as the segmentation bundles load them (metadata kept)."""
    loader = DataLoader(Dataset(items, transform=segmentation_transforms(("image",))), batch_size=len(items))
    return next(iter(loader))


def _served_and_true(source: TeacherFeatureSource, items: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = _batch(items)
    served = source(batch["image"], batch)
    with torch.no_grad():
        true = source.teacher.conv(torch.as_tensor(batch["image"]))
    return served, true


def test_rebuilt_segmentation_dataset_never_serves_stale_teacher_features(tmp_path):
    """Changing num_train_patches rebuilds train_00000... at the same paths: each item must get its own features."""
    root, cache_dir = tmp_path / "data", tmp_path / "cache"
    datalist = build_segmentation_dataset(root, n_train=3, **TINY)
    # the namespace as the bundles built it before content keys: the datalist path does not change on a rebuild
    preprocessing = {"datalist": str(datalist), "patch_size": 16}
    cache = TeacherFeatureCache("toy", "w", preprocessing, cache_dir=cache_dir)
    first = TeacherFeatureSource(_CountingTeacher(), cache)
    served, true = _served_and_true(first, segmentation_items(datalist, "training"))
    torch.testing.assert_close(served, true)

    again = build_segmentation_dataset(root, n_train=5, **TINY)
    assert again == datalist
    cache = TeacherFeatureCache("toy", "w", preprocessing, cache_dir=cache_dir)
    second = TeacherFeatureSource(_CountingTeacher(), cache)
    served, true = _served_and_true(second, segmentation_items(again, "training"))
    torch.testing.assert_close(served, true)  # stale features of the 3-patch build would differ here
    assert cache.misses >= 1  # the first patches changed pixels, so they are not hits


def test_interrupted_segmentation_rebuild_leaves_every_image_with_its_own_label_map(tmp_path, monkeypatch):
    """A rebuild with other parameters killed halfway, then a run with the earlier ones: the clean build's bytes."""
    clean = build_segmentation_dataset(tmp_path / "clean", n_train=4, seed=0, **TINY).parent
    root = tmp_path / "data"
    build_segmentation_dataset(root, n_train=4, seed=0, **TINY)

    real, calls = segmentation_tasks.write_label_nifti, []

    def dies_on_the_third_label(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(segmentation_tasks, "write_label_nifti", dies_on_the_third_label)
    with pytest.raises(RuntimeError, match="killed"):
        build_segmentation_dataset(root, n_train=6, seed=1, **TINY)
    monkeypatch.undo()

    folder = build_segmentation_dataset(root, n_train=4, seed=0, **TINY).parent
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file()) == files
    mixed = [str(f) for f in files if (folder / f).read_bytes() != (clean / f).read_bytes()]
    assert not mixed, f"files of another build: {mixed}"
    assert not [p.name for p in root.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_replaced_file_at_the_same_path_and_id_gets_new_features(tmp_path):
    """Same id, same path, new pixels: a cache miss and the new image's features, in this run and the next."""
    path = tmp_path / "case.nii.gz"
    rng = np.random.default_rng(0)
    write_nifti(path, rng.integers(0, 4096, (16, 16), dtype=np.uint16), np.eye(4))
    items = [{"image": str(path), "id": "case0"}]
    cache_dir = tmp_path / "cache"
    cache = TeacherFeatureCache("toy", "w", {"patch_size": 16}, cache_dir=cache_dir)
    source = TeacherFeatureSource(_CountingTeacher(), cache)
    _served_and_true(source, items)
    _served_and_true(source, items)
    assert (cache.hits, cache.misses) == (1, 1)

    write_nifti(path, rng.integers(0, 4096, (16, 16), dtype=np.uint16), np.eye(4))  # replaced in place
    served, true = _served_and_true(source, items)  # same process: the digest memo must see the change
    torch.testing.assert_close(served, true)
    assert (cache.hits, cache.misses) == (1, 2)

    later = TeacherFeatureCache("toy", "w", {"patch_size": 16}, cache_dir=cache_dir)  # a later run, warm disk cache
    served, true = _served_and_true(TeacherFeatureSource(_CountingTeacher(), later), items)
    torch.testing.assert_close(served, true)
    assert (later.hits, later.misses) == (1, 0)


def test_unwritable_feature_cache_warns_once_and_training_goes_on(tmp_path, monkeypatch, caplog):
    """Read-only cache folder (or a full disk, when root ignores the mode bits): one warning, same training."""
    from test_engines import _setup

    from rd_components.engines import RDTrainer
    from rd_components.foundation import feature_cache
    from rd_components.losses import RDLoss

    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    if os.geteuid() == 0:  # root writes through mode bits: a full disk instead
        def full_disk(*args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(feature_cache, "save_file", full_disk)
    else:
        cache_dir.chmod(0o555)
    try:
        cache = TeacherFeatureCache("toy", "digest", {"size": 16}, cache_dir=cache_dir)
        loader, teacher, network, reprogrammer, optimizer, source = _setup(2, cache=cache)
        trainer = RDTrainer("cpu", 3, loader, network, optimizer, RDLoss(), reprogrammer=reprogrammer, teacher=source)
        with caplog.at_level(logging.WARNING):
            trainer.run()
    finally:
        cache_dir.chmod(0o755)
    assert trainer.state.epoch == 3
    warnings = [r.getMessage() for r in caplog.records
                if r.levelno >= logging.WARNING and str(cache_dir) in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "\n" not in warnings[0] and ("No space left" in warnings[0] or "Permission denied" in warnings[0])
    assert teacher.calls == 24  # later epochs still served from memory
    assert not list(Path(cache_dir).rglob("*.safetensors"))


def test_unwritable_teacher_card_folder_warns_and_the_teacher_still_answers(tmp_path, monkeypatch, caplog):
    """The teacher card lives in the cache folder: failing to write it must not stop the run either."""
    from test_lazy_teacher import _checkpoint, _lazy

    from rd_components.foundation import lazy_teacher

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(lazy_teacher, "atomic_write_text", full_disk)
    teacher = _lazy(tmp_path / "cards", _checkpoint(tmp_path / "w.pt", 0))
    with caplog.at_level(logging.WARNING):
        shape = teacher.feature_shape((20, 20))  # builds the teacher, then fails to write its card
        assert teacher.feature_shape((24, 24))[0] == shape[0]
    assert teacher.is_built and not teacher.card_path.exists()
    warnings = [r.getMessage() for r in caplog.records if str(tmp_path / "cards") in r.getMessage()]
    assert len(warnings) == 1 and "No space left" in warnings[0], warnings
