"""RDTrainer / RDEvaluator on tiny random 2D and 3D data, with and without the feature cache."""

import pytest
import torch
from ignite.engine import Events
from monai.data import DataLoader
from monai.engines.utils import IterationEvents
from torch import nn

from rd_components.engines import RDEvaluator, RDTrainer, stacked_output
from rd_components.foundation import TeacherFeatureCache, TeacherFeatureSource
from rd_components.losses import RDLoss
from rd_components.networks import DeployableStudent, Reprogrammer, SharedClassifier, create_student


class _FrozenToyTeacher(nn.Module):
    """A fixed random conv + BatchNorm, frozen, standing in for a foundation model."""

    def __init__(self, spatial_dims: int) -> None:
        super().__init__()
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        bn = nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d
        self.body = nn.Sequential(conv(1, 12, 3, stride=4, padding=1), bn(12), nn.ReLU())
        self.calls = 0
        self.eval().requires_grad_(False)

    def forward(self, x):
        self.calls += x.shape[0]
        return self.body(x)


def _setup(spatial_dims, cache=None, seed=0, n=24):
    torch.manual_seed(seed)
    size = 16 if spatial_dims == 2 else 8
    x = torch.rand(n, 1, *([size] * spatial_dims))
    y = (x.flatten(1).mean(1) > x.flatten(1).mean()).long()
    x[y == 1] += 0.3  # a learnable signal
    data = [{"image": x[i], "label": y[i], "id": f"case{i}"} for i in range(n)]
    loader = DataLoader(data, batch_size=8, shuffle=False)
    teacher = _FrozenToyTeacher(spatial_dims)
    network = DeployableStudent(create_student("tiny_cnn", spatial_dims, 1, 16, channels=(8, 16)), SharedClassifier(16, 2))
    reprogrammer = Reprogrammer(spatial_dims, 12, 16)
    optimizer = torch.optim.Adam(list(network.parameters()) + list(reprogrammer.parameters()), lr=1e-2)
    source = TeacherFeatureSource(teacher, cache)
    return loader, teacher, network, reprogrammer, optimizer, source


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_rd_trainer_loss_decreases_and_events_fire(spatial_dims):
    loader, teacher, network, reprogrammer, optimizer, source = _setup(spatial_dims)
    trainer = RDTrainer("cpu", 6, loader, network, optimizer, RDLoss(), reprogrammer=reprogrammer, teacher=source)
    required = (IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED,
                IterationEvents.BACKWARD_COMPLETED, IterationEvents.MODEL_COMPLETED)
    fired = {e: 0 for e in required}
    for event in required:
        trainer.add_event_handler(event, lambda engine, e=event: fired.__setitem__(e, fired[e] + 1))
    epoch_losses = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epoch_losses.append(e.state.metrics["train_loss"]))
    bn_before = teacher.body[1].running_mean.clone()
    trainer.run()
    assert all(count == 6 * 3 for count in fired.values()), fired
    assert epoch_losses[-1] < epoch_losses[0]
    for term in ("ce_teacher", "ce_student", "kd", "cka"):
        assert f"train_{term}" in trainer.state.metrics
    output = trainer.state.output[0]
    assert {"pred", "pred_teacher", "loss", "cka", "kd"} <= set(output)
    assert not teacher.training and torch.equal(bn_before, teacher.body[1].running_mean)
    assert all(not p.requires_grad for p in teacher.parameters())


def test_student_alone_without_teacher():
    loader, _, network, _, _, _ = _setup(2)
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    loss = RDLoss(ce_teacher_weight=0.0, kd_weight=0.0, cka_weight=0.0)
    trainer = RDTrainer("cpu", 2, loader, network, optimizer, loss)
    trainer.run()
    assert "pred_teacher" not in trainer.state.output[0]
    with pytest.raises(ValueError, match="both a teacher and a reprogrammer"):
        RDTrainer("cpu", 1, loader, network, optimizer, loss, reprogrammer=Reprogrammer(2, 12, 16))


def test_cached_and_uncached_training_give_same_losses(tmp_path):
    histories = []
    for cache in (None, TeacherFeatureCache("toy", "digest", {"size": 16}, cache_dir=tmp_path)):
        loader, teacher, network, reprogrammer, optimizer, source = _setup(2, cache=cache)
        trainer = RDTrainer("cpu", 3, loader, network, optimizer, RDLoss(), reprogrammer=reprogrammer, teacher=source)
        losses = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
        trainer.run()
        histories.append((losses, teacher.calls))
    (plain, plain_calls), (cached, cached_calls) = histories
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(plain), rtol=1e-5, atol=1e-6)
    assert plain_calls == 3 * 24 and cached_calls == 24  # the cache runs the teacher once per sample
    assert len(list(tmp_path.rglob("*.safetensors"))) == 24


def test_flip_views_keep_the_cache_exact_under_augmentation(tmp_path):
    """Random flips drawn as fixed views: cached and uncached runs see the same teacher features."""
    from monai.data import Dataset
    from monai.utils import set_determinism

    from rd_components.data import FixedViewsd

    histories = []
    for cache in (None, TeacherFeatureCache("toy", "digest", {"size": 16}, cache_dir=tmp_path)):
        loader, teacher, network, reprogrammer, optimizer, source = _setup(2, cache=cache)
        augment = FixedViewsd(["image"], flip_axes=(0,))
        augment.set_random_state(seed=0)
        loader = DataLoader(Dataset(list(loader.dataset), transform=augment), batch_size=8, shuffle=False)
        views = []
        trainer = RDTrainer("cpu", 4, loader, network, optimizer, RDLoss(), reprogrammer=reprogrammer, teacher=source)
        losses = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output[0]["loss"])))
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: views.extend(int(b["view"]) for b in e.state.batch))
        trainer.run()
        histories.append((losses, teacher.calls, views))
    set_determinism(None)
    (plain, plain_calls, views), (cached, cached_calls, cached_views) = histories
    assert views == cached_views and set(views) == {0, 1}
    torch.testing.assert_close(torch.tensor(cached), torch.tensor(plain), rtol=1e-5, atol=1e-6)
    assert plain_calls == 4 * 24 and 24 < cached_calls <= 2 * 24  # at most one teacher call per (sample, view)


def test_fixed_views_flip_the_recorded_axes():
    from rd_components.data import FixedViewsd, flip_view_axes

    image = torch.arange(24.0).reshape(1, 2, 3, 4)
    always = FixedViewsd(["image"], flip_axes=(0, 2), prob=1.0)
    out = always({"image": image})
    assert out["view"] == 0b101 and flip_view_axes(out["view"]) == (0, 2)
    torch.testing.assert_close(torch.as_tensor(out["image"]), image.flip(1).flip(3))
    never = FixedViewsd(["image"], flip_axes=(0,), prob=0.0)({"image": image})
    assert never["view"] == 0 and torch.equal(torch.as_tensor(never["image"]), image)
    with pytest.raises(ValueError, match="prob"):
        FixedViewsd(["image"], prob=2.0)


def test_disk_cache_is_reused_and_namespaced(tmp_path):
    first = TeacherFeatureCache("toy", "w1", {"size": 16}, cache_dir=tmp_path)
    key = first.entry_key("case0", 0)
    first.put(key, torch.arange(6.0).reshape(2, 3))
    again = TeacherFeatureCache("toy", "w1", {"size": 16}, cache_dir=tmp_path, in_memory=False)
    torch.testing.assert_close(again.get(key), torch.arange(6.0).reshape(2, 3))
    # other weights or preprocessing: another namespace, nothing stale is served
    assert TeacherFeatureCache("toy", "w2", {"size": 16}, cache_dir=tmp_path).get(key) is None
    assert TeacherFeatureCache("toy", "w1", {"size": 32}, cache_dir=tmp_path).get(key) is None
    assert first.entry_key("case0", 1) != key


def test_rd_evaluator_reports_student_and_teacher_branch():
    loader, _, network, reprogrammer, _, source = _setup(2)
    evaluator = RDEvaluator(
        device="cpu", val_data_loader=loader, network=network, reprogrammer=reprogrammer, teacher=source,
        key_val_metric={"val_accuracy": __import__("ignite").metrics.Accuracy(output_transform=stacked_output("pred", "label"))},
        additional_metrics={"teacher_val_accuracy": __import__("ignite").metrics.Accuracy(output_transform=stacked_output("pred_teacher", "label"))},
    )
    evaluator.run()
    assert 0.0 <= evaluator.state.metrics["val_accuracy"] <= 1.0
    assert 0.0 <= evaluator.state.metrics["teacher_val_accuracy"] <= 1.0
    assert reprogrammer.training  # evaluation restores the module's mode


def test_baseline_heads_linear_probe_and_pooled_features():
    from rd_components.foundation import fit_linear_probe
    from rd_components.networks import PooledFeatures

    loader, teacher, network, _, _, source = _setup(2)
    items = [{"image": b["image"][i], "label": int(b["label"][i]), "id": b["id"][i]} for b in loader for i in range(len(b["id"]))]
    probe = fit_linear_probe(source, items, num_classes=2)
    assert all(not p.requires_grad for p in probe.parameters())
    features = teacher(torch.stack([i["image"] for i in items]))
    pooled, logits = probe(features)
    assert pooled.shape == (24, 12) and logits.shape == (24, 2)
    labels = torch.tensor([i["label"] for i in items])
    assert (logits.argmax(1) == labels).float().mean() > 0.6  # the probe learned the toy signal

    # KD from the probe: the probe's logits are the teacher logits; nothing of the probe trains
    optimizer = torch.optim.Adam(network.parameters(), lr=1e-2)
    kd = RDLoss(ce_teacher_weight=0.0, cka_weight=0.0)
    trainer = RDTrainer("cpu", 1, loader, network, optimizer, kd, reprogrammer=probe, teacher=source)
    trainer.run()
    assert trainer.state.metrics["train_kd"] > 0 and "pred_teacher" in trainer.state.output[0]

    # pooled features (hint / CKA-only): no teacher logits, the hint projection trains through the loss
    hint = RDLoss(ce_teacher_weight=0.0, kd_weight=0.0, cka_weight=0.0, hint_weight=1.0, hint_features=(16, 12))
    optimizer = torch.optim.Adam(list(network.parameters()) + list(hint.parameters()), lr=1e-2)
    before = hint.hint_loss.regressor.weight.clone()
    trainer = RDTrainer("cpu", 1, loader, network, optimizer, hint, reprogrammer=PooledFeatures(), teacher=source)
    trainer.run()
    assert "pred_teacher" not in trainer.state.output[0] and trainer.state.metrics["train_hint"] > 0
    assert not torch.equal(before, hint.hint_loss.regressor.weight)
