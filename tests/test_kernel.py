"""The forward kernel (the cosine of a signal at a line's two endpoints) against signal-propagation theory at
init: wide, deep, normalization-free MLPs whose endpoints have a known cosine."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_callbacks import ForwardKernel, ShatteringMeasurer
from lightning_callbacks import functional as F

WIDTH, DEPTH, INPUT_COSINE = 1024, 12, 0.2
# a line's cosine at one layer of a finite net wanders by O(1/sqrt(width)) around the map, and the
# wander accumulates with depth; the mean over 4 weight draws x 8 lines stays within this of the
# infinite-width map (measured deviation about half of it)
TOLERANCE = 0.04
DRAWS, LINES = 4, 8


def relu_cmap(c: float) -> float:
    """The ReLU C map (Cho & Saul's degree-1 arc-cosine kernel, normalized): (sqrt(1-c^2) + (pi - acos c) c) / pi."""
    return (math.sqrt(max(1.0 - c * c, 0.0)) + (math.pi - math.acos(c)) * c) / math.pi


def leaky_relu_cmap(c: float, slope: float) -> float:
    """The Leaky-ReLU C map: phi(x) = slope x + (1 - slope) relu(x) on unit Gaussians of correlation c."""
    relu_part = (math.sqrt(max(1.0 - c * c, 0.0)) + (math.pi - math.acos(c)) * c) / (2 * math.pi)
    cross = slope * slope * c + slope * (1 - slope) * c + (1 - slope) ** 2 * relu_part
    return cross / ((1 + slope * slope) / 2)


def endpoints(dim: int, cosine: float, seed: int = 0) -> torch.Tensor:
    """Two inputs ``(2, dim)`` of exactly this cosine."""
    gen = torch.Generator().manual_seed(seed)
    e, f = torch.randn(2, dim, generator=gen, dtype=torch.float64)
    e = e / e.norm()
    f = f - (f @ e) * e
    f = f / f.norm()
    return torch.stack([e, cosine * e + math.sqrt(1 - cosine**2) * f])


class CReLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.relu(x), torch.relu(-x)], dim=-1)


def mlp(activation: nn.Module, width: int = WIDTH, depth: int = DEPTH, seed: int = 0) -> nn.Sequential:
    """``depth`` blocks of a bias-free Linear (He-scaled Gaussian weights) and ``activation``, float64."""
    torch.manual_seed(seed)
    blocks = [nn.Sequential(nn.Linear(width, width, bias=False), activation) for _ in range(depth)]
    for block in blocks:
        nn.init.kaiming_normal_(block[0].weight, nonlinearity="relu")
    return nn.Sequential(*blocks).double()


def looks_linear_mlp(width: int = WIDTH, depth: int = DEPTH, seed: int = 0) -> nn.Sequential:
    """The LL MLP: an orthogonal first layer, then ``[W0, -W0]`` (W0 square orthogonal) after every CReLU, and a
    square mirrored readout: linear at init (every layer's pre-activation is an orthogonal map of the input).
    One W0 serves every layer: the construction needs only orthogonality, and a 1024-wide QR costs a second."""
    torch.manual_seed(seed)
    w0 = nn.init.orthogonal_(torch.empty(width, width, dtype=torch.float64))

    def mirrored(fan_in: int) -> nn.Linear:
        layer = nn.Linear(fan_in, width, bias=False, dtype=torch.float64)
        layer.weight.data = w0.clone() if fan_in == width else torch.cat([w0, -w0], dim=1)
        return layer

    blocks = [nn.Sequential(mirrored(width if i == 0 else 2 * width), CReLU()) for i in range(depth)]
    return nn.Sequential(*blocks, mirrored(2 * width)).double()


def kernels_at_init(build, cosine: float = INPUT_COSINE) -> tuple[list[float], list[float]]:
    """The measured forward kernel per block (in order) and at the output, the mean over ``DRAWS`` nets
    ``build(seed)`` and ``LINES`` lines each, every line between two inputs of exactly ``cosine``."""
    blocks = [str(i) for i in range(DEPTH)]
    per_block, at_output = [], []
    for seed in range(DRAWS):
        ends = torch.cat([endpoints(WIDTH, cosine, seed=LINES * seed + line) for line in range(LINES)])
        measurer = ShatteringMeasurer(build(seed), num_lines=LINES, num_points=2, blocks=blocks)
        result = measurer.measure(0, ends)  # 2 x LINES samples: disjoint pairs (0, 1), (2, 3), ...
        kernel = {b.name: b.kernel for b in result.blocks}
        per_block.append([kernel[name] for name in blocks])
        at_output.append(result.statistics["kernel"][0])
    return torch.tensor(per_block).mean(0).tolist(), at_output


def test_endpoint_cosine_and_its_metric():
    ends = endpoints(64, 0.3)
    assert F.endpoint_cosine(ends).item() == pytest.approx(0.3, abs=1e-12)
    assert math.isnan(F.endpoint_cosine(torch.stack([torch.zeros(3), torch.ones(3)])).item())
    metric = ForwardKernel()
    metric.update(ends)
    metric.update(endpoints(64, 0.5, seed=1))
    assert metric.mean_and_std()[0] == pytest.approx(0.4, abs=1e-12)
    with pytest.raises(ValueError, match=r"two endpoints, shape \(2, \.\.\.\)"):
        F.endpoint_cosine(torch.ones(3, 4))


@pytest.mark.parametrize(
    ("name", "activation", "cmap"),
    [
        ("relu", nn.ReLU(), relu_cmap),
        ("leaky_relu", nn.LeakyReLU(0.3), lambda c: leaky_relu_cmap(c, 0.3)),
    ],
)
def test_a_deep_wide_net_follows_its_c_map_layer_by_layer(name, activation, cmap):
    measured, _ = kernels_at_init(lambda seed: mlp(activation, seed=seed))
    expected, c = [], INPUT_COSINE
    for _ in range(DEPTH):
        c = cmap(c)
        expected.append(c)
    assert measured == pytest.approx(expected, abs=TOLERANCE), name
    assert measured[-1] > measured[0] + 0.2  # and it does converge towards one direction


@pytest.mark.slow
def test_a_looks_linear_net_keeps_the_input_cosine_through_every_block_and_exactly_at_its_output():
    measured, at_output = kernels_at_init(lambda seed: looks_linear_mlp(seed=seed))
    # every block's output is a CReLU of an orthogonal map of the input: the ReLU C map of the input cosine
    assert measured == pytest.approx([relu_cmap(INPUT_COSINE)] * DEPTH, abs=TOLERANCE)
    # the square mirrored readout: exactly linear, so every line's output cosine is its input's
    assert at_output == pytest.approx([INPUT_COSINE] * DRAWS, abs=1e-12)
