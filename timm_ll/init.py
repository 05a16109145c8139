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
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn

__all__ = ["looks_linear_", "orthogonal_", "mirror_weight_", "init_looks_linear_", "OrthogonalKind"]

OrthogonalKind = Literal["flattened", "delta"]
_LAYER_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


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


@torch.no_grad()
def mirror_weight_(weight: torch.Tensor, half: torch.Tensor) -> torch.Tensor:
    """Write ``[half, -half]`` into ``weight`` along its input dimension (dim 1)."""
    if weight.shape[1] != 2 * half.shape[1]:
        raise ValueError(f"weight has {weight.shape[1]} inputs, expected twice the {half.shape[1]} of the half")
    c = half.shape[1]
    weight[:, :c].copy_(half)
    weight[:, c:].copy_(-half)
    return weight


def looks_linear_(module: nn.Module, kind: OrthogonalKind = "flattened") -> nn.Module:
    """Looks-linear init of a layer that consumes a CReLU output: ``W = [W0, -W0]``, bias 0.

    ``W0`` is (semi-)orthogonal and variance-preserving (see the module docstring), so the
    layer computes ``W0 z`` exactly when fed ``[relu(z), relu(-z)]``.

    Args:
        module: an ``nn.Linear`` or ``nn.ConvNd`` (groups=1) whose input size is even (it
            consumes a CReLU output, i.e. twice the channels of the pre-activation).
        kind: orthogonal construction of ``W0``: ``"flattened"`` (default) or ``"delta"``.

    Returns:
        ``module``, initialized in place.

    Raises:
        ValueError: the layer's input size is odd, so it cannot consume a CReLU output.
    """
    _check_layer(module)
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
        mirror_weight_(weight, half)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def init_looks_linear_(model: nn.Module, mirrored: Callable[[nn.Module], bool]) -> nn.Module:
    """Looks-linear init of a whole network: the one place every LL model and the converter use.

    Every conv/linear layer for which ``mirrored(layer)`` is true consumes a CReLU output and
    gets :func:`looks_linear_`; every other one with ``groups=1`` (the first layer, which sees
    the raw input) gets the plain :func:`orthogonal_`; grouped layers that are not mirrored keep
    their init. Norm layers get their default reset (weight 1, bias 0, running statistics
    cleared), so that at init, in eval mode, they are affine and the network stays exactly affine.

    Args:
        model: the network, initialized in place.
        mirrored: tells which conv/linear layers consume a CReLU output.

    Returns:
        ``model``.
    """
    for module in model.modules():
        if isinstance(module, _LAYER_TYPES):
            if mirrored(module):
                looks_linear_(module)
            elif getattr(module, "groups", 1) == 1:
                orthogonal_(module)
        elif isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
            module.reset_parameters()
    return model
