"""No absolute input path (a PACS export folder may be named after the patient) and no credential
of the tracking URI reaches MLflow, the files uploaded to it, or what a run prints."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import mlflow
import pytest
from bundle_helpers import bundle_configs, run_bundle
from test_mlflow_server import _no_proxy, mlflow_server  # noqa: F401 (fixtures: a real mlflow server)

from rd_components.embedded import build_dataset
from rd_components.privacy import loggable_path, mask_credentials, path_digest, redact_paths
from rd_components.tracking import credentials_to_environment, require_tracking_server

BUNDLE = "rd_classification_2d"
MARK = "DOE^JANE-PATHSECRET"
PASSWORD = "PW-URISECRET"


def test_mask_credentials_hides_user_password_and_tokens():
    assert mask_credentials("http://alice:pw@host:5000/x") == "http://***:***@host:5000/x"
    assert mask_credentials("https://token@host/") == "https://***@host/"
    assert "abc" not in mask_credentials("https://host/api?token=abc&experiment=1")
    assert "experiment=1" in mask_credentials("https://host/api?token=abc&experiment=1")
    assert mask_credentials("sqlite:////data/mlruns.db") == "sqlite:////data/mlruns.db"


def test_absolute_paths_are_logged_relative_or_as_digest(tmp_path):
    data = tmp_path / MARK
    assert loggable_path(data / "a" / "b.nii.gz", [data]) == "a/b.nii.gz"
    logged = loggable_path(data / "unlabelled")
    assert MARK not in logged and logged == path_digest(data / "unlabelled")
    assert loggable_path("relative/chosen.nii") == "relative/chosen.nii" and loggable_path(None) is None
    config = {"dataset_dir": str(data), "epochs": 3, "files": [str(data / "x.dcm")], "expr": "$@bundle_root + '/models'",
              "tracking_uri": f"http://alice:{PASSWORD}@127.0.0.1:5000"}
    redacted = redact_paths(config)
    assert MARK not in repr(redacted) and PASSWORD not in repr(redacted)
    assert redacted["epochs"] == 3 and redacted["expr"] == config["expr"]


def test_credentials_in_the_tracking_uri_move_to_mlflows_environment(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    assert credentials_to_environment(f"http://alice:{PASSWORD}@127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "alice" and os.environ["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://bob:{PASSWORD}@127.0.0.1:6000")
    assert credentials_to_environment("sqlite:///x.db") == "sqlite:///x.db"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:6000" and os.environ["MLFLOW_TRACKING_USERNAME"] == "bob"


def test_unreachable_server_message_does_not_print_the_password(monkeypatch):
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SystemExit) as stop:
        require_tracking_server(f"http://alice:{PASSWORD}@127.0.0.1:{port}", timeout=2)
    assert "not reachable" in str(stop.value) and PASSWORD not in str(stop.value) and "alice" not in str(stop.value)


@pytest.mark.slow
def test_input_paths_and_uri_credentials_never_reach_mlflow(tmp_path, mlflow_server, monkeypatch):  # noqa: F811
    """Train and evaluate on data under a patient-named folder, with unlabelled images from another
    one, tracked on a real server whose URI carries a password; search every byte MLflow stored and
    every line the runs printed."""
    uri, server_root = mlflow_server
    for name in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    secret_uri = uri.replace("http://", f"http://alice:{PASSWORD}@")
    data_dir = build_dataset(tmp_path / MARK / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=12, n_val=6,
                             n_test=6, progress=False).parent
    unlabeled = tmp_path / f"{MARK}-unlabelled"
    unlabeled.mkdir()
    for image in sorted(data_dir.rglob("*.nii*"))[:3]:
        (unlabeled / image.name).write_bytes(image.read_bytes())
    work = tmp_path / "work"
    work.mkdir()
    common = dict(dataset_dir=str(data_dir), output_dir=str(work / "eval"), ckpt_dir=str(work / "models"),
                  patch_size=[32, 32], batch_size=6, tracking_uri=secret_uri, experiment_name="private",
                  registered_model_name="private_student")
    train = run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), work, epochs=1, unlabeled_dir=str(unlabeled), **common)
    evaluate = run_bundle("evaluating", bundle_configs(BUNDLE, "train.yaml", "evaluate.yaml"), work, **common)

    # the runs reached the server, so there was something to leak into
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("private").experiment_id])
    assert len(runs) == 2 and all(r.info.status == "FINISHED" for r in runs)
    stored = [p for p in server_root.rglob("*") if p.is_file() and p.name != "server.log"]
    assert any(p.name == "MLmodel" for p in stored) and any(p.name == "executed_config.json" for p in stored)
    train_run = next(r for r in runs if "unlabeled_dir" in r.data.params)
    assert train_run.data.params["unlabeled_dir"] == path_digest(unlabeled)

    needles = [MARK.lower().encode(), PASSWORD.lower().encode()]
    leaks = {str(p.relative_to(server_root)): [n.decode() for n in needles if n in p.read_bytes().lower()] for p in stored}
    # what the runs print: the user's own paths may show on their terminal, the password never
    for name, result in (("training", train), ("evaluating", evaluate)):
        text = (result.stdout + result.stderr).lower().encode()
        leaks[f"<{name} output>"] = [n.decode() for n in needles[1:] if n in text]
    leaks = {where: found for where, found in leaks.items() if found}
    assert not leaks, f"private strings found: {leaks}"
    assert Path(data_dir).is_dir()  # control: the marker really is in the data path
    assert MARK in str(data_dir)
