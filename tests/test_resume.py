"""Resume: a real training process killed mid-run and started again with --resume ends where an
uninterrupted run with the same seed ends, in the same MLflow run."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import mlflow
import pytest
import torch
from bundle_helpers import REPO, bundle_command, bundle_configs, bundle_env, run_bundle

from rd_components.embedded import build_dataset
from rd_components.handlers import read_resume_checkpoint, resumed_run_name

BUNDLE = "rd_classification_2d"
EPOCHS = 6


def _overrides(data_dir, out, name):
    # augmentation on: the random transform's RNG state must be restored as well
    return dict(dataset_dir=str(data_dir), output_dir=str(out / "eval"), ckpt_dir=str(out / "models"), patch_size=[32, 32],
                batch_size=4, epochs=EPOCHS, augment=True, resume=True, experiment_name=name, registered_model_name=name)


def _epoch(state) -> int:
    """Last completed epoch of a resume checkpoint (ignite's trainer state holds the iteration)."""
    return state["trainer"]["iteration"] // state["trainer"]["epoch_length"]


def _kill_after_epoch(overrides, checkpoint, epoch: int, timeout: float = 600.0) -> int:
    """Start training, SIGKILL it once ``checkpoint`` records ``epoch``; return the recorded epoch."""
    cmd = bundle_command("training", bundle_configs(BUNDLE, "train.yaml"), **overrides)
    process = subprocess.Popen(cmd, cwd=REPO, env=bundle_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            state = read_resume_checkpoint(checkpoint) if checkpoint.exists() else None
            if state is not None and _epoch(state) >= epoch:
                process.send_signal(signal.SIGKILL)
                process.wait(30)
                return _epoch(state)
            if process.poll() is not None:
                pytest.fail(f"training ended (rc {process.returncode}) before epoch {epoch} was checkpointed")
            time.sleep(0.02)
        pytest.fail("no checkpoint before the timeout")
    finally:
        if process.poll() is None:
            process.kill()
    return -1


def _run_metrics(out, name):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'eval' / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id])
    return client, runs


def _last_per_step(client, run_id, key):
    values = {}
    for m in sorted(client.get_metric_history(run_id, key), key=lambda m: m.timestamp):
        values[m.step] = m.value
    return values


@pytest.mark.slow
def test_killed_run_resumes_into_same_mlflow_run_with_same_results(tmp_path):
    data_dir = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=24, n_val=6, n_test=6,
                             progress=False).parent

    # reference: uninterrupted
    ref_out = tmp_path / "uninterrupted"
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **_overrides(data_dir, ref_out, "ref"))

    # killed after its second epoch (a real SIGKILL: nothing is flushed or closed), then resumed
    out = tmp_path / "resumed"
    checkpoint = out / "models" / "resume.pt"
    killed_at = _kill_after_epoch(_overrides(data_dir, out, "res"), checkpoint, epoch=2)
    assert 2 <= killed_at < EPOCHS
    state = read_resume_checkpoint(checkpoint)
    assert not state["resume"]["completed"] and not (out / "models" / "model_info.json").exists()
    assert {"network", "reprogrammer", "optimizer", "lr_scheduler", "best_model_saver"} <= set(state["objects"])
    client, runs = _run_metrics(out, "res")
    assert len(runs) == 1 and runs[0].info.status == "RUNNING"
    run_id = runs[0].info.run_id
    assert resumed_run_name(checkpoint, True) == runs[0].info.run_name

    result = run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), REPO, **_overrides(data_dir, out, "res"))
    assert f"after epoch {killed_at} of {EPOCHS}" in result.stdout + result.stderr

    # one MLflow run, continued and finished
    client, runs = _run_metrics(out, "res")
    assert len(runs) == 1 and runs[0].info.run_id == run_id and runs[0].info.status == "FINISHED"
    ref_client, (ref_run,) = _run_metrics(ref_out, "ref")[0], _run_metrics(ref_out, "ref")[1]
    for key in ("train_loss", "train_cka", "val_accuracy", "val_auc"):
        resumed = _last_per_step(client, run_id, key)
        reference = _last_per_step(ref_client, ref_run.info.run_id, key)
        assert sorted(resumed) == list(range(1, EPOCHS + 1)), key
        for step in reference:
            assert abs(resumed[step] - reference[step]) <= 1e-6, (key, step, resumed[step], reference[step])

    # same per-epoch history and the same best student, bit for bit up to float noise
    histories = [json.loads(next((o / "eval").glob("*/history.json")).read_text()) for o in (ref_out, out)]
    assert [row["epoch"] for row in histories[1]] == list(range(1, EPOCHS + 1))
    for ref_row, row in zip(*histories):
        assert all(abs(ref_row[k] - row[k]) <= 1e-6 for k in ref_row), (ref_row, row)
    ref_weights = torch.load(ref_out / "models" / "model.pt", weights_only=True)
    weights = torch.load(out / "models" / "model.pt", weights_only=True)
    for name, tensor in ref_weights.items():
        torch.testing.assert_close(weights[name], tensor, rtol=0, atol=1e-6)
    assert read_resume_checkpoint(checkpoint)["resume"]["completed"]
    assert resumed_run_name(checkpoint, True) is None  # a finished run is not resumed again


def test_resume_refuses_other_parameters_and_unreadable_files(tmp_path):
    from ignite.engine import Engine

    from rd_components.handlers import ResumableCheckpoint

    net = torch.nn.Linear(2, 2)
    engine = Engine(lambda e, b: None)
    engine.state.max_epochs, engine.state.epoch_length = 3, 1
    handler = ResumableCheckpoint(tmp_path / "resume.pt", {"network": net}, resume=True, fingerprint={"lr": 0.1})
    handler.save(engine)
    changed = ResumableCheckpoint(tmp_path / "resume.pt", {"network": net}, resume=True, fingerprint={"lr": 0.2})
    with pytest.raises(ValueError, match=r"other parameters \(lr differ\)"):
        changed._started(engine)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="broken.pt cannot be read"):
        read_resume_checkpoint(tmp_path / "broken.pt")


def test_command_line_flags_parse_as_bools():
    from rd_components.overrides import as_bool

    assert [as_bool(v) for v in (True, "true", "True", "yes", 1, "on")] == [True] * 6
    assert [as_bool(v) for v in (False, "false", "FALSE", "no", 0, "off", None)] == [False] * 7
    with pytest.raises(ValueError, match="expected true or false, got 'maybe'"):
        as_bool("maybe")
    assert resumed_run_name("/nonexistent/resume.pt", "false") is None


def _small_training(checkpoint, crash_after_epoch: int | None = None, resume: bool = True):
    """A small ignite training (4 epochs of 5 batches) drawing from every RNG the handler keeps.

    Returns ``(trainer, handler, model, evaluator, losses)``; ``losses`` holds each epoch's mean
    loss as the epoch completes. With ``crash_after_epoch`` the run raises at the start of the next
    epoch, after that epoch's checkpoint, as a killed run would stop.
    """
    import random
    from types import SimpleNamespace

    import numpy as np
    from ignite.engine import Engine, Events
    from monai.transforms import RandGaussianNoise

    from rd_components.handlers import ResumableCheckpoint

    torch.manual_seed(0), random.seed(0), np.random.seed(0)  # a fresh process with the same seed
    model = torch.nn.Sequential(torch.nn.Dropout(0.3), torch.nn.Linear(4, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.7)
    noise = RandGaussianNoise(prob=1.0, std=0.5).set_random_state(0)
    data = [(torch.arange(8.0).reshape(2, 4) / (i + 1), torch.tensor([i % 2, 1 - i % 2])) for i in range(5)]

    def step(engine, batch):
        x, y = batch
        x = noise(x) + random.random() + float(np.random.rand())
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()

    trainer, evaluator = Engine(step), Engine(lambda e, b: None)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1e9, -1
    run = SimpleNamespace(info=SimpleNamespace(run_id="id-1", run_name="run-1"))
    handler = ResumableCheckpoint(checkpoint, {"network": model, "optimizer": optimizer, "lr_scheduler": scheduler,
                                               "validator": evaluator}, resume=resume, fingerprint={"lr": 0.1},
                                  mlflow_handler=SimpleNamespace(cur_run=run), random_transforms=noise)
    handler.attach(trainer)
    losses, epoch_losses = [], []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: epoch_losses.append(e.state.output))

    @trainer.on(Events.EPOCH_COMPLETED)
    def _epoch_end(engine):
        losses.append(sum(epoch_losses) / len(epoch_losses))
        epoch_losses.clear()
        scheduler.step()
        if -losses[-1] > evaluator.state.best_metric:  # a resumed run compares with the best before the kill
            evaluator.state.best_metric, evaluator.state.best_metric_epoch = -losses[-1], engine.state.epoch

    @trainer.on(Events.EPOCH_STARTED)
    def _crash(engine):
        if crash_after_epoch is not None and engine.state.epoch > crash_after_epoch:
            raise KeyboardInterrupt("killed")

    trainer.run(data, max_epochs=4)
    return trainer, handler, model, evaluator, losses


def test_resumed_run_ends_like_an_uninterrupted_one_in_process(tmp_path):
    import random

    import numpy as np

    # uninterrupted; resume=True without a checkpoint starts from scratch
    _, reference_handler, reference, reference_eval, reference_losses = _small_training(tmp_path / "ref" / "resume.pt")
    assert reference_handler.resumed_from_epoch is None
    assert read_resume_checkpoint(tmp_path / "ref" / "resume.pt")["resume"]["completed"]

    checkpoint = tmp_path / "res" / "resume.pt"
    with pytest.raises(KeyboardInterrupt):
        _small_training(checkpoint, crash_after_epoch=2)
    state = read_resume_checkpoint(checkpoint)
    assert _epoch(state) == 2 and not state["resume"]["completed"]
    assert resumed_run_name(checkpoint, True) == "run-1"
    torch.manual_seed(123), random.seed(1), np.random.seed(2)  # another process's RNG states

    trainer, handler, model, evaluator, losses = _small_training(checkpoint)
    assert handler.resumed_from_epoch == 2 and trainer.state.epoch == 4
    assert losses == reference_losses[2:]
    for name, tensor in reference.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name
    assert (evaluator.state.best_metric, evaluator.state.best_metric_epoch) == (reference_eval.state.best_metric,
                                                                              reference_eval.state.best_metric_epoch)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["resume.pt"]  # one file, replaced in place

    # a finished run is not resumed: the next start begins a new run
    assert resumed_run_name(checkpoint, True) is None
    _, again, _, _, losses = _small_training(checkpoint)
    assert again.resumed_from_epoch is None and len(losses) == 4
