"""Tests of rd_components.losses: CKA (against an independent numpy implementation), KD, hints, RD."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rd_components.losses import CKALoss, HintLoss, KDLoss, RDLoss, cka

# ---------------------------------------------------------------------------------------------
# Independent plain-numpy CKA, float64, written after Kornblith et al.'s demo notebook
# (gram and feature-space formulations) and Song et al. 2007's unbiased HSIC formula.
# ---------------------------------------------------------------------------------------------


def np_gram_linear(x: np.ndarray) -> np.ndarray:
    return x.dot(x.T)


def np_gram_rbf(x: np.ndarray, threshold: float = 1.0) -> np.ndarray:
    dot_products = x.dot(x.T)
    sq_norms = np.diag(dot_products)
    sq_distances = -2 * dot_products + sq_norms[:, None] + sq_norms[None, :]
    sq_median_distance = np.median(sq_distances)
    return np.exp(-sq_distances / (2 * threshold**2 * sq_median_distance))


def np_center_gram(gram: np.ndarray, unbiased: bool = False) -> np.ndarray:
    gram = gram.copy()
    if unbiased:
        n = gram.shape[0]
        np.fill_diagonal(gram, 0)
        means = np.sum(gram, 0, dtype=np.float64) / (n - 2)
        means -= np.sum(means) / (2 * (n - 1))
        gram -= means[:, None]
        gram -= means[None, :]
        np.fill_diagonal(gram, 0)
    else:
        means = np.mean(gram, 0, dtype=np.float64)
        means -= np.mean(means) / 2
        gram -= means[:, None]
        gram -= means[None, :]
    return gram


def np_cka_gram(gram_x: np.ndarray, gram_y: np.ndarray, debiased: bool = False) -> float:
    gram_x = np_center_gram(gram_x, unbiased=debiased)
    gram_y = np_center_gram(gram_y, unbiased=debiased)
    scaled_hsic = gram_x.ravel().dot(gram_y.ravel())
    return float(scaled_hsic / (np.linalg.norm(gram_x) * np.linalg.norm(gram_y)))


def _np_debiased_dot(xty, sum_sq_rows_x, sum_sq_rows_y, sq_norm_x, sq_norm_y, n):
    return xty - n / (n - 2.0) * sum_sq_rows_x.dot(sum_sq_rows_y) + sq_norm_x * sq_norm_y / ((n - 1) * (n - 2))


def np_feature_space_linear_cka(x: np.ndarray, y: np.ndarray, debiased: bool = False) -> float:
    x = x - np.mean(x, 0, keepdims=True)
    y = y - np.mean(y, 0, keepdims=True)
    dot_similarity = np.linalg.norm(x.T.dot(y)) ** 2
    norm_x = np.linalg.norm(x.T.dot(x))
    norm_y = np.linalg.norm(y.T.dot(y))
    if debiased:
        n = x.shape[0]
        ssr_x = np.einsum("ij,ij->i", x, x)
        ssr_y = np.einsum("ij,ij->i", y, y)
        sn_x, sn_y = np.sum(ssr_x), np.sum(ssr_y)
        dot_similarity = _np_debiased_dot(dot_similarity, ssr_x, ssr_y, sn_x, sn_y, n)
        norm_x = np.sqrt(_np_debiased_dot(norm_x**2, ssr_x, ssr_x, sn_x, sn_x, n))
        norm_y = np.sqrt(_np_debiased_dot(norm_y**2, ssr_y, ssr_y, sn_y, sn_y, n))
    return float(dot_similarity / (norm_x * norm_y))


def np_song_unbiased_hsic(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2007, eq. (5): unbiased HSIC from raw (uncentred) kernel matrices."""
    n = k.shape[0]
    k = k - np.diag(np.diag(k))
    l = l - np.diag(np.diag(l))
    one = np.ones(n)
    value = np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (one @ k @ l @ one)
    return float(value / (n * (n - 3)))


def np_cka(x: np.ndarray, y: np.ndarray, kernel: str = "linear", debiased: bool = False, threshold: float = 1.0) -> float:
    x = x.reshape(x.shape[0], -1).astype(np.float64)
    y = y.reshape(y.shape[0], -1).astype(np.float64)
    if kernel == "linear":
        return np_cka_gram(np_gram_linear(x), np_gram_linear(y), debiased)
    return np_cka_gram(np_gram_rbf(x, threshold), np_gram_rbf(y, threshold), debiased)


@pytest.fixture(scope="module")
def kornblith_xy():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = x + np.random.randn(100, 10)
    return x, y


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=dtype)


# ------------------------------------------------ CKA: numpy reference is self-consistent ----


def test_numpy_reference_reproduces_published_values(kornblith_xy):
    x, y = kornblith_xy
    assert np_cka(x, y) == pytest.approx(0.55761, abs=1e-5)
    assert np_cka(x, y, "rbf", threshold=0.5) == pytest.approx(0.65483, abs=1e-5)
    assert np_cka(x, y, debiased=True) == pytest.approx(0.51346, abs=1e-5)


@pytest.mark.parametrize("debiased", [False, True])
def test_numpy_reference_gram_and_feature_space_agree(debiased):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 9))
    assert np_cka(x, y, debiased=debiased) == pytest.approx(np_feature_space_linear_cka(x, y, debiased), abs=1e-10)


def test_numpy_u_centering_matches_song_unbiased_hsic():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 6))
    k, l = np_gram_rbf(x, 0.8), np_gram_linear(y)
    song = np_song_unbiased_hsic(k, l) / np.sqrt(np_song_unbiased_hsic(k, k) * np_song_unbiased_hsic(l, l))
    assert np_cka_gram(k, l, debiased=True) == pytest.approx(song, abs=1e-10)


# --------------------------------------------------------- CKA: torch against the reference --


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cka_published_reference_values(kornblith_xy, dtype):
    x, y = (torch.tensor(a, dtype=dtype) for a in kornblith_xy)
    assert cka(x, y).item() == pytest.approx(0.55761, abs=1e-4)
    assert cka(x, y, kernel="rbf", threshold=0.5).item() == pytest.approx(0.65483, abs=1e-4)
    assert cka(x, y, unbiased=True).item() == pytest.approx(0.51346, abs=1e-4)


CASES = [
    # (x shape, y shape, kernel, unbiased, threshold)
    ((8, 5), (8, 12), "linear", False, 1.0),
    ((8, 5), (8, 12), "linear", True, 1.0),
    ((4, 3), (4, 7), "linear", True, 1.0),
    ((4, 3), (4, 7), "rbf", True, 1.0),
    ((2, 6), (2, 3), "linear", False, 1.0),
    ((16, 3, 4), (16, 7), "linear", False, 1.0),
    ((16, 2, 3, 3), (16, 2, 5), "rbf", False, 0.5),
    ((7, 30), (7, 4), "rbf", False, 2.0),
    ((10, 6), (10, 6), "rbf", True, 0.8),
]


@pytest.mark.parametrize("x_shape,y_shape,kernel,unbiased,threshold", CASES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_cka_matches_numpy(x_shape, y_shape, kernel, unbiased, threshold, dtype):
    x = _rand(*x_shape, seed=1).to(dtype)
    # y shares a component with x, so that CKA is not close to 0 for every case.
    shared = _rand(*x_shape, seed=1).reshape(x_shape[0], -1)[:, :1]
    y = (_rand(*y_shape, seed=2).reshape(y_shape[0], -1) + 0.5 * shared).reshape(y_shape).to(dtype)
    # The reference sees exactly the values the (possibly half precision) input holds.
    expected = np_cka(x.double().numpy(), y.double().numpy(), kernel, unbiased, threshold)
    got = cka(x, y, kernel=kernel, unbiased=unbiased, threshold=threshold)
    assert got.ndim == 0
    assert got.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert got.item() == pytest.approx(expected, abs=1e-4)


def test_cka_unbiased_can_be_negative_like_reference():
    # Independent features: the debiased estimate scatters around 0, so some seeds go negative.
    values = []
    for seed in range(6):
        x, y = _rand(6, 3, seed=seed, dtype=torch.float64), _rand(6, 4, seed=100 + seed, dtype=torch.float64)
        got = cka(x, y, unbiased=True).item()
        assert got == pytest.approx(np_cka(x.numpy(), y.numpy(), debiased=True), abs=1e-8)
        values.append(got)
    assert min(values) < 0


def test_cka_matches_numpy_with_large_offset_and_scale():
    # Float32 with a large common offset: centring features before the gram keeps precision.
    x = _rand(32, 16, seed=5, dtype=torch.float64)
    y = x @ _rand(16, 8, seed=6, dtype=torch.float64) + _rand(32, 8, seed=7, dtype=torch.float64)
    expected = np_cka(x.numpy(), y.numpy())
    assert cka((1e4 * x + 3e5).float(), (1e-5 * y).float()).item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("kernel,unbiased", [("linear", False), ("linear", True), ("rbf", False)])
def test_cka_self_similarity_is_one(kernel, unbiased):
    x = _rand(10, 7, seed=8)
    assert cka(x, x, kernel=kernel, unbiased=unbiased).item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_invariant_to_isotropic_scaling_and_translation(kernel):
    x, y = _rand(12, 5, seed=9), _rand(12, 6, seed=10)
    base = cka(x, y, kernel=kernel).item()
    for s in (1e-3, 0.37, 250.0):
        assert cka(s * x + 1.5, y, kernel=kernel).item() == pytest.approx(base, abs=1e-5)


@pytest.mark.parametrize("unbiased", [False, True])
def test_linear_cka_invariant_to_orthogonal_transform(unbiased):
    x, y = _rand(20, 6, seed=11, dtype=torch.float64), _rand(20, 4, seed=12, dtype=torch.float64)
    q, _ = torch.linalg.qr(_rand(6, 6, seed=13, dtype=torch.float64))
    base = cka(x, y, unbiased=unbiased).item()
    assert cka(x @ q, y, unbiased=unbiased).item() == pytest.approx(base, abs=1e-10)
    # Not invariant to a general (non-orthogonal) linear map: the check above can fail.
    a = torch.diag(torch.tensor([10.0, 1, 1, 1, 1, 0.1], dtype=torch.float64))
    assert abs(cka(x @ a, y, unbiased=unbiased).item() - base) > 1e-3


@pytest.mark.parametrize("kernel", ["linear", "rbf"])
def test_cka_constant_features_give_zero_not_nan(kernel):
    x = torch.full((6, 4), 3.3, requires_grad=True)
    y = _rand(6, 5, seed=14).requires_grad_(True)
    value = cka(x, y, kernel=kernel)
    assert value.item() == 0.0
    value.backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(y.grad).all()
    assert cka(torch.zeros(5, 3), torch.zeros(5, 2), kernel=kernel).item() == 0.0


@pytest.mark.parametrize("kernel,unbiased", [("linear", False), ("linear", True), ("rbf", False)])
def test_cka_gradients_flow_to_both_inputs(kernel, unbiased):
    x = _rand(8, 5, seed=15).requires_grad_(True)
    y = _rand(8, 3, 2, seed=16).requires_grad_(True)
    cka(x, y, kernel=kernel, unbiased=unbiased).backward()
    for t in (x, y):
        assert t.grad is not None and t.grad.shape == t.shape
        assert torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


@pytest.mark.parametrize("kernel,unbiased", [("linear", False), ("linear", True), ("rbf", False), ("rbf", True)])
def test_cka_gradcheck(kernel, unbiased):
    # Analytic gradients (through the detached rescaling and the RBF median) match finite differences.
    x = _rand(6, 3, seed=17, dtype=torch.float64).requires_grad_(True)
    y = _rand(6, 4, seed=18, dtype=torch.float64).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: cka(a, b, kernel=kernel, unbiased=unbiased, threshold=0.7), (x, y))


def test_cka_ignores_autocast():
    x, y = _rand(16, 32, seed=19), _rand(16, 24, seed=20)
    expected = cka(x, y).item()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = cka(x, y)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, abs=1e-6)


def test_cka_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        cka(torch.randn(5, 3), torch.randn(6, 3))
    with pytest.raises(ValueError, match="at least 2 samples, got 1"):
        cka(torch.randn(1, 3), torch.randn(1, 3))
    with pytest.raises(ValueError, match="at least 4 samples, got 3") as info:
        cka(torch.randn(3, 3), torch.randn(3, 3), unbiased=True)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="kernel"):
        cka(torch.randn(5, 3), torch.randn(5, 3), kernel="poly")
    with pytest.raises(ValueError, match="threshold"):
        cka(torch.randn(5, 3), torch.randn(5, 3), kernel="rbf", threshold=0.0)
    # Smallest allowed batches work.
    assert torch.isfinite(cka(torch.randn(2, 3), torch.randn(2, 3)))
    assert torch.isfinite(cka(torch.randn(4, 3), torch.randn(4, 3), unbiased=True))


# ---------------------------------------------------------------------------------- CKALoss --


def test_cka_loss_is_one_minus_cka_and_trainable():
    loss_fn = CKALoss(kernel="rbf", threshold=0.7)
    x, y = _rand(9, 4, seed=21), _rand(9, 6, seed=22)
    assert loss_fn(x, y).item() == pytest.approx(1.0 - cka(x, y, kernel="rbf", threshold=0.7).item(), abs=1e-7)
    assert CKALoss(unbiased=True).min_batch_size == 4 and CKALoss().min_batch_size == 2

    # Minimising the loss through a linear map aligns a student's features with a target's.
    torch.manual_seed(0)
    target = _rand(64, 8, seed=23)
    inputs = target @ _rand(8, 8, seed=24) + 0.1 * _rand(64, 8, seed=25)
    student = torch.nn.Linear(8, 5)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    linear_loss = CKALoss()
    start = linear_loss(student(inputs), target).item()
    for _ in range(100):
        opt.zero_grad()
        loss = linear_loss(student(inputs), target)
        loss.backward()
        opt.step()
    assert start > 0.2 and loss.item() < 0.5 * start


# ----------------------------------------------------------------------------------- KDLoss --


def test_kd_loss_matches_hinton_formula():
    s, t = _rand(6, 5, seed=26), _rand(6, 5, seed=27)
    tau = 3.0
    expected = tau**2 * F.kl_div(F.log_softmax(s / tau, 1), F.softmax(t / tau, 1), reduction="batchmean")
    p_t, p_s = F.softmax(t / tau, 1), F.softmax(s / tau, 1)
    by_hand = tau**2 * (p_t * (p_t / p_s).log()).sum(1).mean()
    got = KDLoss(temperature=tau)(s, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    assert got.item() == pytest.approx(by_hand.item(), rel=1e-5)
    per_sample = KDLoss(temperature=tau, reduction="none")(s, t)
    assert per_sample.shape == (6,) and (per_sample >= 0).all()
    assert KDLoss(tau, "sum")(s, t).item() == pytest.approx(per_sample.sum().item(), rel=1e-5)
    assert KDLoss(tau, "mean")(s, t).item() == pytest.approx(got.item(), rel=1e-6)
    assert KDLoss(tau)(t, t).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_dense_logits_and_precision():
    s, t = _rand(2, 4, 3, 3, seed=28), _rand(2, 4, 3, 3, seed=29)
    per_loc = KDLoss(2.0, "none")(s, t)
    assert per_loc.shape == (2, 3, 3)
    flat = KDLoss(2.0)(s.movedim(1, -1).reshape(-1, 4), t.movedim(1, -1).reshape(-1, 4))
    assert KDLoss(2.0)(s, t).item() == pytest.approx(flat.item(), rel=1e-5)
    # Half-precision and extreme logits: float32 result, finite.
    got = KDLoss()(s.half(), (1e4 * t).half())
    assert got.dtype == torch.float32 and torch.isfinite(got)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert KDLoss()(s, t).dtype == torch.float32


def test_kd_loss_gradients_and_errors():
    s = _rand(4, 3, seed=30).requires_grad_(True)
    t = _rand(4, 3, seed=31).requires_grad_(True)
    KDLoss()(s, t).backward()
    assert s.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same shape"):
        KDLoss()(torch.randn(4, 3), torch.randn(4, 5))
    with pytest.raises(ValueError, match="temperature"):
        KDLoss(temperature=0.0)
    with pytest.raises(ValueError, match="reduction"):
        KDLoss(reduction="avg")


# --------------------------------------------------------------------------------- HintLoss --


def test_hint_loss_vectors():
    hint = HintLoss(student_features=5, teacher_features=7)
    s = _rand(4, 5, seed=32)
    t = _rand(4, 7, seed=33).requires_grad_(True)
    expected = ((hint.regressor(s) - t) ** 2).mean()
    got = hint(s, t)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
    got.backward()
    assert t.grad is None  # the teacher is a fixed target by default
    assert hint.regressor.weight.grad.abs().sum() > 0

    opt = torch.optim.SGD(hint.parameters(), lr=0.1)
    start = hint(s, t).item()
    for _ in range(50):
        opt.zero_grad()
        hint(s, t).backward()
        opt.step()
    assert hint(s, t).item() < 0.5 * start


def test_hint_loss_maps_and_errors():
    hint = HintLoss(3, 6, spatial_dims=2, detach_teacher=False)
    assert isinstance(hint.regressor, torch.nn.Conv2d) and hint.regressor.kernel_size == (1, 1)
    s, t = _rand(2, 3, 4, 4, seed=34), _rand(2, 6, 4, 4, seed=35).requires_grad_(True)
    got = hint(s, t)
    assert got.item() == pytest.approx(F.mse_loss(hint.regressor(s), t).item(), rel=1e-6)
    got.backward()
    assert t.grad is not None and t.grad.abs().sum() > 0
    assert isinstance(HintLoss(3, 6, spatial_dims=3).regressor, torch.nn.Conv3d)
    with pytest.raises(ValueError, match="dims"):
        hint(torch.randn(2, 3), torch.randn(2, 6))
    with pytest.raises(ValueError, match="do not match"):
        hint(torch.randn(2, 3, 4, 4), torch.randn(2, 6, 5, 5))
    with pytest.raises(ValueError, match="spatial_dims"):
        HintLoss(3, 6, spatial_dims=4)


# ----------------------------------------------------------------------------------- RDLoss --


def _rd_inputs(b=8, c=4, d_s=6, d_t=6, seed=40, requires_grad=True):
    tensors = [
        _rand(b, c, seed=seed),  # student logits
        _rand(b, c, seed=seed + 1),  # teacher logits
        _rand(b, d_s, seed=seed + 2),  # student features
        _rand(b, d_t, seed=seed + 3),  # teacher features
    ]
    if requires_grad:
        tensors = [t.requires_grad_(True) for t in tensors]
    labels = torch.randint(0, c, (b,), generator=torch.Generator().manual_seed(seed + 4))
    return (*tensors, labels)


def test_rd_loss_terms_and_weighted_sum():
    weights = dict(ce_teacher_weight=0.7, ce_student_weight=1.3, kd_weight=0.4, cka_weight=2.5)
    loss_fn = RDLoss(**weights, temperature=3.0, label_smoothing=0.1)
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(d_t=9)
    out = loss_fn(s_log, t_log, s_feat, t_feat, y)
    assert set(out) == {"loss", "ce_teacher", "ce_student", "kd", "cka", "hint"}
    assert all(v.ndim == 0 and v.dtype == torch.float32 for v in out.values())
    assert out["hint"].item() == 0.0  # no hint projection configured
    # Each term is the unweighted value of the standalone formula.
    assert out["ce_teacher"].item() == pytest.approx(F.cross_entropy(t_log, y, label_smoothing=0.1).item(), rel=1e-6)
    assert out["ce_student"].item() == pytest.approx(F.cross_entropy(s_log, y, label_smoothing=0.1).item(), rel=1e-6)
    assert out["kd"].item() == pytest.approx(KDLoss(3.0)(s_log, t_log).item(), rel=1e-6)
    assert out["cka"].item() == pytest.approx(1.0 - cka(t_feat, s_feat).item(), rel=1e-6)
    total = 0.7 * out["ce_teacher"] + 1.3 * out["ce_student"] + 0.4 * out["kd"] + 2.5 * out["cka"]
    assert out["loss"].item() == pytest.approx(total.item(), rel=1e-6)
    out["loss"].backward()
    assert all(t.grad is not None for t in (s_log, t_log, s_feat))


@pytest.mark.parametrize("detach", [True, False])
def test_rd_loss_detach_teacher(detach):
    # Distillation terms only: with detaching, no gradient reaches the teacher side.
    loss_fn = RDLoss(ce_teacher_weight=0.0, ce_student_weight=0.0, kd_weight=1.0, cka_weight=1.0, detach_teacher=detach)
    s_log, t_log, s_feat, t_feat, y = _rd_inputs()
    loss_fn(s_log, t_log, s_feat, t_feat, y)["loss"].backward()
    for t in (t_log, t_feat):
        grad_norm = 0.0 if t.grad is None else t.grad.abs().sum().item()
        assert (grad_norm == 0.0) if detach else (grad_norm > 0.0)
    assert s_log.grad.abs().sum() > 0 and s_feat.grad.abs().sum() > 0


def test_rd_loss_detach_keeps_teacher_cross_entropy_gradient():
    s_log, t_log, s_feat, t_feat, y = _rd_inputs()
    RDLoss(detach_teacher=True)(s_log, t_log, s_feat, t_feat, y)["loss"].backward()
    # The teacher logits get exactly the gradient of their own cross-entropy, nothing from KD.
    t_ref = t_log.detach().clone().requires_grad_(True)
    F.cross_entropy(t_ref, y).backward()
    torch.testing.assert_close(t_log.grad, t_ref.grad)
    assert t_feat.grad is None


def test_rd_loss_zero_weight_terms_reported_without_gradient():
    loss_fn = RDLoss(ce_teacher_weight=0.0, ce_student_weight=1.0, kd_weight=0.0, cka_weight=0.0)
    s_log, t_log, s_feat, t_feat, y = _rd_inputs()
    out = loss_fn(s_log, t_log, s_feat, t_feat, y)
    assert out["loss"].item() == pytest.approx(out["ce_student"].item())
    assert out["kd"].item() == pytest.approx(KDLoss()(s_log, t_log).item(), rel=1e-6)
    assert out["cka"].item() == pytest.approx(1.0 - cka(t_feat, s_feat).item(), rel=1e-6)
    assert out["ce_teacher"].item() == pytest.approx(F.cross_entropy(t_log, y).item(), rel=1e-6)
    assert not any(out[k].requires_grad for k in ("ce_teacher", "kd", "cka"))
    out["loss"].backward()
    assert t_log.grad is None and t_feat.grad is None and s_feat.grad is None


BASELINES = {
    "student": dict(ce_teacher_weight=0.0, ce_student_weight=1.0, kd_weight=0.0, cka_weight=0.0),
    "cka": dict(ce_teacher_weight=0.0, ce_student_weight=1.0, kd_weight=0.0, cka_weight=1.0),
    "kd": dict(ce_teacher_weight=0.0, ce_student_weight=1.0, kd_weight=1.0, cka_weight=0.0),
    "rd_no_kd": dict(ce_teacher_weight=1.0, ce_student_weight=1.0, kd_weight=0.0, cka_weight=1.0),
    "rd_no_cka": dict(ce_teacher_weight=1.0, ce_student_weight=1.0, kd_weight=1.0, cka_weight=0.0),
    "rd": dict(),
}


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_rd_loss_baseline_configurations(method):
    loss_fn = RDLoss(**BASELINES[method])
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(seed=50)
    out = loss_fn(s_log, t_log, s_feat, t_feat, y)
    expected = sum(loss_fn.weights[k] * out[k].item() for k in ("ce_teacher", "ce_student", "kd", "cka"))
    assert out["loss"].item() == pytest.approx(expected, rel=1e-6)
    out["loss"].backward()
    assert (s_feat.grad is not None) == (loss_fn.weights["cka"] > 0)
    assert (t_log.grad is not None) == (loss_fn.weights["ce_teacher"] > 0)


def test_rd_loss_student_baseline_without_teacher_inputs():
    s_log, _, _, _, y = _rd_inputs()
    out = RDLoss(**BASELINES["student"])(s_log, None, None, None, y)
    assert out["loss"].item() == pytest.approx(F.cross_entropy(s_log, y).item(), rel=1e-6)
    assert out["kd"].item() == 0.0 and out["cka"].item() == 0.0 and out["ce_teacher"].item() == 0.0
    with pytest.raises(ValueError, match="'kd' has weight"):
        RDLoss(ce_teacher_weight=0.0, cka_weight=0.0)(s_log, None, None, None, y)


@pytest.mark.parametrize("shape_fn", [lambda y: y[:, None], lambda y: y.float(), lambda y: y[:, None].float()])
def test_rd_loss_label_shapes(shape_fn):
    loss_fn = RDLoss()
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(requires_grad=False)
    ref = loss_fn(s_log, t_log, s_feat, t_feat, y)
    got = loss_fn(s_log, t_log, s_feat, t_feat, shape_fn(y))
    for k in ref:
        assert got[k].item() == pytest.approx(ref[k].item(), rel=1e-6)
    one_hot = F.one_hot(y, 4).float()
    assert loss_fn(s_log, t_log, s_feat, t_feat, one_hot)["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="labels"):
        loss_fn(s_log, t_log, s_feat, t_feat, y[:5])
    with pytest.raises(ValueError, match="integral"):
        loss_fn(s_log, t_log, s_feat, t_feat, y.float() + 0.5)


def test_rd_loss_small_batches():
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(b=1)
    out = RDLoss(cka_weight=0.0)(s_log, t_log, s_feat, t_feat, y)
    assert out["cka"].item() == 0.0 and torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="at least 2 samples"):
        RDLoss(cka_weight=1.0)(s_log, t_log, s_feat, t_feat, y)
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(b=3)
    out = RDLoss(cka_weight=0.0, cka_unbiased=True)(s_log, t_log, s_feat, t_feat, y)
    assert torch.isfinite(out["loss"])
    with pytest.raises(ValueError, match="at least 4 samples"):
        RDLoss(cka_unbiased=True)(s_log, t_log, s_feat, t_feat, y)


def test_rd_loss_half_precision_and_autocast():
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(requires_grad=False)
    ref = RDLoss()(s_log, t_log, s_feat, t_feat, y)
    half = RDLoss()(s_log.half(), t_log.half(), s_feat.bfloat16(), t_feat.bfloat16(), y)
    assert all(v.dtype == torch.float32 for v in half.values())
    assert half["loss"].item() == pytest.approx(ref["loss"].item(), abs=0.05)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        auto = RDLoss()(s_log, t_log, s_feat, t_feat, y)
    assert auto["loss"].item() == pytest.approx(ref["loss"].item(), rel=1e-6)


def test_rd_loss_argument_validation():
    with pytest.raises(ValueError, match="kd_weight"):
        RDLoss(kd_weight=-1.0)
    with pytest.raises(ValueError, match="at least one"):
        RDLoss(ce_teacher_weight=0, ce_student_weight=0, kd_weight=0, cka_weight=0)
    with pytest.raises(ValueError, match="label_smoothing"):
        RDLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match="kernel"):
        RDLoss(cka_kernel="poly")


def test_rd_loss_hint_term_trains_its_projection():
    loss_fn = RDLoss(ce_teacher_weight=0.0, kd_weight=0.0, cka_weight=0.0, hint_weight=2.0, hint_features=(6, 9))
    s_log, t_log, s_feat, t_feat, y = _rd_inputs(d_t=9)
    out = loss_fn(s_log, None, s_feat, t_feat, y)
    expected = out["ce_student"] + 2.0 * loss_fn.hint_loss(s_feat, t_feat)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-6)
    out["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in loss_fn.parameters())
    with pytest.raises(ValueError, match="hint_features"):
        RDLoss(hint_weight=1.0)


def test_rd_loss_cross_entropy_skips_unlabelled_items():
    torch.manual_seed(0)
    s_logits, t_logits = torch.randn(6, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    s_feat, t_feat = torch.randn(6, 8), torch.randn(6, 8)
    labels = torch.tensor([2, -1, 0, -1, -1, 3])
    out = RDLoss()(s_logits, t_logits, s_feat, t_feat, labels)
    known = labels >= 0
    assert torch.allclose(out["ce_student"], F.cross_entropy(s_logits[known], labels[known]))
    assert torch.allclose(out["ce_teacher"], F.cross_entropy(t_logits[known], labels[known]))
    # KD and CKA use every item, labelled or not
    assert torch.allclose(out["kd"], KDLoss(4.0)(s_logits, t_logits.detach()))
    assert torch.allclose(out["cka"], CKALoss()(t_feat, s_feat))
    # unlabelled rows get gradient from KD only; a batch without labels is fine
    none = RDLoss(kd_weight=0.0, cka_weight=0.0)(s_logits, t_logits, s_feat, t_feat, torch.full((6,), -1))
    assert none["ce_student"].item() == 0.0 and none["loss"].item() == 0.0
    none["loss"].backward()
    assert torch.count_nonzero(s_logits.grad) == 0


def test_rd_loss_distill_scale_scales_distillation_terms_only():
    torch.manual_seed(1)
    args = (torch.randn(8, 3), torch.randn(8, 3), torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 3, (8,)))
    loss = RDLoss(hint_weight=0.0)
    full = loss(*args)
    loss.distill_scale = 0.25
    scaled = loss(*args)
    ce = full["ce_teacher"] + full["ce_student"]
    assert torch.allclose(scaled["loss"], ce + 0.25 * (full["kd"] + full["cka"]))
    loss.distill_scale = 0.0
    assert torch.allclose(loss(*args)["loss"], ce)


def test_distillation_schedule_shapes_and_handler():
    from ignite.engine import Engine

    from rd_components.handlers import DistillationSchedule, distill_scale

    assert distill_scale(0.0, "warmup", 0.2) == 0.0 and distill_scale(0.1, "warmup", 0.2) == pytest.approx(0.5)
    assert distill_scale(0.5, "warmup", 0.2) == 1.0 and distill_scale(0.3, "warmup", 0.0) == 1.0
    assert distill_scale(0.25, "decay") == pytest.approx(0.75) and distill_scale(0.9, "constant") == 1.0
    with pytest.raises(ValueError):
        distill_scale(0.5, "cosine")
    loss = RDLoss()
    seen = []
    engine = Engine(lambda e, b: seen.append(loss.distill_scale))
    DistillationSchedule(loss, "warmup", 0.5).attach(engine)
    engine.run(range(5), max_epochs=2)  # 10 iterations, ramp over the first 5
    assert seen == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0])
    assert engine.state.metrics["distill_scale"] == 1.0
