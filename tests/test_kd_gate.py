"""KDGate: KD is switched off while the student is ahead of its teacher branch on validation."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine, Events

from rd_components.handlers import KDGate
from rd_components.losses import DRDLoss


def _validator(scores: list[tuple[float, float]]) -> Engine:
    """An evaluator whose run ``i`` reports ``(teacher_val_mean_dice, val_mean_dice) = scores[i]``."""
    validator = Engine(lambda e, b: None)
    runs = iter(scores)

    @validator.on(Events.COMPLETED)
    def _metrics(engine):
        teacher, student = next(runs)
        engine.state.metrics.update(teacher_val_mean_dice=teacher, val_mean_dice=student)

    return validator


def _terms_loss(loss: DRDLoss) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(0)
    student, hybrid = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    labels = torch.randint(0, 3, (2, 1, 8, 8))
    terms = loss(student, hybrid, labels)
    return terms["loss"], terms


def test_the_gate_follows_each_validation_and_only_the_kd_term_is_gated():
    loss = DRDLoss(hybrid_weight=0.5, kd_weight=2.0, cka_weight=0.0)
    validator = _validator([(0.6, 0.4), (0.5, 0.55), (0.5, 0.5), (0.7, 0.6)])
    trainer = Engine(lambda e, b: None)
    # validation first, then the gate, as the bundle's handler list has them
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: validator.run([0]))
    KDGate(loss, validator).attach(trainer)
    recorded = []
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda e: recorded.append(e.state.metrics["kd_gate"]))

    assert loss.kd_gate == 1.0  # open before any validation
    gated_on, terms = _terms_loss(loss)
    trainer.run([0], max_epochs=4)
    assert recorded == [1.0, 0.0, 0.0, 1.0]  # a tie closes it: KD only while the teacher is ahead

    loss.kd_gate = 0.0
    gated_off, _ = _terms_loss(loss)
    expected_off = terms["sup_student"] + 0.5 * terms["sup_hybrid"]  # the hybrid's supervised term stays
    torch.testing.assert_close(gated_off, expected_off)
    torch.testing.assert_close(gated_on, expected_off + 2.0 * terms["kd"])


def test_the_gate_state_round_trips_for_resume():
    loss, restored = DRDLoss(), DRDLoss()
    validator = _validator([(0.1, 0.9)])
    gate = KDGate(loss, validator)
    gate.attach(Engine(lambda e, b: None))
    validator.run([0])
    assert loss.kd_gate == 0.0 and gate.state_dict() == {"open": False}
    other = KDGate(restored, _validator([]))
    assert restored.kd_gate == 1.0
    other.load_state_dict(gate.state_dict())
    assert restored.kd_gate == 0.0 and not other.open


def test_the_gate_says_what_it_misses():
    validator = Engine(lambda e, b: None)
    gate = KDGate(DRDLoss(), validator)
    gate.attach(Engine(lambda e, b: None))
    with pytest.raises(KeyError, match="teacher_branch_metrics: true"):
        validator.run([0])
    with pytest.raises(ValueError, match="no kd_gate"):
        KDGate(torch.nn.MSELoss(), validator)


def test_a_disabled_gate_attaches_nothing():
    validator = Engine(lambda e, b: None)
    KDGate(DRDLoss(), validator, enabled=False).attach(Engine(lambda e, b: None))
    validator.run([0])  # no metrics, no error: nothing listens
