import math
import statistics

import pytest
import torch
from torch import nn

from lightning_callbacks import EffectiveRank, GradientCorrelation
from lightning_callbacks import functional as F
from timm_ll.models.toy import toy_net


def _ar1(n: int, phi: float, dim: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(n, dim, generator=gen, dtype=torch.float64)
    out = torch.empty_like(noise)
    out[0] = noise[0]
    for i in range(1, n):
        out[i] = phi * out[i - 1] + math.sqrt(1 - phi**2) * noise[i]
    return out


def test_line_probe_endpoints_and_errors():
    probe = F.line_probe(torch.tensor([-2.0]), torch.tensor([2.0]), 256)
    assert probe.shape == (256, 1) and probe[0].item() == -2.0 and probe[-1].item() == 2.0
    images = F.line_probe(torch.zeros(3, 4, 4), torch.ones(3, 4, 4), 5)
    assert images.shape == (5, 3, 4, 4) and images[2].mean().item() == pytest.approx(0.5)
    with pytest.raises(TypeError, match="embedding"):
        F.line_probe(torch.tensor([1]), torch.tensor([2]))
    with pytest.raises(ValueError, match="one shape"):
        F.line_probe(torch.zeros(2), torch.zeros(3))


def test_white_and_brown_noise():
    white = torch.randn(4096, 1, dtype=torch.float64)
    brown = white.cumsum(0)
    assert abs(F.neighbor_correlation(white).item()) < 0.15
    assert F.neighbor_correlation(brown).item() > 0.95
    assert abs(F.spectral_slope(torch.randn(1024, 32)).item()) < 0.3
    assert 1.7 < F.spectral_slope(torch.randn(1024, 32).cumsum(0)).item() < 2.3


def test_autocorrelation_definition_and_edge_cases():
    g = torch.randn(50, 3, dtype=torch.float64)
    z = g - g.mean(0)
    expected = (z[:-2] * z[2:]).sum() / (z * z).sum()
    acf = F.autocorrelation(g, max_lag=2)
    assert acf[0].item() == pytest.approx(1.0) and acf[2].item() == pytest.approx(expected.item())
    assert F.autocorrelation(torch.ones(10, 4), 3).tolist() == [1.0] * 4  # identical gradients: 1, not NaN
    nan = torch.randn(10, 2)
    nan[3, 1] = float("nan")
    assert math.isnan(F.neighbor_correlation(nan).item())
    with pytest.raises(ValueError, match="max_lag"):
        F.autocorrelation(g, max_lag=50)


def test_effective_and_stable_rank():
    u, v = torch.randn(20, 1), torch.randn(1, 30)
    assert F.effective_rank(u @ v).item() == pytest.approx(1.0)
    q, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    assert F.effective_rank(q).item() == pytest.approx(16.0)
    assert F.stable_rank(q).item() == pytest.approx(16.0)
    assert F.stable_rank(u @ v).item() == pytest.approx(1.0)
    assert F.effective_rank(torch.zeros(4, 4)).item() == 0.0


def test_singular_values_of_float32_match_a_float64_svd_both_ways_round():
    torch.manual_seed(0)
    for shape in ((64, 3072), (300, 12)):  # wide (n x n Gram) and tall (D x D Gram)
        a = torch.randn(*shape) * torch.logspace(0, -3, shape[1])  # a spread of scales
        exact = torch.linalg.svdvals(a.double())
        fast = F.singular_values(a)
        assert fast.dtype == torch.float64 and fast.shape == exact.shape
        assert torch.all(fast[:-1] >= fast[1:])  # largest first, as svdvals
        assert (fast - exact).abs().max().item() <= 1e-7 * exact[0].item()
    assert F.effective_rank(a).item() == pytest.approx(F.effective_rank(a.double()).item(), rel=1e-6)
    wide = torch.randn(8, 40, dtype=torch.float64)  # float64 keeps the SVD, to its round-off
    assert torch.equal(F.singular_values(wide), torch.linalg.svdvals(wide))


def test_a_batch_of_values_adds_like_one_at_a_time():
    values = torch.randn(7, dtype=torch.float64)
    one_by_one, at_once = GradientCorrelation(), GradientCorrelation()
    for value in values:
        one_by_one.add(value)
    at_once.add(values)
    assert at_once.mean_and_std() == pytest.approx(one_by_one.mean_and_std(), rel=1e-12)
    assert at_once.mean_and_std()[2] == 7


def test_covariance_image_is_normalized():
    cov = F.gradient_covariance(torch.randn(32, 8))
    assert cov.shape == (32, 32) and cov.max().item() == pytest.approx(1.0) and cov.min().item() >= 0


def test_depth_profile_recognizes_exponential_decay():
    layers = {f"layer{d}": _ar1(1024, math.exp(-0.3 * d), seed=d) for d in range(1, 8)}
    profile = F.depth_profile(layers)
    assert profile.blocks == list(layers) and profile.law == "exponential"
    assert profile.rate == pytest.approx(0.3, rel=0.2) and profile.r2 > 0.95


def test_depth_profile_recognizes_power_law():
    layers = {f"layer{d}": _ar1(2048, d**-0.8, seed=d) for d in range(1, 11)}
    profile = F.depth_profile(layers)
    assert profile.law == "power" and profile.rate == pytest.approx(0.8, rel=0.25)


def _paper_net_corr(kind: str, depth: int, seeds: int = 10, **kwargs) -> float:
    probe = F.line_probe(torch.tensor([-2.0]), torch.tensor([2.0]), 256)
    values = []
    for seed in range(seeds):
        torch.manual_seed(seed)
        grads = F.input_gradients(toy_net(depth, kind, **kwargs), probe, bn_mode="batch")
        values.append(F.neighbor_correlation(grads.input).item())
    return statistics.mean(values)


@pytest.mark.slow  # 43 nets of up to 50 layers
def test_matches_the_paper_on_1d_nets():
    assert _paper_net_corr("feedforward", 1) >= 0.9
    assert abs(_paper_net_corr("feedforward", 24)) <= 0.1
    assert abs(_paper_net_corr("feedforward", 50)) <= 0.1
    assert _paper_net_corr("resnet", 50) >= 0.35
    for depth in (1, 24, 50):
        assert _paper_net_corr("looks_linear", depth, seeds=3) == 1.0


def _bn_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.3),
        nn.Flatten(),
        nn.Linear(8 * 8 * 8, 5),
    )


def test_input_gradients_equal_per_sample_gradients_from_torch_func():
    net = _bn_net().train()
    net(torch.randn(16, 3, 8, 8))  # non-trivial running statistics
    x = torch.randn(6, 3, 8, 8)
    readout = F.random_projection_readout(3)
    grads = F.input_gradients(net, x, readout=readout)
    net.eval()
    expected = torch.func.vmap(torch.func.grad(lambda xi: readout(net(xi[None]))[0]))(x)
    torch.testing.assert_close(grads.input, expected)


@pytest.mark.parametrize("bn_mode", ["eval", "batch"])
def test_input_gradients_leave_no_trace(bn_mode):
    net = _bn_net().train()
    net(torch.randn(16, 3, 8, 8))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(6, 3, 8, 8)
    rng = torch.get_rng_state()
    grads = F.input_gradients(net, x, bn_mode=bn_mode, blocks=["2", "1", "5"])
    assert all(p.grad is None for p in net.parameters())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng) and net.training and net[3].training
    assert list(grads.blocks) == ["1", "2", "5"]  # forward order, not the order asked
    assert grads.blocks["1"].shape == (6, 8, 8, 8)


def test_input_gradients_errors_name_the_fix():
    net = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    ids = torch.randint(0, 10, (5, 3))
    with pytest.raises(TypeError, match="blocks=\\['<embedding"):
        F.input_gradients(net, ids)
    grads = F.input_gradients(net, ids, blocks=["0"])
    assert grads.input is None and grads.blocks["0"].shape == (5, 3, 4)
    with pytest.raises(ValueError, match="not a submodule"):
        F.input_gradients(net, ids, blocks=["encoder"])
    with pytest.raises(ValueError, match="bn_mode"):
        F.input_gradients(net, ids, blocks=["0"], bn_mode="train")


def test_chunked_gradients_equal_one_batch():
    net = _bn_net().eval()
    x = torch.randn(10, 3, 8, 8)
    whole = F.input_gradients(net, x, blocks=["1"])
    chunked = F.input_gradients(net, x, blocks=["1"], chunk_size=3)
    torch.testing.assert_close(chunked.input, whole.input)
    torch.testing.assert_close(chunked.blocks["1"], whole.blocks["1"])
    with pytest.raises(ValueError, match="chunk_size needs bn_mode='eval'"):
        F.input_gradients(net, x, bn_mode="batch", chunk_size=3)


def test_compiled_module_is_measured_through_its_original():
    net = _bn_net()
    compiled = torch.compile(net, backend="eager")
    x = torch.randn(4, 3, 8, 8)
    torch.testing.assert_close(F.input_gradients(compiled, x).input, F.input_gradients(net, x).input)


def test_a_network_compiled_in_place_is_measured_eagerly_without_a_recompilation():
    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    net, twin = _bn_net(), _bn_net()
    twin.load_state_dict(net.state_dict())
    net.compile(backend=counting_backend)
    batch = torch.randn(8, 3, 8, 8)
    net(batch), twin(batch)  # a training forward compiles it once (and updates both nets' BN statistics)
    assert len(graphs) == 1
    x = torch.randn(4, 3, 8, 8)  # another batch size, eval-mode BN, an input that needs a gradient
    torch.testing.assert_close(F.input_gradients(net, x).input, F.input_gradients(twin, x).input)
    assert len(graphs) == 1


def test_metrics_average_probes_and_merge_exactly():
    probes = [torch.randn(64, 5).cumsum(0) for _ in range(4)]
    whole, a, b = GradientCorrelation(), GradientCorrelation(), GradientCorrelation()
    for i, p in enumerate(probes):
        whole.update(p)
        (a if i % 2 else b).update(p)
    a.merge_state(b)  # what a DDP sync does with dist_reduce_fx="sum"
    expected = statistics.mean(F.neighbor_correlation(p).item() for p in probes)
    assert whole.compute().item() == pytest.approx(expected) and a.compute().item() == pytest.approx(expected)
    rank = EffectiveRank()
    rank.update(torch.eye(6))
    assert rank.compute().item() == pytest.approx(6.0)
    fig, _ = whole.plot()
    assert fig is not None
    with pytest.raises(ValueError, match="lag"):
        GradientCorrelation(lag=0)
