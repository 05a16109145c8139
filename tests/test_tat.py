"""Tailored rectifiers (TAT) and the looks-linear mirror ratio: the slope rule and the two families."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

import timm_ll  # noqa: F401  (registers the models)
from timm_ll.init import leaky_relu_cmap, looks_linear_, max_reachable_eta, net_cmap_at_zero, tat_gain, tat_slope
from timm_ll.layers import CReLU, TATLeakyReLU
from timm_ll.models.cifar import REGISTERED_DEPTHS, SLIM_WIDTHS, CifarNet

# the reference slopes at eta = 0.9 (depth -> negative slope), to 1e-3
REFERENCE_SLOPES = {20: 0.1644, 56: 0.4519, 110: 0.5856, 200: 0.6789}


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.6789, 1.0])
@pytest.mark.parametrize("c", [-0.5, 0.0, 0.4, 0.9])
def test_local_cmap_matches_monte_carlo(alpha, c):
    generator = torch.Generator().manual_seed(0)
    u, w = torch.randn(2, 1_000_000, generator=generator, dtype=torch.float64)
    v = c * u + math.sqrt(1 - c * c) * w  # unit variance, correlation c
    phi = TATLeakyReLU(alpha)
    fu, fv = phi(u), phi(v)
    # the C map is the cosine of the outputs; TAT's gain makes E[phi^2] = 1, so it is E[phi(u) phi(v)]
    assert abs((fu * fu).mean().item() - 1) < 3e-3
    assert abs((fu * fv).mean().item() - leaky_relu_cmap(c, alpha)) < 3e-3


def test_local_cmap_edges():
    assert leaky_relu_cmap(0.37, 1.0) == pytest.approx(0.37)  # slope 1: linear, the cosine is kept
    assert leaky_relu_cmap(0.0, 0.0) == pytest.approx(1 / math.pi)  # the normalized ReLU's C(0)
    for alpha in (0.0, 0.5, 1.0):
        assert leaky_relu_cmap(1.0, alpha) == pytest.approx(1.0)
    assert tat_gain(1.0) == 1.0 and tat_gain(0.0) == pytest.approx(math.sqrt(2))


@pytest.mark.parametrize("depth", sorted(REFERENCE_SLOPES))
def test_slopes_at_the_reference_values(depth):
    slope = tat_slope(depth - 1, 0.9)
    assert abs(slope - REFERENCE_SLOPES[depth]) < 1e-3
    assert net_cmap_at_zero(slope, depth - 1) == pytest.approx(0.9, abs=1e-9)


@pytest.mark.parametrize("depth", [20, 56, 200])
@pytest.mark.parametrize("eta", [0.5, 0.9])
def test_slope_agrees_with_dks(depth, eta):
    dks_transform = pytest.importorskip("dks.pytorch.activation_transform")

    def subnet_max(c, c_map):  # a plain chain: the whole net is its own maximal subnetwork
        for _ in range(depth - 1):
            c = c_map(c)
        return c

    dks_fn = dks_transform.get_transformed_activations(
        ["leaky_relu"], method="TAT", subnet_max_func=subnet_max, tat_params=dict(c_val_0_target=eta)
    )["leaky_relu"]
    x = torch.linspace(-3, 3, 61, dtype=torch.float64)
    ours = TATLeakyReLU(tat_slope(depth - 1, eta))(x)
    # dks bisects to |C - eta| < 1e-8: the two slopes, hence the functions, agree far inside 1e-5
    torch.testing.assert_close(dks_fn(x), ours, atol=1e-5, rtol=0)


def test_unreachable_eta_names_the_largest_reachable_value():
    assert max_reachable_eta(7) == pytest.approx(0.809, abs=5e-4)
    with pytest.raises(ValueError, match=r"7 activations.*0\.8091"):
        tat_slope(7, 0.9)
    with pytest.raises(ValueError, match=r"0\.8091"):
        timm.create_model("tat_plain8", eta=0.9)
    with pytest.raises(ValueError, match="0 <= eta < 1"):
        tat_slope(100, 1.0)
    assert tat_slope(100, 0.0) == pytest.approx(1.0)  # eta 0: a linear net, looks-linear's ratio


def test_mirror_ratio_one_is_looks_linear_bitwise():
    layers = []
    for alpha in (None, 1.0):
        torch.manual_seed(3)
        layer = nn.Conv2d(8, 5, 3)
        layers.append(looks_linear_(layer) if alpha is None else looks_linear_(layer, alpha=alpha))
    assert torch.equal(layers[0].weight, layers[1].weight)
    torch.manual_seed(3)
    ratio = looks_linear_(nn.Conv2d(8, 5, 3), alpha=0.25).weight
    gain = tat_gain(0.25)
    torch.testing.assert_close(ratio[:, :4] / gain, layers[0].weight[:, :4])
    torch.testing.assert_close(ratio[:, 4:], -0.25 * ratio[:, :4])
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        looks_linear_(nn.Linear(4, 2), alpha=1.5)


def _leaky_twin(model: CifarNet) -> CifarNet:
    """The Leaky-ReLU net (slope alpha, gain 1) with the first half ``W[:, :C]`` of every mirrored weight."""
    twin = CifarNet(depth=model.depth, widths=SLIM_WIDTHS, dtype=torch.float64)
    for module in list(twin.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, nn.ReLU):
                setattr(module, child_name, nn.LeakyReLU(model.slope))
    twin_state = twin.state_dict()
    for key, value in model.state_dict().items():
        if value.dim() >= 2 and value.shape[1] == 2 * twin_state[key].shape[1]:
            value = value[:, : value.shape[1] // 2]  # a mirrored layer: its first half, s W0
        twin_state[key] = value
    twin.load_state_dict(twin_state)
    return twin


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_crelu_net_with_a_ratio_is_its_leaky_relu_twin(mode):
    model = timm.create_model("tat_slim20", dtype=torch.float64)  # built in float64: the halves to round-off
    assert model.slope == pytest.approx(tat_slope(19, 0.9)) and model.slope < 1
    twin = _leaky_twin(model)
    model.train(mode == "train")
    twin.train(mode == "train")
    x = torch.randn(8, 3, 32, 32, dtype=torch.float64)
    with torch.no_grad():
        expected, got = twin(x), model(x)
    assert ((got - expected).norm() / expected.norm()).item() < 1e-12
    # and the ratio matters: a looks-linear net (ratio 1) of the same weights' first halves is another function
    assert not torch.allclose(timm.create_model("ll_slim20", dtype=torch.float64).train(mode == "train")(x), got)


@pytest.mark.parametrize("depth", [d for d in REGISTERED_DEPTHS if d > 8])
def test_parameter_counts_equal_plain_and_ll_slim_exactly(depth):
    assert _params(timm.create_model(f"tat_plain{depth}")) == _params(timm.create_model(f"plain{depth}"))
    assert _params(timm.create_model(f"tat_slim{depth}")) == _params(timm.create_model(f"ll_slim{depth}"))


def test_the_slope_follows_the_model():
    for family in ("tat_plain", "tat_slim"):
        model = timm.create_model(f"{family}20", depth=200)
        assert model.slope == pytest.approx(REFERENCE_SLOPES[200], abs=1e-3)
        assert model.pretrained_cfg["architecture"] == f"{family}20"
        assert timm.create_model(f"{family}56", eta=0.5).slope == pytest.approx(tat_slope(55, 0.5))
    plain = timm.create_model("tat_plain110")
    slopes = {m.negative_slope for m in plain.modules() if isinstance(m, TATLeakyReLU)}
    assert slopes == {plain.slope} and not any(isinstance(m, nn.ReLU) for m in plain.modules())
    assert len([m for m in plain.modules() if isinstance(m, TATLeakyReLU)]) == 109  # depth - 1 activations
    slim = timm.create_model("tat_slim110")
    assert not any(isinstance(m, TATLeakyReLU) for m in slim.modules())  # the ratio lives in the weights
    assert len([m for m in slim.modules() if isinstance(m, CReLU)]) == 109
    # reset_classifier and init_weights keep the ratio: the classifier's mirror halves are s W0, -s alpha W0
    slim.reset_classifier(7)
    half = slim.fc.weight.shape[1] // 2
    torch.testing.assert_close(slim.fc.weight[:, half:], -slim.slope * slim.fc.weight[:, :half])
    slim.init_weights()
    conv = slim.stages[2][0].unit2.conv.weight
    half = conv.shape[1] // 2
    torch.testing.assert_close(conv[:, half:], -slim.slope * conv[:, :half])
    assert slim.slope == pytest.approx(REFERENCE_SLOPES[110], abs=1e-3)


def test_eta_is_refused_where_it_means_nothing():
    with pytest.raises(ValueError, match="eta=0.9 sets a TAT slope"):
        timm.create_model("plain20", eta=0.9)
    with pytest.raises(ValueError, match="give eta="):
        CifarNet(depth=20, act_layer="tat_leaky_relu", weight_init="orthogonal")


def _second_moments(model: nn.Module, x: torch.Tensor) -> list[float]:
    """Mean square of every conv's output (a pre-activation in a norm-free net), in order."""
    moments: list[float] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: moments.append(out.pow(2).mean().item()))
        for m in model.modules()
        if isinstance(m, nn.Conv2d)
    ]
    with torch.no_grad():
        model.eval()(x)
    for hook in hooks:
        hook.remove()
    return moments


@pytest.mark.slow
@pytest.mark.parametrize("family", ["tat_plain", "tat_slim"])
def test_norm_free_variant_keeps_the_activation_scale_through_depth_200(family):
    # TAT's Q map: with the gain, E[phi(x)^2] = E[x^2], and a Haar (delta-)orthogonal layer makes each
    # pre-activation's direction uniform, so every layer keeps the second moment in expectation: the
    # one-step gain q_{l+1} / q_l has mean 1 over weight draws, and the expected scale at layer l is the
    # product of those means. One draw at these widths (11-64 channels) wanders by up to ~10x over 199
    # layers (a finite-width random walk the infinite-width theory leaves out), so the expectation is
    # taken over draws. Without the gain the same nets lose ((1 + a^2) / 2)^199 of the scale.
    draws = 32
    gains = torch.zeros(draws, 199 - 1)  # the 199 convs of a depth-200 net (the 200th layer is the classifier)
    ungained = torch.zeros(draws)
    model = timm.create_model(f"{family}200", norm_layer="")
    activations = [m for m in model.modules() if isinstance(m, TATLeakyReLU)]
    for seed in range(draws):
        torch.manual_seed(seed)
        model.init_weights()  # a fresh draw of the same net
        for m in activations:
            m.gain = tat_gain(m.negative_slope)
        x = torch.randn(4, 3, 8, 8)  # delta-orthogonal convs act per pixel: a small image is enough
        moments = torch.tensor(_second_moments(model, x))
        gains[seed] = moments[1:] / moments[:-1]
        for m in activations:  # drop the gain (TAT's Leaky ReLU's, or the mirrored weights' s)
            m.gain = 1.0
        for m in model.modules():
            if isinstance(m, nn.Conv2d) and m is not model.stem.conv and not activations:
                m.weight.data /= tat_gain(model.slope)
        ungained[seed] = _second_moments(model, x)[-1] / moments[0]
    assert abs(gains.mean().item() - 1) < 0.01  # each layer's expected gain is 1
    expected_scale = gains.mean(dim=0).cumprod(dim=0)  # E[q_l] / q_0 through the net
    assert expected_scale.min() > 0.5 and expected_scale.max() < 2.0, (expected_scale.min(), expected_scale.max())
    assert ungained.max() < 1e-6
