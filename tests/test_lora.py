"""LoRA baseline (PEFT): only adapters and head train, the teacher's own weights never change."""

from __future__ import annotations

import json

import mlflow
import torch
from bundle_helpers import bundle_configs, run_bundle

from rd_components.embedded import build_dataset
from rd_components.foundation import create_teacher
from rd_components.handlers import export_torchscript
from rd_components.networks import LoRAClassifier, pointwise_layer_names


def test_lora_trains_adapters_and_head_only(tmp_path):
    teacher = create_teacher("efficientnet_lite0")
    frozen_before = {n: p.clone() for n, p in teacher.backbone.named_parameters()}
    targets = pointwise_layer_names(teacher.backbone)
    model = LoRAClassifier(teacher, num_classes=3, rank=4)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("classifier.") for n in trainable)
    assert model.num_adapted_layers == len(targets) > 10

    x = torch.rand(4, 1, 32, 32)
    logits = model(x)
    assert logits.shape == (4, 3)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    # lora_B starts at zero: the first step moves B (and the head), the second reaches A's effect
    for _ in range(2):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), torch.tensor([0, 1, 2, 0])).backward()
        optimizer.step()
    for name, parameter in model.teacher.backbone.named_parameters():
        if "lora_" in name:
            continue
        base = name.replace("base_layer.", "")
        assert torch.equal(parameter, frozen_before[base]), name
    assert any(float(p.detach().abs().sum()) > 0 for n, p in model.named_parameters() if "lora_B" in n)
    assert not model.teacher.training  # BatchNorm statistics stay frozen

    # not scriptable (peft): exported by tracing, equal to eager
    diff = export_torchscript(model, tmp_path / "lora.ts", torch.rand(2, 1, 32, 32))
    assert diff <= 1e-4
    loaded = torch.jit.load(str(tmp_path / "lora.ts"))
    torch.testing.assert_close(loaded(x), model.eval()(x), rtol=1e-4, atol=1e-4)


def test_lora_overlay_trains_with_the_bundle(tmp_path):
    data_dir = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=12, n_val=6, n_test=6,
                             progress=False).parent
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    run_bundle("training", bundle_configs("rd_classification_2d", "train.yaml", "methods/lora.yaml"), tmp_path,
               dataset_dir=str(data_dir), output_dir=str(out), ckpt_dir=str(ckpt), patch_size=[32, 32], batch_size=6,
               epochs=1, experiment_name="lora", registered_model_name="lora")
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["method"] == "lora" and info["student"] == "lora:efficientnet_lite0"
    assert info["torchscript_max_abs_diff"] <= 1e-4
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lora").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["lora_rank"] == "8"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1
