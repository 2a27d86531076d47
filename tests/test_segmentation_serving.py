"""The registered segmentation student: a model-from-code pyfunc answering images with a label map and
per-class probability maps, in process and over ``mlflow models serve``'s REST API."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import mlflow
import numpy as np
import pytest
import torch
from bundle_helpers import bundle_configs, run_bundle
from monai.transforms import LoadImage
from test_mlflow_server import _free_port, _no_proxy, _stop, mlflow_server  # noqa: F401 (fixtures: a real mlflow server)

from rd_components.embedded import build_segmentation_dataset
from rd_components.handlers import MLflowRegistryHandler
from rd_components.networks import SegmentationStudent
from rd_components.serving import window_starts, windowed_logits

CLASSES = ["background", "grey matter", "white matter"]


def test_windows_cover_every_position_and_average_to_the_whole_input_result():
    assert window_starts(10, 32) == [0]
    assert window_starts(70, 32) == [0, 24, 38]  # a quarter overlap; the last window ends at the edge
    conv = torch.nn.Conv2d(1, 3, 1)  # position-wise: windows change nothing
    images = torch.rand(2, 1, 70, 45)
    with torch.no_grad():
        torch.testing.assert_close(windowed_logits(conv, images, [32, 32]), conv(images))


def _registered_student(tmp_path: Path, uri: str, name: str | None = "seg_student") -> MLflowRegistryHandler:
    """A tiny scripted segmentation student registered through :class:`MLflowRegistryHandler` into a new run."""
    torch.manual_seed(0)
    network = SegmentationStudent(2, 1, len(CLASSES), features=(4, 4, 8, 8, 16, 4)).eval()
    ckpt = tmp_path / "models"
    ckpt.mkdir()
    torch.jit.save(torch.jit.script(network), str(ckpt / "model.ts"))
    info = {"task_kind": "segmentation", "class_names": CLASSES, "input_shape": [1, 1, 32, 32], "spatial_dims": 2}
    (ckpt / "model_info.json").write_text(json.dumps(info))
    exporter = SimpleNamespace(exported=network, script_path=ckpt / "model.ts", ckpt_dir=ckpt,
                               example_shape=(1, 1, 32, 32), model_info=info)
    client = mlflow.MlflowClient(tracking_uri=uri)
    run = client.create_run(client.create_experiment("serving"))
    handler = MLflowRegistryHandler(SimpleNamespace(cur_run=run, client=client), exporter, registered_model_name=name)
    handler.completed(None)
    return handler


def test_registered_segmentation_student_answers_label_maps_in_process(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    handler = _registered_student(tmp_path, uri)
    assert handler.model_version == "1"
    model = mlflow.pyfunc.load_model(handler.model_uri)
    assert model.metadata.metadata["task_kind"] == "segmentation"
    images = np.random.default_rng(0).random((2, 1, 40, 48), dtype=np.float32)  # larger than the 32 x 32 patch
    answer = model.predict(images)
    assert set(answer) == {"label_map", *(f"prob_{c}" for c in CLASSES)}
    assert answer["label_map"].shape == (2, 40, 48) and answer["label_map"].dtype == np.int64
    probs = np.stack([answer[f"prob_{c}"] for c in CLASSES], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(probs.argmax(axis=1), answer["label_map"])

    # what `mlflow models serve` writes for it: nested lists under "predictions"
    from mlflow.pyfunc.scoring_server import predictions_to_json

    buffer = io.StringIO()
    predictions_to_json(answer, buffer)
    served = json.loads(buffer.getvalue())["predictions"]
    assert np.asarray(served["label_map"]).shape == (2, 40, 48)
    np.testing.assert_allclose(np.asarray(served[f"prob_{CLASSES[1]}"]), answer[f"prob_{CLASSES[1]}"], rtol=1e-6)


def _post_when_served(port: int, body: bytes, serve: subprocess.Popen, log: Path, timeout: float = 180) -> dict:
    """POST ``body`` to ``/invocations`` once ``mlflow models serve`` answers; its ``predictions``."""
    deadline = time.monotonic() + timeout
    while True:
        if serve.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"mlflow models serve did not answer:\n{log.read_text()[-4000:]}")
        try:
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body,
                                             headers={"Content-Type": "application/json"})
            return json.loads(urllib.request.urlopen(request, timeout=30).read())["predictions"]
        except OSError:
            time.sleep(1)


@pytest.mark.slow
def test_segmentation_bundle_registers_a_student_served_over_rest(tmp_path, mlflow_server):  # noqa: F811
    uri, _ = mlflow_server
    datalist_file = build_segmentation_dataset(tmp_path / "data", "mni152_tissue", 2, 32, n_train=8, n_val=4)
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    run_bundle("training", bundle_configs("rd_segmentation_2d", "train.yaml"), tmp_path, tracking_uri=uri,
               datalist=str(datalist_file), output_dir=str(out), ckpt_dir=str(ckpt), patch_size=32, batch_size=4,
               epochs=1, experiment_name="seg_http")
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["task_kind"] == "segmentation"
    client = mlflow.MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("seg_http").experiment_id])
    assert run.info.status == "FINISHED"
    (version,) = client.search_model_versions("name='seg_http_student'")  # the base's <experiment>_student
    assert version.run_id == run.info.run_id

    # two whole axial test slices of the embedded task (larger than the patch: windows), through `mlflow models serve`
    test = json.loads(datalist_file.read_text())["test"][:2]
    load = LoadImage(image_only=True, ensure_channel_first=True)
    images = torch.stack([load(str(datalist_file.parent / item["image"])).float() for item in test])
    assert min(images.shape[2:]) > 32
    port, log = _free_port(), tmp_path / "serve.log"
    serve = subprocess.Popen([str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m",
                              f"models:/seg_http_student/{version.version}", "--env-manager", "local", "-h", "127.0.0.1",
                              "-p", str(port)], env={**os.environ, "MLFLOW_TRACKING_URI": uri}, stdout=log.open("wb"),
                             stderr=subprocess.STDOUT, start_new_session=True)
    try:
        answer = _post_when_served(port, json.dumps({"inputs": images.tolist()}).encode(), serve, log)
    finally:
        _stop(serve)
    labels = np.asarray(answer["label_map"])
    assert labels.shape == (images.shape[0], *images.shape[2:])
    assert labels.min() >= 0 and labels.max() < len(info["class_names"])
    probs = np.stack([np.asarray(answer[f"prob_{name}"]) for name in info["class_names"]], axis=1)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
