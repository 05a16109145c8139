"""Depth profiles and the decay laws fitted to them."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from lightning_callbacks.functional.statistics import _fit_line, neighbor_correlation

__all__ = ["DecayFit", "DepthProfile", "fit_decay", "profile_from_correlations", "depth_profile", "MIN_R2"]

# a fitted law holds (is drawn, and named as a law) only where it explains the values: R^2 >= this, in log space
MIN_R2 = 0.9
# a two-parameter law fitted to three points has one degree of freedom left, so its R^2 says little: four at least
MIN_FIT_POINTS = 4


@dataclass(frozen=True)
class DecayFit:
    """A decay law fitted to readings against depth (:func:`fit_decay`), and what may be said of it.

    Attributes:
        law: ``"exponential"`` (``c ~ exp(-rate * depth)``), ``"power"`` (``c ~ depth^-rate``),
            ``"constant"`` (no decay), or ``None`` when fewer than :data:`MIN_FIT_POINTS` positive readings
            allow no fit.
        rate: the fitted rate (exponential) or exponent (power law); ``r2``: its R^2 in log space.
        depths, values: the readings it was fitted to (those at or below 0 included: they were left out).

    It unpacks as ``law, rate, r2`` (and indexes so), the triple :func:`fit_decay` returned before it
    returned this type.
    """

    law: str | None
    rate: float = math.nan
    r2: float = math.nan
    depths: tuple[float, ...] = ()
    values: tuple[float, ...] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter((self.law, self.rate, self.r2))

    def __getitem__(self, index: int) -> Any:
        return (self.law, self.rate, self.r2)[index]

    @property
    def holds(self) -> bool:
        """Whether the fit is a law worth a line: a decaying (or rising) exponential or power law with
        R^2 >= :data:`MIN_R2`."""
        return (
            self.law in ("exponential", "power") and math.isfinite(self.rate) and self.rate != 0 and self.r2 >= MIN_R2
        )

    def label(self, variable: str = "depth") -> str:
        """The law as text, e.g. ``exponential law: c ~ exp(-0.035 depth), R² 0.98``; ``variable`` names the
        x axis (a depth profile's is the layer index, along which the value may grow: "(rising)")."""
        if self.law is None or not math.isfinite(self.rate):
            return f"no fit (fewer than {MIN_FIT_POINTS} positive values)"
        exponent = -self.rate + 0.0  # + 0.0: a zero rate reads "0", not "-0"
        formula = (
            f"c ~ exp({exponent:+.3g} {variable})" if self.law == "exponential" else f"c ~ {variable}^{exponent:+.3g}"
        )
        trend = "" if exponent < 0 else " (rising)"
        return f"{self.law} law: {formula}{trend}, R² {self.r2:.2f}"

    def describe(self, variable: str = "depth") -> str:
        """What a figure or table says of the fit: the law where it holds, else "constant" or "no law fits"
        with the best R^2, so that a poor fit never reads as a law."""
        if self.law == "constant":
            return "constant: no decay with depth"
        if self.law is None or self.holds:
            return self.label(variable)
        return f"no law fits (best {self.law}, R² {self.r2:.2f} < {MIN_R2})" if self.rate != 0 else "no decay"

    def unfitted_note(self) -> str:
        """What the fit left out: the readings at or below 0 (a decay law fits logs), e.g. ``" (not fitted:
        depth 200 reads -0.012)"``; empty when every reading was fitted."""
        left = [
            f"depth {d:g} reads {v:.3g}" for d, v in zip(self.depths, self.values) if not (v > 0 and math.isfinite(v))
        ]
        return f" (not fitted: {', '.join(left)})" if left else ""

    def legend(self, variable: str = "depth") -> str:
        """A figure legend's text: the law and what it left out where it holds, else :meth:`describe`."""
        return self.label(variable) + self.unfitted_note() if self.holds else self.describe(variable)

    def curve(self, num: int = 50) -> tuple[list[float], list[float]] | None:
        """Points of the law over the span of the readings it was fitted to; None where it does not hold.

        The law fixes only the slope in log space; the curve is anchored at the mean of the positive
        readings' logs (at their mean depth, or mean log depth for a power law).
        """
        positive = [(float(d), float(v)) for d, v in zip(self.depths, self.values) if v > 0 and math.isfinite(v)]
        if not positive or not self.holds:
            return None
        # only over the readings it was fitted to: a law drawn past a reading <= 0 would claim a value it never had
        lo, hi = min(d for d, _ in positive), max(d for d, _ in positive)
        grid = [lo + i * (hi - lo) / num for i in range(num + 1)]
        mean_log_v = sum(math.log(v) for _, v in positive) / len(positive)
        x = (lambda d: d) if self.law == "exponential" else math.log
        mean_x = sum(x(d) for d, _ in positive) / len(positive)
        return grid, [math.exp(mean_log_v - self.rate * (x(d) - mean_x)) for d in grid]


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

    @property
    def fit(self) -> DecayFit:
        """The profile's decay law along the layers."""
        return DecayFit(self.law, self.rate, self.r2, tuple(self.depths), tuple(self.correlations))


def fit_decay(depths: Sequence[float], values: Sequence[float]) -> DecayFit:
    """Fit ``c ~ exp(-rate * depth)`` and ``c ~ depth^-rate`` to the positive values; keep the higher R^2.

    Returns:
        a :class:`DecayFit` (unpacking as ``law, rate, r2``) with law ``"exponential"`` or ``"power"``;
        ``"constant"`` (rate 0, R^2 NaN) when the values do not change; ``None`` (NaN) when fewer than
        :data:`MIN_FIT_POINTS` positive values allow no fit.
    """
    readings = dict(depths=tuple(float(d) for d in depths), values=tuple(float(v) for v in values))
    points = [(d, c) for d, c in zip(readings["depths"], readings["values"]) if c > 0 and math.isfinite(c)]
    if len(points) < MIN_FIT_POINTS:
        return DecayFit(None, **readings)
    d = torch.tensor([p[0] for p in points], dtype=torch.float64)
    log_c = torch.tensor([math.log(p[1]) for p in points], dtype=torch.float64)
    if torch.allclose(log_c, log_c[0].expand_as(log_c)):
        return DecayFit("constant", 0.0, **readings)  # no decay: no law to fit (an R^2 of a flat line means nothing)
    _, slope_exp, r2_exp = _fit_line(d, log_c)
    _, slope_pow, r2_pow = _fit_line(d.log(), log_c)
    if r2_exp >= r2_pow:
        return DecayFit("exponential", -slope_exp, r2_exp, **readings)
    return DecayFit("power", -slope_pow, r2_pow, **readings)


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
