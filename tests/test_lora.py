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


def _train_overlay(tmp_path, overlay: str, experiment: str):
    """One epoch of the 2D classification bundle with ``overlay`` on a tiny tissue set: (eval dir, models dir)."""
    data_dir = build_dataset(tmp_path / "data", "mni152_tissue", 2, "nifti", patch_size=32, n_train=12, n_val=6, n_test=6,
                             progress=False).parent
    out, ckpt = tmp_path / "eval", tmp_path / "models"
    run_bundle("training", bundle_configs("rd_classification_2d", "train.yaml", overlay), tmp_path,
               dataset_dir=str(data_dir), output_dir=str(out), ckpt_dir=str(ckpt), patch_size=[32, 32], batch_size=6,
               epochs=1, experiment_name=experiment, registered_model_name=experiment)
    return out, ckpt


def test_lora_overlay_trains_with_the_bundle(tmp_path):
    out, ckpt = _train_overlay(tmp_path, "methods/lora.yaml", "lora")
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["method"] == "lora" and info["student"] == "lora:efficientnet_lite0"
    assert info["torchscript_max_abs_diff"] <= 1e-4
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("lora").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["lora_rank"] == "8"
    assert len(client.get_metric_history(run.info.run_id, "val_accuracy")) == 1


def test_rd_with_an_adapted_teacher_trains_adapters_reprogrammer_and_student():
    """rd_lora_teacher's branch: RD's loss reaches the teacher's adapters through the reprogrammer;
    the teacher's own weights stay as loaded."""
    from rd_components.engines import RDBranches
    from rd_components.losses import RDLoss
    from rd_components.networks import (AdaptedTeacherReprogrammer, DeployableStudent, Reprogrammer,
                                        SharedClassifier, create_student, trainable_parameters)

    torch.manual_seed(0)
    teacher = create_teacher("efficientnet_lite0")
    frozen_before = {n: p.clone() for n, p in teacher.backbone.named_parameters()}
    x = torch.rand(4, 1, 32, 32)
    channels, *size = teacher(x).shape[1:]
    branch = AdaptedTeacherReprogrammer(teacher, Reprogrammer(2, channels, 16, feature_size=size), rank=4)
    student = DeployableStudent(create_student("resnet10", 2, 1, 16), SharedClassifier(16, 3))
    branches = RDBranches(student, branch)
    params = trainable_parameters(student, branch)
    assert {id(p) for p in params} >= {id(p) for n, p in branch.named_parameters() if "lora_" in n}
    optimizer = torch.optim.SGD(params, lr=0.5)
    loss = RDLoss()
    for _ in range(2):  # lora_B starts at zero: the first step moves it
        optimizer.zero_grad()
        out = branches(x, x)  # the trainer's source hands the images through (nn.Identity)
        assert out["teacher_logits"].shape == (4, 3)
        terms = loss(out["student_logits"], out["teacher_logits"], out["student_features"], out["teacher_features"],
                     torch.tensor([0, 1, 2, 0]))
        terms["loss"].backward()
        optimizer.step()
    assert any(float(p.detach().abs().sum()) > 0 for n, p in branch.named_parameters() if "lora_B" in n)
    for name, parameter in branch.teacher.backbone.named_parameters():
        if "lora_" not in name:
            assert torch.equal(parameter, frozen_before[name.replace("base_layer.", "")]), name
    assert not branch.teacher.training


def test_rd_lora_teacher_overlay_trains_the_student_with_the_bundle(tmp_path):
    out, ckpt = _train_overlay(tmp_path, "methods/rd_lora_teacher.yaml", "rd_lora")
    info = json.loads((ckpt / "model_info.json").read_text())
    assert info["method"] == "rd_lora_teacher" and not info["student"].startswith("lora:")  # the student is deployed
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{out / 'mlruns.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("rd_lora").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["lora_rank"] == "8"
    assert not any((out / "feature_cache").glob("**/*.safetensors"))  # the adapted teacher's features change: none cached
    assert len(client.get_metric_history(run.info.run_id, "teacher_val_accuracy")) == 1
