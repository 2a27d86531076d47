"""Reprogrammer, shared classifier, students and the deployable student."""

import pytest
import torch

from rd_components.networks import DeployableStudent, Reprogrammer, SharedClassifier, create_student, list_students


@pytest.mark.parametrize("spatial_dims,shape", [(0, (4, 24)), (2, (4, 24, 3, 3)), (3, (4, 24, 2, 2, 2))])
def test_reprogrammer_shapes_and_identity_start(spatial_dims, shape):
    torch.manual_seed(0)
    rep = Reprogrammer(spatial_dims, in_channels=24, out_features=10).eval()
    x = torch.randn(shape)
    out = rep(x)
    assert out.shape == (4, 10)
    # zero-initialised residual branch: at start the module is projection(pool(x))
    pooled = x if spatial_dims == 0 else x.flatten(2).mean(2)
    torch.testing.assert_close(out, rep.projection(pooled))


def test_reprogrammer_learns_away_from_identity():
    torch.manual_seed(0)
    rep = Reprogrammer(2, in_channels=8, out_features=4)
    x, target = torch.randn(6, 8, 3, 3), torch.randn(6, 4)
    opt = torch.optim.SGD(rep.parameters(), lr=0.1)
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.mse_loss(rep(x), target).backward()
        opt.step()
    assert rep.blocks[0][-1].weight.abs().sum() > 0


def test_reprogrammer_learned_pooling_starts_as_average_and_learns_location():
    torch.manual_seed(0)
    rep = Reprogrammer(2, in_channels=4, out_features=2, feature_size=(3, 3), pooling="learned")
    x = torch.randn(8, 4, 3, 3)
    rep.eval()
    torch.testing.assert_close(rep(x), rep.projection(x.flatten(2).mean(2)))
    # the target depends on the centre position only: the learned weights move towards it
    rep.train()
    opt = torch.optim.Adam(rep.parameters(), lr=0.05)
    for _ in range(200):
        x = torch.randn(32, 4, 3, 3)
        opt.zero_grad()
        torch.nn.functional.mse_loss(rep(x), x[:, :2, 1, 1]).backward()
        opt.step()
    weights = torch.softmax(rep.position_logits, 0)
    assert weights.argmax().item() == 4 and weights[4] > 0.5
    with pytest.raises(ValueError, match="map positions"):
        rep(torch.randn(2, 4, 2, 2))
    with pytest.raises(ValueError, match="feature_size"):
        Reprogrammer(2, 4, 2, pooling="learned")
    with pytest.raises(ValueError, match="pooling"):
        Reprogrammer(2, 4, 2, pooling="max")


def test_reprogrammer_rejects_mismatched_features():
    rep = Reprogrammer(2, in_channels=16, out_features=4)
    with pytest.raises(ValueError, match="does not fit this reprogrammer"):
        rep(torch.randn(2, 8, 3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        rep(torch.randn(2, 16))


def test_shared_classifier_shape_check():
    clf = SharedClassifier(8, 3)
    assert clf(torch.randn(5, 8)).shape == (5, 3)
    with pytest.raises(ValueError):
        clf(torch.randn(5, 9))
    with pytest.raises(ValueError):
        SharedClassifier(8, 1)


@pytest.mark.parametrize("name,kwargs", [("resnet10", {"widen_factor": 0.25}), ("resnet18", {"widen_factor": 0.25}),
                                         ("densenet121", {"growth_rate": 4, "init_features": 8, "block_config": (2, 2, 2, 2)}), ("tiny_cnn", {})])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_students_give_features_and_script(name, kwargs, spatial_dims):
    torch.manual_seed(0)
    size = 32
    student = create_student(name, spatial_dims, in_channels=1, feature_dim=12, **kwargs)
    x = torch.rand(2, 1, *([size] * spatial_dims))
    assert student(x).shape == (2, 12)
    model = DeployableStudent(student, SharedClassifier(12, 3)).eval()
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x), atol=1e-5, rtol=1e-5)
    assert model.features(x).shape == (2, 12)


def test_unknown_student_lists_names():
    with pytest.raises(ValueError) as info:
        create_student("vgg", 2, 1, 8)
    for name in list_students():
        assert name in str(info.value)


def test_default_2d_student_is_small():
    # the 2D bundle's student must stay under a tenth of EfficientNet-Lite0 (4.65M parameters)
    student = DeployableStudent(create_student("resnet10", 2, 1, 128, widen_factor=0.25), SharedClassifier(128, 3))
    assert sum(p.numel() for p in student.parameters()) < 465_000


def test_reprogrammer_drops_taps_that_only_see_padding():
    """With feature_size, size-1 axes get kernel 1: fewer weights, the same function."""
    from rd_components.networks import Reprogrammer

    torch.manual_seed(0)
    full = Reprogrammer(3, 32, 8)
    slim = Reprogrammer(3, 32, 8, feature_size=(1, 1, 2))
    assert sum(p.numel() for p in slim.parameters()) < sum(p.numel() for p in full.parameters())
    torch.nn.init.normal_(full.blocks[0][-1].weight)  # leave the zero-initialised identity
    state = {k: v[:, :, 1:2, 1:2, :] if v.shape != slim.state_dict()[k].shape else v for k, v in full.state_dict().items()}
    slim.load_state_dict(state)
    x = torch.rand(4, 32, 1, 1, 2)
    torch.testing.assert_close(slim.eval()(x), full.eval()(x))
    with pytest.raises(ValueError, match="feature_size"):
        Reprogrammer(3, 32, 8, feature_size=(1, 2))
