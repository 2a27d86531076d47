"""MLflow tracking over HTTP: a real ``mlflow server``, and a dead one that stops training early."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import mlflow
import pytest
import torch
from bundle_helpers import bundle_configs, run_bundle

from rd_components.embedded import build_dataset
from rd_components.tracking import check_tracking_uri, require_tracking_server

BUNDLE = "rd_classification_2d"
HINT = "start it or pass --tracking_uri sqlite:///path/mlruns.db"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _FakeServer:
    """A local HTTP server answering every request with ``status`` (stands in for MLflow or a wrong
    service): an MLflow JSON body on 200, plain text otherwise, as proxies and other services send."""

    def __init__(self, status: int) -> None:
        body = json.dumps({"experiments": []}).encode() if status == 200 else b"Unauthorized" if status == 401 else b"Not Found"

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                self.server.paths.append(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET  # noqa: N815 (MLflow's client posts some searches)

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.paths = []
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    """Local servers are asked directly: a CI proxy would answer for them and change the reasons."""
    for name in _PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# ---- check_tracking_uri, in process --------------------------------------------------------------

def test_unreachable_http_server_is_one_clear_line(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(ConnectionError) as info:
        check_tracking_uri(uri, timeout=2)
    message = str(info.value)
    assert "\n" not in message
    assert message == f"MLflow tracking server {uri} is not reachable (connection refused); {HINT}"


def test_answering_server_passes_and_wrong_service_does_not(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with _FakeServer(200) as server:
        assert check_tracking_uri(server.uri + "/") == server.uri + "/"
        assert server.httpd.paths[0].startswith("/api/2.0/mlflow/experiments/search")
    with _FakeServer(404) as server, pytest.raises(ConnectionError, match="HTTP 404.*not an MLflow tracking server"):
        check_tracking_uri(server.uri)
    with _FakeServer(401) as server, pytest.raises(ConnectionError, match="credentials refused"):
        check_tracking_uri(server.uri)


def test_environment_overrides_the_argument(monkeypatch, tmp_path):
    dead = f"http://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", dead)
    with pytest.raises(ConnectionError, match=dead):
        check_tracking_uri(f"sqlite:///{tmp_path}/mlruns.db")
    with _FakeServer(200) as server:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.uri)
        assert check_tracking_uri(dead) == server.uri


def test_sqlite_folder_is_created_or_refused(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{tmp_path}/a%20b/c/mlruns.db"
    assert check_tracking_uri(uri) == uri
    assert (tmp_path / "a b" / "c").is_dir()
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder is needed")
    with pytest.raises(ConnectionError, match="cannot be created"):
        check_tracking_uri(f"sqlite:///{blocker}/mlruns.db")
    assert check_tracking_uri("databricks") == "databricks"
    assert check_tracking_uri("sqlite://") == "sqlite://"


def test_require_tracking_server_exits_with_the_line(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"http://127.0.0.1:{_free_port()}"
    with pytest.raises(SystemExit) as info:
        require_tracking_server(uri, timeout=2)
    assert str(info.value.code).startswith(f"MLflow tracking server {uri} is not reachable")
    assert require_tracking_server(uri, enabled=False) is None


# ---- the bundle ------------------------------------------------------------------------------------

def test_bundle_stops_before_training_when_server_is_unreachable(tmp_path):
    uri = f"http://127.0.0.1:{_free_port()}"
    data, out, ckpt = tmp_path / "data", tmp_path / "eval", tmp_path / "models"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", bundle_configs(BUNDLE, "train.yaml"),
           "--tracking_uri", uri, "--dataset_dir", str(data), "--output_dir", str(out), "--ckpt_dir", str(ckpt),
           "--patch_size", "[32, 32]", "--epochs", "1"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "2"}
    for name in ("MLFLOW_TRACKING_URI", *_PROXY_VARIABLES):
        env.pop(name, None)
    result = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    expected = f"MLflow tracking server {uri} is not reachable (connection refused); {HINT}"
    assert result.stderr.strip().splitlines()[-1] == expected, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    # stopped before anything was built or trained: no dataset, no checkpoint, no report, no run
    assert not data.exists() and not ckpt.exists() and not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def _start_mlflow_server(root: Path) -> tuple[subprocess.Popen, str, Path]:
    port = _free_port()
    log = root / "server.log"
    cmd = [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
           "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
           "--artifacts-destination", str(root / "artifacts")]
    # the GenAI job runner (seven huey consumer processes) is not needed for tracking and registry
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    # a session of its own, so that teardown can stop the server and its workers together
    process = subprocess.Popen(cmd, cwd=root, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                               start_new_session=True)
    return process, f"http://127.0.0.1:{port}", log


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.fixture
def mlflow_server(tmp_path, monkeypatch):
    """A real ``mlflow server`` on a free local port, with proxied artifacts; stopped at teardown."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    root = tmp_path / "server"
    root.mkdir()
    process, uri, log = _start_mlflow_server(root)
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise AssertionError(f"mlflow server exited ({process.returncode}):\n{log.read_text()[-4000:]}")
            try:
                check_tracking_uri(uri, timeout=2)
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"mlflow server did not answer within 90 s:\n{log.read_text()[-4000:]}") from None
                time.sleep(0.5)
        yield uri, root
    finally:
        _stop(process)


@pytest.mark.slow
def test_bundle_trains_against_a_real_mlflow_server(tmp_path, mlflow_server):
    uri, server_root = mlflow_server
    data_dir = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=12, n_val=6, n_test=6,
                             progress=False).parent
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    run_bundle("training", bundle_configs(BUNDLE, "train.yaml"), tmp_path, tracking_uri=uri, dataset_dir=str(data_dir),
               output_dir=str(out), ckpt_dir=str(ckpt), patch_size=[32, 32], batch_size=6, epochs=2,
               experiment_name="over_http", registered_model_name="tiny_http")
    assert not (out / "mlruns.db").exists()  # nothing fell back to a local store

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("over_http")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "val_accuracy")
    assert [m.step for m in history] == [1, 2] and all(0.0 <= m.value <= 1.0 for m in history)
    assert run.data.params["method"] == "rd"

    (version,) = client.search_model_versions("name='tiny_http'")
    assert version.run_id == run.info.run_id
    # the registered student answers a REST request of `mlflow models serve` with class names
    # and probabilities (the pyfunc of rd_components.serving around model.ts)
    port = _free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    serve_log = tmp_path / "serve.log"
    serve = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                              f"models:/tiny_http/{version.version}", "--env-manager", "local", "-h", "127.0.0.1",
                              "-p", str(port)], env=env, stdout=serve_log.open("wb"), stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        body = json.dumps({"inputs": torch.rand(3, 1, 32, 32).tolist()}).encode()
        answer, deadline = None, time.monotonic() + 120
        while answer is None:
            if serve.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow models serve did not answer:\n{serve_log.read_text()[-4000:]}")
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                                 headers={"Content-Type": "application/json"})
                answer = json.loads(urllib.request.urlopen(request, timeout=10).read())["predictions"]
            except OSError:
                time.sleep(1)
    finally:
        _stop(serve)
    names = ["grey matter", "white matter", "CSF/other"]
    assert len(answer) == 3 and all(row["predicted_class"] in names for row in answer)
    assert all(abs(sum(row[f"prob_{n}"] for n in names) - 1) < 1e-5 for row in answer)

    # artifacts went through the server's proxy into its --artifacts-destination
    stored = {p.name for p in (server_root / "artifacts").rglob("*") if p.is_file()}
    assert {"history.json", "training_curves.png", "executed_config.json"} <= stored
    assert "model.ts" in stored and not any(name.endswith(".pkl") for name in stored), stored
