"""The segmentation reference rows: the mean teacher (flip consistency with the student's EMA) and
the per-voxel linear probe on the teacher's stage maps."""

from __future__ import annotations

import torch
from bundle_helpers import parse_bundle
from ignite.engine import Events

from rd_components.engines import DRDTrainer
from rd_components.foundation import TeacherFeatureSource, fit_stage_probe
from rd_components.losses import DRDLoss
from rd_components.networks import (FlippedViewTeacher, SegmentationStudent, SoftTargets, StageProbe,
                                    StageProbeSegmenter)

FEATURES = (4, 4, 8, 8, 16, 4)


class _LabelStages(torch.nn.Module):
    """Toy frozen teacher whose two stage maps (strides 2 and 4) hold the image and its negative."""

    def stage_features(self, x):
        return [torch.nn.functional.avg_pool2d(x, 2), -torch.nn.functional.avg_pool2d(x, 4)]


def test_dense_flipped_view_teacher_maps_its_prediction_back_onto_the_image():
    """For a mirrored input the model's output is mirrored back, so voxel i's target is about voxel i."""
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 3, 3, padding=1)
    images = torch.rand(2, 1, 8, 6)
    dense = FlippedViewTeacher(model, dense=True)
    expected = torch.flip(model(torch.flip(images, (2,))), (2,))
    torch.testing.assert_close(dense(images), expected)
    assert not torch.allclose(dense(images), model(images))  # the other view: not the same prediction
    [stage] = dense.stage_features(images)
    torch.testing.assert_close(stage, expected)
    # a model that ignores position (1x1 conv) agrees with itself across the flip
    pointwise = torch.nn.Conv2d(1, 3, 1)
    torch.testing.assert_close(FlippedViewTeacher(pointwise, dense=True)(images), pointwise(images))


def test_mean_teacher_trains_the_student_towards_its_ema_on_the_mirrored_view():
    """DRDTrainer with a logits-giving head: the EMA's mirrored prediction is the KD target, no projection."""
    from ignite.handlers import EMAHandler

    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[4:] = -1
    loader = [{"image": images[i:i + 4], "label": labels[i:i + 4]} for i in (0, 4)] * 2
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    ema = EMAHandler(student, momentum=0.5)
    source = TeacherFeatureSource(FlippedViewTeacher(ema.ema_model, dense=True), stages=True)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    loss = DRDLoss(hybrid_weight=0.0, kd_weight=1.0, cka_weight=0.0)
    trainer = DRDTrainer("cpu", 2, loader, student, optimizer, loss, reprogrammer=SoftTargets(), teacher=source)
    ema.attach(trainer)
    first = {k: v.clone() for k, v in ema.ema_model.state_dict().items()}
    trainer.run()
    metrics = trainer.state.metrics
    assert metrics["train_kd"] > 0.0 and metrics["train_cka"] == 0.0
    assert trainer.state.output[0]["pred_teacher"].shape == (2, 32, 32)
    assert any(not torch.equal(first[k], v) for k, v in ema.ema_model.state_dict().items())  # the EMA follows


def test_mean_teacher_overlay_reads_no_foundation_model():
    parser = parse_bundle("rd_segmentation_2d", "train.yaml", "methods/segmentation/mean_teacher.yaml")
    assert parser.get_parsed_content("train#trainer#hybrid_pass") is True
    assert isinstance(parser.get_parsed_content("reprogrammer"), SoftTargets)
    source = parser.get_parsed_content("teacher_source")
    assert source.cache is None and source.stages and isinstance(source.teacher, FlippedViewTeacher)
    assert parser.get_parsed_content("mlflow_params#teacher") is None


def test_stage_probe_is_linear_in_the_stage_features_and_fits_a_separable_task():
    torch.manual_seed(0)
    images = torch.rand(6, 1, 16, 16).repeat_interleave(4, -1).repeat_interleave(4, -2)[..., :16, :16]
    labels = (images > 0.5).long()
    labels[4:] = -1  # hidden: left out of the fit
    items = [{"image": images[i], "label": labels[i], "id": str(i)} for i in range(6)]
    probe = fit_stage_probe(_LabelStages(), items, num_classes=2, spatial_dims=2, steps=200)
    assert not any(p.requires_grad for p in probe.parameters())
    stages = _LabelStages().stage_features(images[:4])
    predicted = probe(stages, (16, 16)).argmax(1, keepdim=True)
    assert (predicted == labels[:4]).float().mean() > 0.9
    # linearity: the logits of a sum of standardised features are the sum of the parts (minus one bias)
    zero = [torch.zeros_like(s) for s in stages]
    both = probe(stages, (16, 16)) - probe(zero, (16, 16))
    parts = sum(probe([s if i == j else zero[i] for i, s in enumerate(stages)], (16, 16)) - probe(zero, (16, 16))
                for j in range(2))
    torch.testing.assert_close(both, parts, atol=1e-4, rtol=1e-4)


def test_stage_probe_segmenter_checkpoint_holds_the_probe_only():
    teacher = _LabelStages()
    teacher.weight = torch.nn.Parameter(torch.ones(1000))  # a "heavy" teacher: must stay out of state_dict
    net = StageProbeSegmenter(teacher, StageProbe(2, (1, 1), 3))
    assert all(k.startswith("probe.") for k in net.state_dict())
    assert net(torch.rand(2, 1, 16, 16)).shape == (2, 3, 16, 16)


def test_linear_probe_overlay_builds_the_teacher_and_probe_network():
    parser = parse_bundle("rd_segmentation_2d", "train.yaml", "methods/segmentation/linear_probe.yaml")
    network = parser.get_parsed_content("network_def")
    assert isinstance(network, StageProbeSegmenter)
    assert len(network.probe.heads) == len(network.teacher.stage_channels)


def test_probe_kd_distils_the_frozen_probe_logits_into_the_student():
    """probe_kd: a fitted, frozen StageProbe is DRDTrainer's head; its logits of the teacher's stage
    maps are the per-voxel KD targets on every item, labelled or not."""
    from rd_components.engines import DRDBranches

    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[4:] = -1
    items = [{"image": images[i], "label": labels[i], "id": str(i)} for i in range(8)]
    probe = fit_stage_probe(_LabelStages(), items, num_classes=2, spatial_dims=2, steps=100)
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    stages = _LabelStages().stage_features(images[:2])
    out = DRDBranches(student, probe)(images[:2], stages)
    torch.testing.assert_close(out["teacher_logits"], probe(stages, (32, 32)))
    assert "projected_stages" not in out and "graph_anchor" not in out

    loader = [{"image": images[i:i + 4], "label": labels[i:i + 4]} for i in (0, 4)] * 2
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    loss = DRDLoss(hybrid_weight=0.0, kd_weight=1.0, cka_weight=0.0)
    trainer = DRDTrainer("cpu", 3, loader, student, optimizer, loss, reprogrammer=probe, teacher=_LabelStages())
    kds = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: kds.append(e.state.metrics["train_kd"]))
    before = {k: v.clone() for k, v in probe.state_dict().items()}
    trainer.run()
    assert kds[-1] < kds[0], kds  # the student moves towards the probe's targets
    assert all(torch.equal(before[k], v) for k, v in probe.state_dict().items())  # the probe stays as fitted


def test_stage_probe_fit_with_a_seed_does_not_depend_on_the_callers_rng():
    """compare.py refits the reference probe each time it scores the cell: with the cell's seed the fit
    is the same whatever ran before it in the process."""
    images = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    items = [{"image": images[i], "label": (images[i] > 0.5).long(), "id": str(i)} for i in range(4)]

    def fit(global_seed: int, seed: int | None) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        probe = fit_stage_probe(_LabelStages(), items, num_classes=2, spatial_dims=2, steps=5, seed=seed)
        return probe.state_dict()

    first, second = fit(1, seed=3), fit(2, seed=3)
    assert all(torch.equal(first[k], second[k]) for k in first)
    unseeded = fit(1, seed=None), fit(2, seed=None)  # the bundle's path: the caller's (seeded) RNG decides
    assert any(not torch.equal(unseeded[0][k], unseeded[1][k]) for k in first)
