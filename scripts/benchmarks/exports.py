"""Exports of the deployable student: TorchScript and ONNX outputs against eager."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any, Callable

from .setup import BenchmarkSetup


def check_exports(setup: BenchmarkSetup, network: Any, tmp: Path, latency_runs: int) -> dict[str, Any]:
    """TorchScript and ONNX exports vs eager at batch 1 and 2: max abs differences, ONNX runtime latency.

    TorchScript goes through the project's ``export_torchscript`` (what the bundles' exporter
    writes as ``model.ts``; it wraps ``monai.networks.utils.convert_to_torchscript``), ONNX
    through ``monai.networks.utils.convert_to_onnx`` with a dynamic batch axis. A failed export
    is reported in the result, not raised: the other figures still count.
    """
    import torch
    from monai.networks.utils import convert_to_onnx
    from rd_components.handlers.export import export_torchscript

    network = network.to("cpu").eval()
    shape = (setup.settings["in_channels"], *setup.settings["patch_size"])
    example = torch.rand(1, *shape)
    out: dict[str, Any] = {}
    try:
        ts_diff = export_torchscript(network, tmp / "model.ts", example, atol=float("inf"))
        scripted = torch.jit.load(str(tmp / "model.ts"))
        x2 = torch.rand(2, *shape)
        with torch.no_grad():
            ts_diff = max(ts_diff, float((scripted(x2) - network(x2)).abs().max()))
        out["torchscript_max_abs_diff"] = ts_diff
    except Exception as error:
        out["torchscript_error"] = f"{type(error).__name__}: {error}"[:500]
    try:
        onnx_path = tmp / "model.onnx"
        # MONAI's verify only asserts a tolerance; the figure needs the difference itself, measured below
        convert_to_onnx(network, [example], input_names=["image"], output_names=["logits"], filename=str(onnx_path),
                        verify=False, use_trace=True, dynamo=True, verbose=False,
                        dynamic_shapes={"images": {0: torch.export.Dim("batch")}})
        run_onnx, runtime = onnx_runner(onnx_path)
        diffs = []
        for b in (1, 2):
            x = torch.rand(b, *shape)
            with torch.no_grad():
                diffs.append(float(abs(run_onnx(x.numpy()) - network(x).numpy()).max()))
        out["onnx_max_abs_diff"] = max(diffs)
        out["onnx_runtime"] = runtime
        # onnx.reference is an interpreter for checking, not a runtime: no latency from it
        if runtime.startswith("onnxruntime"):
            x = example.numpy()
            for _ in range(5):
                run_onnx(x)
            times = []
            for _ in range(latency_runs):
                t0 = time.perf_counter()
                run_onnx(x)
                times.append(time.perf_counter() - t0)
            out["onnxruntime_latency_ms"] = 1000 * statistics.median(times)
    except Exception as error:
        out["onnx_error"] = f"{type(error).__name__}: {error}"[:500]
    return out


def onnx_runner(path: Path) -> tuple[Callable[[Any], Any], str]:
    """A callable ``numpy (B, C, *spatial) -> logits`` for the ONNX file, and the runtime's name.

    onnxruntime when installed, else the ``onnx.reference`` evaluator (slow, but exact enough
    for the comparison with eager).
    """
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})[0]), f"onnxruntime {ort.__version__}"
    except ImportError:
        import onnx
        from onnx.reference import ReferenceEvaluator

        evaluator = ReferenceEvaluator(onnx.load(str(path)))
        name = evaluator.input_names[0]
        return (lambda x: evaluator.run(None, {name: x})[0]), f"onnx.reference {onnx.__version__}"
