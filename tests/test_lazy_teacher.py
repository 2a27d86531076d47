"""LazyTeacher: a warm feature cache needs no teacher; its card answers the configs' questions."""

from __future__ import annotations

import json
import os

import pytest
import torch

from rd_components.foundation import LazyTeacher, create_teacher

NET_KWARGS = dict(spatial_dims=2, in_channels=1, out_channels=3, init_features=4, growth_rate=4, block_config=(1, 1))


def _checkpoint(path, seed: int) -> str:
    from monai.networks.nets import DenseNet

    torch.manual_seed(seed)
    torch.save({"state_dict": DenseNet(**NET_KWARGS).state_dict()}, path)
    return str(path)


def _lazy(card_dir, checkpoint) -> LazyTeacher:
    return LazyTeacher("monai:DenseNet", card_dir=card_dir, checkpoint=checkpoint, min_size=(16, 16), **NET_KWARGS)


def test_card_answers_without_building_and_matches_the_real_teacher(tmp_path):
    ckpt = _checkpoint(tmp_path / "w.pt", 0)
    eager = create_teacher("monai:DenseNet", checkpoint=ckpt, min_size=(16, 16), **NET_KWARGS)

    first = _lazy(tmp_path / "cache", ckpt)
    assert not first.is_built
    assert first.feature_shape((20, 20)) == eager.feature_shape((20, 20))  # no card yet: builds, writes it
    assert first.is_built and first.card_path.is_file()

    second = _lazy(tmp_path / "cache", ckpt)
    answers = (second.cache_key, second.weights_digest, second.contract, second.feature_shape((20, 20)))
    assert second.stage_channels == eager.stage_channels == ()  # a MONAI net exposes no stages
    assert not second.is_built, "a valid card must answer cache_key, digest, contract and feature_shape"
    assert answers == (eager.cache_key, eager.weights_digest, json.loads(json.dumps(eager.contract)),
                       eager.feature_shape((20, 20)))
    # features: the first call builds the same teacher
    x = torch.rand(2, 1, 20, 20)
    torch.testing.assert_close(second(x), eager(x), rtol=0, atol=0)
    assert second.is_built
    # a size the card does not know builds the teacher (here: already built) and is remembered
    third = _lazy(tmp_path / "cache", ckpt)
    assert third.feature_shape((40, 40)) == eager.feature_shape((40, 40)) and third.is_built
    assert "40x40" in json.loads(third.card_path.read_text())["feature_shapes"]


def test_changed_weight_file_invalidates_the_card(tmp_path):
    ckpt = _checkpoint(tmp_path / "w.pt", 0)
    old_key = _lazy(tmp_path, ckpt).cache_key
    stat = os.stat(ckpt)
    _checkpoint(tmp_path / "w.pt", 1)  # other weights, same path
    os.utime(ckpt, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # even within one clock tick
    lazy = _lazy(tmp_path, ckpt)
    new_key = lazy.cache_key
    assert lazy.is_built, "a card whose weight file changed must not be trusted"
    assert new_key != old_key and new_key == create_teacher(
        "monai:DenseNet", checkpoint=ckpt, min_size=(16, 16), **NET_KWARGS).cache_key


def test_random_weights_keep_no_card_and_parameters_stay_out_of_the_module(tmp_path):
    lazy = LazyTeacher("monai:DenseNet", card_dir=tmp_path, min_size=(16, 16), **NET_KWARGS)
    assert lazy.cache_key  # builds: a random teacher has no file to vouch for its weights
    assert lazy.is_built and not list(tmp_path.glob("teacher_card_*.json"))
    # frozen and built outside the module tree: nothing for an optimizer or a checkpoint
    assert list(lazy.parameters()) == [] and lazy.state_dict() == {}
    assert lazy.materialize().feature_channels == lazy.feature_channels  # other attributes come from the teacher
    lazy.train()
    assert not lazy.training


def test_unknown_teacher_fails_at_once_with_the_registry_message(tmp_path):
    with pytest.raises(ValueError, match="unknown teacher 'efficientnet_lite9'; known: .*efficientnet_lite0"):
        LazyTeacher("efficientnet_lite9", card_dir=tmp_path)
