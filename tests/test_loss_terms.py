"""A loss names its terms in one place: a new term reaches the output, the epoch metrics, the progress
bar, the training report and MLflow without any other file changing."""

import json

import torch
from ignite.engine import Events
from monai.data import DataLoader
from torch import nn

from rd_components.engines import DRDTrainer, RDTrainer, loss_terms
from rd_components.handlers import ProgressBarHandler, TrainingReportHandler
from rd_components.losses import DRDLoss, RDLoss
from rd_components.networks import DeployableStudent, Reprogrammer, SharedClassifier, create_student


class EntropyRDLoss(RDLoss):
    """RD plus one new term, written only here: the mean entropy of the student's predictions."""

    def forward(self, student_logits, teacher_logits, student_features, teacher_features, labels):
        terms = super().forward(student_logits, teacher_logits, student_features, teacher_features, labels)
        probs = student_logits.float().softmax(dim=1)
        terms["entropy"] = -(probs * probs.clamp_min(1e-12).log()).sum(dim=1).mean()
        terms["loss"] = terms["loss"] + 0.1 * terms["entropy"]
        return terms


def _trainer(loss, epochs=2, handlers=None):
    torch.manual_seed(0)
    x = torch.rand(16, 1, 16, 16)
    y = (x.flatten(1).mean(1) > x.flatten(1).mean()).long()
    loader = DataLoader([{"image": x[i], "label": y[i]} for i in range(16)], batch_size=8)
    teacher = nn.Sequential(nn.Conv2d(1, 12, 3, stride=4, padding=1), nn.ReLU()).eval().requires_grad_(False)
    network = DeployableStudent(create_student("tiny_cnn", 2, 1, 16, channels=(8, 16)), SharedClassifier(16, 2))
    reprogrammer = Reprogrammer(2, 12, 16)
    optimizer = torch.optim.Adam([*network.parameters(), *reprogrammer.parameters()], lr=1e-2)
    return RDTrainer("cpu", epochs, loader, network, optimizer, loss, reprogrammer=reprogrammer, teacher=teacher,
                     train_handlers=handlers)


def test_a_new_loss_term_is_logged_everywhere_without_naming_it(tmp_path):
    import mlflow
    from monai.handlers import MLFlowHandler

    report = TrainingReportHandler(tmp_path / "report")
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    trainer = _trainer(EntropyRDLoss(), handlers=[report, MLFlowHandler(tracking_uri=uri, experiment_name="terms",
                                                                          run_name="entropy", iteration_log=False)])
    trainer.run()

    expected = ("loss", "ce_teacher", "ce_student", "kd", "cka", "hint", "entropy")
    assert loss_terms(trainer) == expected  # `loss` first, then the loss's own order
    output = trainer.state.output[0]
    assert set(expected) <= set(output) and output["entropy"] > 0
    assert list(trainer.state.metrics) == [f"train_{t}" for t in expected]
    assert all(set(trainer.state.metrics) <= set(row) for row in report.history)
    history = json.loads((tmp_path / "report" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2] and all(row["train_entropy"] > 0 for row in history)

    shown = ProgressBarHandler().values(trainer)  # the default shows every term
    assert shown == {t: float(output[t]) for t in expected}
    assert ProgressBarHandler(output_keys=["loss", "entropy"]).values(trainer).keys() == {"loss", "entropy"}
    assert ProgressBarHandler(output_keys=[]).values(trainer) == {}

    mlflow.set_tracking_uri(uri)
    (run,) = mlflow.search_runs(experiment_names=["terms"], output_format="list")
    assert run.data.metrics["train_entropy"] == history[-1]["train_entropy"]


def test_per_epoch_averages_are_the_mean_of_each_steps_terms():
    steps, epochs = [], []
    trainer = _trainer(RDLoss(), epochs=2)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: steps.append(dict(e.state.output[0])))
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: epochs.append(dict(e.state.metrics)))
    trainer.run()
    for epoch, metrics in enumerate(epochs):
        for term in loss_terms(trainer):
            values = [float(s[term]) for s in steps[2 * epoch:2 * epoch + 2]]
            assert metrics[f"train_{term}"] == sum(values) / 2


def test_drd_trainer_reports_the_terms_drd_loss_returns():
    from test_drd import FEATURES, _ToyStageTeacher

    from rd_components.networks import DeepReprogrammer, SegmentationStudent

    torch.manual_seed(0)
    images = torch.rand(8, 1, 32, 32)
    loader = [{"image": images, "label": (images > 0.5).long()}]
    student = SegmentationStudent(2, 1, 2, features=FEATURES)
    rep = DeepReprogrammer(2, (6, 6, 8, 8), student.stage_channels[1:])
    optimizer = torch.optim.Adam([*student.parameters(), *rep.parameters()], lr=0.01)
    trainer = DRDTrainer("cpu", 1, loader, student, optimizer, DRDLoss(cka_grid=2), reprogrammer=rep,
                         teacher=_ToyStageTeacher())
    trainer.run()
    assert loss_terms(trainer) == ("loss", "sup_student", "sup_hybrid", "kd", "cka")
    assert list(trainer.state.metrics) == [f"train_{t}" for t in loss_terms(trainer)]
