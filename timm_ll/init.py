"""Looks-linear (LL) initialization: all the init math of the package lives here.

Balduzzi et al. (2017), section 5: a layer that consumes ``CReLU(z) = [relu(z), relu(-z)]``
and has mirrored weights ``W = [W0, -W0]`` computes ``W0 relu(z) - W0 relu(-z) = W0 z``,
so a CReLU network initialized this way is exactly linear (affine with biases) at
initialization, and its input gradient does not shatter.

Orthogonal construction for convolutions: the *flattened* one. ``W0`` of shape
``(C_out, C_in, k, k)`` is viewed as a ``C_out x (C_in*k*k)`` matrix and made
(semi-)orthogonal with :func:`torch.nn.init.orthogonal_` (Saxe et al. 2014). We prefer it
to delta-orthogonal init (Xiao et al. 2018, an orthogonal centre tap and zeros elsewhere)
because it keeps every tap of the kernel trainable-sized and mixing spatially from step
one, is what ``orthogonal_`` does for conv weights everywhere else in PyTorch, and LL
exactness does not depend on the choice (any ``W0`` gives ``W0 z``). ``"delta"`` is offered
for users who want an exact isometry per pixel.

Scale of non-square layers: rows of a wide matrix (``fan_out <= fan_in``) are orthonormal,
so each output unit has the variance of one input unit. A tall matrix (``fan_out > fan_in``)
has orthonormal columns, which preserves the *total* norm and so divides the per-unit
variance by ``fan_out / fan_in``; we multiply it by ``sqrt(fan_out / fan_in)`` so that every
layer, square or not, strided or not, keeps the per-unit variance of its input.

Mirror ratio and tailored rectifiers (TAT; Zhang, Botev, Martens 2022). Mirrored weights
``[s W0, -s alpha W0]`` make a layer fed ``[relu(z), relu(-z)]`` compute
``s W0 leaky_relu(z; alpha)``: at init a CReLU net with ratio ``alpha`` *is* a Leaky-ReLU net of
slope ``alpha`` whose activation has TAT's gain ``s = sqrt(2 / (1 + alpha^2))`` (which keeps
``E[phi(x)^2] = 1`` for ``x ~ N(0, 1)``). ``alpha = 1`` is looks-linear (``s = 1``); smaller
ratios make the net less linear. :func:`tat_slope` picks ``alpha`` for a net of a given number
of activations so that the kernel of the whole net, ``C_net(0)`` (the cosine of the outputs of
two inputs that were orthogonal), equals a target ``eta``: TAT's rule for Leaky ReLUs, as in
DeepMind's ``dks`` package (tested against it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

__all__ = [
    "looks_linear_",
    "orthogonal_",
    "mirror_weight_",
    "init_looks_linear_",
    "init_layer_looks_linear_",
    "NORM_TYPES",
    "OrthogonalKind",
    "tat_gain",
    "leaky_relu_cmap",
    "net_cmap_at_zero",
    "max_reachable_eta",
    "tat_slope",
]

OrthogonalKind = Literal["flattened", "delta"]
_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
# the norm layers a re-initialization resets (weight 1, bias 0, running statistics cleared)
NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)


def _check_layer(module: nn.Module) -> None:
    if not isinstance(module, _LAYER_TYPES):
        raise TypeError(
            f"looks-linear init takes nn.Linear or nn.Conv1d/2d/3d, got {type(module).__name__}; "
            "initialize other layers with torch.nn.init directly"
        )
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups != 1:
        raise ValueError(
            f"looks-linear init needs groups=1 (got groups={module.groups}): a grouped conv does not see "
            "both halves of the CReLU output that feeds it"
        )


@torch.no_grad()
def _orthogonal_matrix_(weight: torch.Tensor, kind: OrthogonalKind) -> torch.Tensor:
    """Fill ``weight`` (out, in, *kernel) with a variance-preserving (semi-)orthogonal map."""
    if weight.is_meta:  # nothing to fill; timm builds models on the meta device for shape checks
        return weight
    fan_out, fan_in_chans = weight.shape[0], weight.shape[1]
    if kind == "flattened":
        fan_in = weight[0].numel()
        nn.init.orthogonal_(weight.view(fan_out, fan_in), gain=math.sqrt(max(1.0, fan_out / fan_in)))
    elif kind == "delta":
        weight.zero_()
        centre = tuple(k // 2 for k in weight.shape[2:])
        tap = torch.empty(fan_out, fan_in_chans, dtype=weight.dtype, device=weight.device)
        nn.init.orthogonal_(tap, gain=math.sqrt(max(1.0, fan_out / fan_in_chans)))
        weight[(slice(None), slice(None), *centre)] = tap
    else:
        raise ValueError(f"unknown orthogonal construction {kind!r}; use 'flattened' or 'delta'")
    return weight


def orthogonal_(module: nn.Module, kind: OrthogonalKind = "flattened") -> nn.Module:
    """Plain (not mirrored) variance-preserving orthogonal init, for the first layer of an LL net.

    Args:
        module: an ``nn.Linear`` or ``nn.ConvNd`` (groups=1).
        kind: ``"flattened"`` (default) or ``"delta"``; see the module docstring.

    Returns:
        ``module``, initialized in place; its bias, if any, is zeroed.
    """
    _check_layer(module)
    _orthogonal_matrix_(module.weight, kind)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def tat_gain(alpha: float) -> float:
    """TAT's output gain of a Leaky ReLU of slope ``alpha``: ``sqrt(2 / (1 + alpha^2))`` (1 at alpha = 1)."""
    return math.sqrt(2.0 / (1.0 + alpha * alpha))


def leaky_relu_cmap(c: float, alpha: float) -> float:
    """Local C map of the normalized Leaky ReLU ``tat_gain(alpha) * leaky_relu(x; alpha)``.

    The cosine of its outputs for unit-variance Gaussian inputs of correlation ``c``:
    ``(2 alpha c + (1 - alpha)^2 (sqrt(1 - c^2) + (pi - arccos c) c) / pi) / (1 + alpha^2)``
    (the arc-cosine kernel of Cho and Saul 2009 for the ReLU part). ``C(1) = 1`` for every slope;
    ``alpha = 1`` gives the identity, ``alpha = 0`` the normalized ReLU.
    """
    c = min(1.0, max(-1.0, c))
    relu_part = (math.sqrt(1.0 - c * c) + (math.pi - math.acos(c)) * c) / math.pi
    return (2.0 * alpha * c + (1.0 - alpha) ** 2 * relu_part) / (1.0 + alpha * alpha)


def net_cmap_at_zero(alpha: float, activations: int) -> float:
    """``C_net(0)``: the local C map of slope ``alpha`` composed over ``activations`` layers, at 0.

    A plain (skip-free) net's kernel: orthogonal or variance-preserving weights leave the
    cosine unchanged, so only the activations move it.
    """
    c = 0.0
    for _ in range(activations):
        c = leaky_relu_cmap(c, alpha)
    return c


def max_reachable_eta(activations: int) -> float:
    """The largest ``C_net(0)`` a net of ``activations`` Leaky ReLUs can have: slope 0 (a ReLU net)."""
    return net_cmap_at_zero(0.0, activations)


def tat_slope(activations: int, eta: float = 0.9, tol: float = 1e-12) -> float:
    """TAT's negative slope for a plain net of ``activations`` Leaky ReLUs: ``C_net(0) = eta``.

    ``C_net(0)`` falls monotonically from the ReLU net's value (slope 0) to 0 (slope 1, a linear
    net), so bisection finds the one slope that reaches ``eta``. (Bisection by hand rather than
    ``scipy.optimize``: scipy is no dependency of the package, and the function is a 1-D monotone
    scalar.) A CifarNet of depth ``d`` has ``d - 1`` activations (stem and every conv but the
    classifier).

    Args:
        activations: number of activation layers on the net's longest path (>= 1).
        eta: the target ``C_net(0)`` in ``[0, max_reachable_eta(activations)]``; TAT's and
            ``dks``'s default is 0.9. 0 gives slope 1 (looks-linear).

    Raises:
        ValueError: ``eta`` is outside ``[0, 1)`` or beyond what ``activations`` layers can reach
            (the message names the largest reachable value).
    """
    if not isinstance(activations, int) or activations < 1:
        raise ValueError(f"activations={activations!r}: a net needs at least one activation")
    if not 0.0 <= eta < 1.0:
        raise ValueError(f"eta={eta!r} is not a kernel value TAT can target: use 0 <= eta < 1 (TAT's default 0.9)")
    reachable = max_reachable_eta(activations)
    if eta > reachable:
        raise ValueError(
            f"eta={eta} cannot be reached with {activations} activations: even a ReLU net (slope 0) only reaches "
            f"C_net(0) = {reachable:.4f}. Use eta <= {reachable:.4f} or a deeper net"
        )
    low, high = 0.0, 1.0  # C_net(0) decreases in the slope: C(low) >= eta >= C(high) = 0
    while high - low > tol:
        mid = 0.5 * (low + high)
        if net_cmap_at_zero(mid, activations) > eta:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@torch.no_grad()
def mirror_weight_(weight: torch.Tensor, half: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """Write ``[s half, -s alpha half]`` into ``weight`` along its input dimension (dim 1), ``s = tat_gain(alpha)``.

    At ``alpha = 1`` (the default) this is the looks-linear ``[half, -half]``, bitwise.
    """
    if weight.shape[1] != 2 * half.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} inputs, expected twice the {half.shape[1]} of the half")
    c = half.shape[1]
    gain = tat_gain(alpha)  # exactly 1.0 at alpha = 1, and a product by +-1.0 is exact: LL weights stay bitwise
    weight[:, :c].copy_(half * gain)
    weight[:, c:].copy_(half * (-gain * alpha))
    return weight


def _check_ratio(alpha: float) -> float:
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"mirror ratio alpha={alpha!r} is outside [0, 1]: 1 is looks-linear, 0 a ReLU net at init; "
            "use timm_ll.tat_slope to pick one for a depth"
        )
    return float(alpha)


def looks_linear_(module: nn.Module, kind: OrthogonalKind = "flattened", alpha: float = 1.0) -> nn.Module:
    """Looks-linear init of a layer that consumes a CReLU output: ``W = [s W0, -s alpha W0]``, bias 0.

    ``W0`` is (semi-)orthogonal and variance-preserving (see the module docstring). With the
    default ``alpha = 1`` (``s = 1``) the layer computes ``W0 z`` exactly when fed
    ``[relu(z), relu(-z)]``; with a ratio ``alpha < 1`` it computes ``s W0 leaky_relu(z; alpha)``,
    TAT's normalized Leaky ReLU (``s = tat_gain(alpha)``).

    Args:
        module: an ``nn.Linear`` or ``nn.ConvNd`` (groups=1) whose input size is even (it
            consumes a CReLU output, i.e. twice the channels of the pre-activation).
        kind: orthogonal construction of ``W0``: ``"flattened"`` (default) or ``"delta"``.
        alpha: the mirror ratio in ``[0, 1]``.

    Returns:
        ``module``, initialized in place.

    Raises:
        ValueError: the layer's input size is odd, so it cannot consume a CReLU output.
    """
    _check_layer(module)
    alpha = _check_ratio(alpha)
    weight = module.weight
    in_features = weight.shape[1]
    if in_features % 2:
        raise ValueError(
            f"{type(module).__name__} has {in_features} input channels; a looks-linear layer consumes a CReLU "
            "output and needs an even count (2 x the pre-activation channels). Use timm_ll.orthogonal_ for a layer "
            "that sees the raw input"
        )
    if not weight.is_meta:
        half = torch.empty_like(weight[:, : in_features // 2])
        _orthogonal_matrix_(half, kind)
        mirror_weight_(weight, half, alpha)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def init_looks_linear_(
    model: nn.Module,
    mirrored: Callable[[nn.Module], bool],
    alpha: float = 1.0,
    kind: OrthogonalKind = "flattened",
) -> nn.Module:
    """Looks-linear init of a whole network: the one place every LL model and the converter use.

    Every conv/linear layer for which ``mirrored(layer)`` is true consumes a CReLU output and
    gets :func:`looks_linear_`; every other one with ``groups=1`` (the first layer, which sees
    the raw input) gets the plain :func:`orthogonal_`; grouped layers that are not mirrored keep
    their init. Norm layers get their default reset (weight 1, bias 0, running statistics
    cleared), so that at init, in eval mode, they are affine and the network stays exactly affine.

    Args:
        model: the network, initialized in place.
        mirrored: tells which conv/linear layers consume a CReLU output.
        alpha: the mirror ratio of every mirrored layer (see :func:`looks_linear_`); 1 is looks-linear.
        kind: the orthogonal construction, ``"flattened"`` (default) or ``"delta"``.

    Returns:
        ``model``.
    """
    for module in model.modules():
        init_layer_looks_linear_(module, isinstance(module, _LAYER_TYPES) and mirrored(module), alpha, kind)
    return model


def init_layer_looks_linear_(
    module: nn.Module, mirrored: bool, alpha: float = 1.0, kind: OrthogonalKind = "flattened"
) -> nn.Module:
    """:func:`init_looks_linear_`'s treatment of one module (for a model that re-initializes a single layer,
    e.g. a new classifier): a conv/linear layer gets :func:`looks_linear_` if ``mirrored``, else (with
    ``groups=1``) :func:`orthogonal_`; a norm layer its default reset; anything else is left as it is."""
    if isinstance(module, _LAYER_TYPES):
        if mirrored:
            looks_linear_(module, kind, alpha)
        elif getattr(module, "groups", 1) == 1:
            orthogonal_(module, kind)
    elif isinstance(module, NORM_TYPES):
        module.reset_parameters()
    return module
