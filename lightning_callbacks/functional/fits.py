"""Depth profiles and the decay laws fitted to them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from lightning_callbacks.functional.statistics import _fit_line, neighbor_correlation

__all__ = ["DepthProfile", "fit_decay", "profile_from_correlations", "depth_profile"]


@dataclass
class DepthProfile:
    """Neighbor correlation per layer, in forward order, and the better-fitting decay law.

    Attributes:
        blocks: block names; ``depths`` their 1-based positions.
        correlations: neighbor correlation (ACF(1)) at each layer.
        law: ``"exponential"`` (``c ~ exp(-rate * depth)``), ``"power"`` (``c ~ depth^-rate``),
            ``"constant"`` (no decay), or ``None`` when fewer than :data:`MIN_FIT_POINTS` positive correlations
            allow no fit.
        rate: the fitted rate (exponential) or exponent (power law); ``r2``: its R^2 in log space.
    """

    blocks: list[str]
    depths: list[int]
    correlations: list[float]
    law: str | None = None
    rate: float = math.nan
    r2: float = math.nan


# a two-parameter law fitted to three points has one degree of freedom left, so its R^2 says little: four at least
MIN_FIT_POINTS = 4


def fit_decay(depths: Sequence[float], values: Sequence[float]) -> tuple[str | None, float, float]:
    """Fit ``c ~ exp(-rate * depth)`` and ``c ~ depth^-rate`` to the positive values; keep the higher R^2.

    Returns:
        ``(law, rate, r2)`` with law ``"exponential"`` or ``"power"``; ``("constant", 0.0, nan)`` when
        the values do not change; ``(None, nan, nan)`` when fewer than :data:`MIN_FIT_POINTS` positive values
        allow no fit.
    """
    points = [(float(d), float(c)) for d, c in zip(depths, values) if c > 0 and math.isfinite(c)]
    if len(points) < MIN_FIT_POINTS:
        return None, math.nan, math.nan
    d = torch.tensor([p[0] for p in points], dtype=torch.float64)
    log_c = torch.tensor([math.log(p[1]) for p in points], dtype=torch.float64)
    if torch.allclose(log_c, log_c[0].expand_as(log_c)):
        return "constant", 0.0, math.nan  # no decay: no law to fit (an R^2 of a flat line means nothing)
    _, slope_exp, r2_exp = _fit_line(d, log_c)
    _, slope_pow, r2_pow = _fit_line(d.log(), log_c)
    if r2_exp >= r2_pow:
        return "exponential", -slope_exp, r2_exp
    return "power", -slope_pow, r2_pow


def profile_from_correlations(blocks: Sequence[str], correlations: Sequence[float]) -> DepthProfile:
    """A :class:`DepthProfile` of given per-layer correlations (in forward order), with its fitted decay law."""
    depths = list(range(1, len(blocks) + 1))
    law, rate, r2 = fit_decay(depths, correlations)
    return DepthProfile(blocks=list(blocks), depths=depths, correlations=list(correlations), law=law, rate=rate, r2=r2)


def depth_profile(layer_grads: Mapping[str, torch.Tensor]) -> DepthProfile:
    """Neighbor correlation at each layer (in the mapping's order, i.e. forward order) and its decay law.

    Both ``log c = a - rate * depth`` and ``log c = a - rate * log(depth)`` are fitted to the
    layers with positive correlation; the one with the higher R^2 is reported (:func:`fit_decay`).
    """
    names = list(layer_grads)
    return profile_from_correlations(names, [neighbor_correlation(layer_grads[n]).item() for n in names])
