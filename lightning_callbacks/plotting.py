"""Figures of shattering measurements (matplotlib, no pyplot state), shared by the callback and the CLI."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lightning_callbacks.functional import DepthProfile, gradient_covariance

__all__ = ["plot_gradient_traces", "plot_covariance", "plot_depth_profile", "plot_depth_curves", "fitted_law_curve"]


def _new_axes(ax: Axes | None, size: tuple[float, float] = (5.0, 3.2)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def plot_gradient_traces(grads: torch.Tensor, ax: Axes | None = None, max_traces: int = 3, title: str = "") -> Figure:
    """Gradient along the probe: the whole gradient for 1-D inputs, else the highest-variance coordinates."""
    fig, ax = _new_axes(ax)
    flat = grads.detach().reshape(grads.shape[0], -1).double().cpu()
    picks = flat.var(dim=0).argsort(descending=True)[:max_traces].tolist() if flat.shape[1] > 1 else [0]
    t = torch.linspace(0, 1, flat.shape[0])
    for index in picks:
        ax.plot(t.numpy(), flat[:, index].numpy(), lw=0.8, label=f"coordinate {index}" if len(picks) > 1 else None)
    ax.set_xlabel("position along the probe")
    ax.set_ylabel("gradient")
    if len(picks) > 1:
        ax.legend(fontsize="small")
    ax.set_title(title or "input gradient along the probe")
    return fig


def plot_covariance(grads: torch.Tensor, ax: Axes | None = None, title: str = "") -> Figure:
    """The paper's normalized absolute covariance image of the gradients along the probe."""
    fig, ax = _new_axes(ax, (3.6, 3.2))
    image = ax.imshow(gradient_covariance(grads).float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8)
    ax.set_xlabel("probe point j")
    ax.set_ylabel("probe point i")
    ax.set_title(title or "|covariance| of gradients")
    return fig


def fitted_law_curve(
    depths: Sequence[float], values: Sequence[float], law: str | None, rate: float, num: int = 50
) -> tuple[list[float], list[float]] | None:
    """Points of a fitted decay law (see ``functional.fit_decay``) over the span of ``depths``.

    The law fixes only the slope in log space; the curve is anchored at the mean of the
    positive values' logs (at the mean depth, or mean log depth for a power law).
    """
    positive = [(float(d), float(v)) for d, v in zip(depths, values) if v > 0 and math.isfinite(v)]
    if law is None or not positive or not math.isfinite(rate):
        return None
    lo, hi = min(depths), max(depths)
    grid = [lo + i * (hi - lo) / num for i in range(num + 1)]
    mean_log_v = sum(math.log(v) for _, v in positive) / len(positive)
    if law == "exponential":
        mean_x = sum(d for d, _ in positive) / len(positive)
        return grid, [math.exp(mean_log_v - rate * (d - mean_x)) for d in grid]
    mean_x = sum(math.log(d) for d, _ in positive) / len(positive)
    return grid, [math.exp(mean_log_v - rate * (math.log(d) - mean_x)) for d in grid]


def _style_correlation_axes(ax: Axes, xlabel: str, title: str) -> None:
    # symlog: log above 0.01, linear through 0, where shattered layers/nets sit (possibly negative)
    ax.set_yscale("symlog", linthresh=0.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neighbor correlation (symlog)")
    ax.legend(fontsize="small")
    ax.set_title(title)


def plot_depth_profile(profile: DepthProfile, ax: Axes | None = None, title: str = "") -> Figure:
    """Neighbor correlation per layer (log axis) with the fitted decay law."""
    fig, ax = _new_axes(ax)
    ax.plot(profile.depths, profile.correlations, "o-", ms=3, label="neighbor correlation")
    curve = fitted_law_curve(profile.depths, profile.correlations, profile.law, profile.rate)
    if curve is not None:
        label = f"{profile.law} fit: rate {profile.rate:.3g}, R² {profile.r2:.2f}"
        ax.plot(*curve, "--", color="gray", label=label)
    _style_correlation_axes(ax, "layer (forward order)", title or "shattering by depth")
    return fig


def plot_depth_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ax: Axes | None = None,
    title: str = "",
    fits: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
) -> Figure:
    """Several families' neighbor correlation against depth (log y axis), with optional fitted curves."""
    fig, ax = _new_axes(ax, (5.5, 3.6))
    for name, (depths, values) in curves.items():
        line = ax.plot(depths, list(values), "o-", label=name)[0]
        if fits and name in fits:
            ax.plot(*fits[name], "--", color=line.get_color(), lw=0.8)
    ax.set_xscale("log")
    _style_correlation_axes(ax, "depth", title or "neighbor correlation vs depth")
    return fig
