"""The 1-D toy networks of Balduzzi et al. (2017), Figures 1-2: scalar input, fully connected.

Not registered in timm (they take a scalar, not an image); built by :func:`toy_net`.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from timm_ll.init import init_looks_linear_
from timm_ll.layers import CReLU

ToyKind = Literal["feedforward", "resnet", "looks_linear"]


class _Residual(nn.Module):
    """``h <- h + beta * W relu(BN(h))``: the paper's BN-ResNet block (beta rescales the branch)."""

    def __init__(self, width: int, beta: float, batch_norm: bool) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(width) if batch_norm else nn.Identity()
        self.act = nn.ReLU()
        self.linear = nn.Linear(width, width)
        self.beta = beta
        nn.init.kaiming_normal_(self.linear.weight, nonlinearity="relu")
        nn.init.zeros_(self.linear.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.beta * self.linear(self.act(self.bn(h)))


def toy_net(
    depth: int, kind: ToyKind = "feedforward", width: int = 200, beta: float = 1.0, batch_norm: bool = True
) -> nn.Sequential:
    """A 1-D net of ``depth`` hidden layers: ``R -> R^width -> ... -> R``.

    ``feedforward``: Linear, then ``depth`` x (BN, ReLU, Linear), He init. ``resnet``:
    ``depth`` x ``h + beta W relu(BN(h))``. ``looks_linear``: ``depth`` x (BN, CReLU, Linear
    with mirrored orthogonal init); exactly linear at init.
    """
    if depth < 1:
        raise ValueError(f"depth={depth}: need at least one hidden layer")
    layers: list[nn.Module] = [nn.Linear(1, width)]
    if kind == "resnet":
        layers += [_Residual(width, beta, batch_norm) for _ in range(depth)]
        layers += [nn.Linear(width, 1)]
    elif kind in ("feedforward", "looks_linear"):
        ll = kind == "looks_linear"
        for _ in range(depth):
            layers += [nn.BatchNorm1d(width)] if batch_norm else []
            layers += [CReLU() if ll else nn.ReLU(), nn.Linear(width * (2 if ll else 1), width)]
        layers += [nn.Linear(width, 1)]
    else:
        raise ValueError(f"kind={kind!r}: use 'feedforward', 'resnet' or 'looks_linear'")
    net = nn.Sequential(*layers)
    if kind == "looks_linear":
        return init_looks_linear_(net, mirrored=lambda layer: layer.in_features == 2 * width)
    for module in net.modules():
        if isinstance(module, nn.Linear):
            if module.in_features != 1:
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            nn.init.zeros_(module.bias)
    return net
