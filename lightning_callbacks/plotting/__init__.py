"""Figures of shattering measurements (matplotlib, no pyplot state), shared by the callbacks, the CLI and the
examples; :mod:`lightning_callbacks.plotting.runs` decides which figures a monitored run draws, and when.

The figures draw typed results (:class:`~lightning_callbacks.results.ShatteringResult`,
:class:`~lightning_callbacks.functional.DepthProfile`, :class:`~lightning_callbacks.functional.DecayFit`) and
interpret nothing: whether a fitted law holds, and how it reads, is the fit's to say."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.ticker import FixedLocator, FuncFormatter

from lightning_callbacks.functional import DecayFit, DepthProfile, gradient_covariance, is_flat
from lightning_callbacks.results import ShatteringResult, as_results

__all__ = [
    "plot_gradient_traces",
    "plot_covariance",
    "plot_depth_profile",
    "plot_depth_curves",
    "plot_model_bars",
    "plot_block_heatmap",
    "style_step_axis",
    "plot_readings",
    "unread_legend_entry",
    "plot_training_summary",
]
FLAT_TEXT = "flat: the gradient is the same at every\npoint (up to round-off); nothing to show"
# tick marks of a neighbor-correlation axis: readable values across the symlog range
_CORRELATION_TICKS = [-1, -0.3, -0.1, -0.03, -0.01, 0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1]


def _new_axes(ax: Axes | None, size: tuple[float, float] = (5.0, 3.2)) -> tuple[Figure, Axes]:
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def plot_gradient_traces(grads: torch.Tensor, ax: Axes | None = None, max_traces: int = 3, title: str = "") -> Figure:
    """Gradient along the probe: the whole gradient for 1-D inputs, else the highest-variance coordinates.

    A flat gradient (equal at every point up to round-off) is drawn on an axis scaled to its value, not to
    its round-off (which autoscaling would blow up into spikes), and labelled "flat".
    """
    fig, ax = _new_axes(ax)
    flat = grads.detach().reshape(grads.shape[0], -1).double().cpu()
    if is_flat(grads):
        ax.ticklabel_format(axis="y", useOffset=False)
        scale = flat.abs().max().item()
        ax.set_ylim(flat.min().item() - scale, flat.max().item() + scale)
        flat_text = "flat: the same gradient at every point\n(up to round-off)"
        ax.text(0.5, 0.2, flat_text, ha="center", transform=ax.transAxes, fontsize="small")
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
    """The paper's normalized absolute covariance image of the gradients along the probe.

    A flat gradient (equal at every point up to round-off) has no covariance to draw: scaling
    its round-off to 1 would read as structure, so the panel says "flat" instead.
    """
    fig, ax = _new_axes(ax, (3.6, 3.2))
    ax.set_title(title or "|covariance| of gradients")
    if is_flat(grads):
        ax.text(0.5, 0.5, FLAT_TEXT, ha="center", va="center", transform=ax.transAxes, fontsize="small")
        ax.set_xticks([])
        ax.set_yticks([])
        return fig
    image = ax.imshow(gradient_covariance(grads).float().cpu().numpy(), cmap="viridis", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.8, label="|covariance| / max")
    ax.set_xlabel("probe point j")
    ax.set_ylabel("probe point i")
    return fig


# above this every value is far from white noise: a linear axis over the data shows their differences
LINEAR_ABOVE = 0.3
# at or below this a value is white noise (or its round-off): where every value is either that or above
# LINEAR_ABOVE, a linear axis shows both, and a log scale would only spread out the noise
NEAR_ZERO = 0.05


def _style_correlation_axes(
    ax: Axes, xlabel: str, title: str, values: Sequence[float], legend_loc: str = "best"
) -> None:
    finite = [v for v in values if math.isfinite(v)]
    between = [v for v in finite if NEAR_ZERO < v <= LINEAR_ABOVE]
    if finite and (min(finite) > LINEAR_ABOVE or not between):
        # nothing between noise and far from it: a linear axis (a 0-1 symlog axis would squeeze the high values
        # into its top fifth); over the data's own range where nothing is near 0, else from just below 0
        low, high = min(finite), max(finite)
        margin = max(0.1 * (high - low), 0.002)
        if low <= LINEAR_ABOVE:
            low, margin = min(0.0, low), 0.05
        # headroom for the legend above the data, but a correlation's axis ends just above 1
        ax.set_ylim(low - margin, max(high + margin, min(high + 4 * margin, 1.02)))
        ax.grid(axis="y", lw=0.3, alpha=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("neighbor correlation (linear)")
        ax.legend(fontsize="small", loc=legend_loc)
        ax.set_title(title)
        return
    # symlog: log above 0.01, linear through 0, where shattered layers/nets sit (possibly negative);
    # fixed limits from 0 (or below) to 1 and plain-number ticks, so every value can be read
    # linscale 0.25: the linear band [-0.01, 0.01] gets a quarter of a decade, not the height of two
    ax.set_yscale("symlog", linthresh=0.01, linscale=0.25)
    low = min([0.0, *finite])
    ax.set_ylim(-0.004 if low >= 0 else 1.3 * low, 1.25)
    ax.yaxis.set_major_locator(FixedLocator(_CORRELATION_TICKS))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_locator(FixedLocator([]))
    ax.grid(axis="y", lw=0.3, alpha=0.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("neighbor correlation (symlog)")
    ax.legend(fontsize="small", loc=legend_loc)
    ax.set_title(title)


def plot_depth_profile(
    profile: DepthProfile,
    ax: Axes | None = None,
    title: str = "",
    status: Mapping[str, str] | None = None,
    kernel: Sequence[float] | None = None,
    token_kernel: Sequence[float] | None = None,
) -> Figure:
    """Neighbor correlation per layer (symlog axis) with the fitted decay law where one fits, and, given
    ``kernel`` (one value per layer of the profile), the forward kernel beside it: the cosine of each
    layer's outputs at a line's two endpoints; given ``token_kernel``, the token kernel: the mean cosine
    between the tokens of one input at each layer's output (1: the tokens collapsed to one direction).

    A layer without a reading (NaN: ``status`` names why, e.g. ``missing``, ``zero``) is marked with a
    cross on the axis, labelled; a flat profile says "flat"; the profile's law is drawn where it holds
    (:attr:`DecayFit.holds <lightning_callbacks.functional.DecayFit.holds>`), else its description is in the legend.
    """
    fig, ax = _new_axes(ax)
    ax.plot(profile.depths, profile.correlations, "o-", ms=3, label="neighbor correlation")
    # the kernels are cosines on their own scale: a linear axis on the right (the left one may be zoomed on the
    # correlations, or symlog), so that every drawn value is on the figure
    cosines = {
        label: (list(values), style, color)
        for label, values, style, color in (
            ("forward kernel (endpoint cosine)", kernel, "s:", "tab:green"),
            ("token kernel (tokens' mean cosine)", token_kernel, "^-.", "tab:purple"),
        )
        if values is not None and any(v == v for v in values)
    }
    if cosines:
        right = ax.twinx()
        for label, (values, style, color) in cosines.items():
            right.plot(profile.depths, values, style, ms=3, color=color, label=label)
        low = min(v for values, _, _ in cosines.values() for v in values if v == v)
        right.set_ylim(min(0.0, low) - 0.02, 1.02)
        right.set_ylabel("cosine (the kernels)", fontsize="small")
        right.legend(fontsize="small", loc="lower right")
    unread = [(d, name) for d, name, c in zip(profile.depths, profile.blocks, profile.correlations) if not c == c]
    if unread:
        kinds = sorted({(status or {}).get(name, "NaN") for _, name in unread})
        ax.plot(
            [d for d, _ in unread],
            [0.0] * len(unread),
            "x",
            color="crimson",
            ms=6,
            label=f"no reading ({', '.join(kinds)}): NaN",
        )
    read = [c for c in profile.correlations if c == c]
    if read and all(c == 1.0 for c in read):
        ax.text(
            0.5, 0.3, "flat: the same gradient at every point", ha="center", transform=ax.transAxes, fontsize="small"
        )
    fit = profile.fit
    curve = fit.curve()
    if curve is not None:
        ax.plot(*curve, "--", color="black", lw=1.2, zorder=3, label=fit.label(variable="layer"))
    elif fit.law is not None and len(read) > 2:
        ax.plot([], [], " ", label=fit.describe())
    # a profile rises towards the output (the head reads 1 by construction): the headroom at the upper left is free
    title = title or "shattering by depth"
    _style_correlation_axes(ax, "layer (forward order)", title, profile.correlations, legend_loc="upper left")
    return fig


_MARKERS = ("o", "s", "^", "D", "v", "P")


def plot_depth_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    ax: Axes | None = None,
    title: str = "",
    fits: Mapping[str, DecayFit | tuple[Sequence[float], Sequence[float], str]] | None = None,
) -> Figure:
    """Several families' neighbor correlation against depth (symlog y axis).

    ``fits`` maps a family to its :class:`~lightning_callbacks.functional.DecayFit` (``fit_decay(depths,
    values)``), drawn dashed in the family's colour where it holds, its legend text in the legend either way;
    or to a curve of your own, ``(depths, values, label)``. Each family has its own hollow marker, each
    smaller than the one before, so that families reading the same values stay visible.
    """
    fig, ax = _new_axes(ax, (6.0, 3.8))
    for index, (name, (depths, values)) in enumerate(curves.items()):
        marker, size = _MARKERS[index % len(_MARKERS)], max(11.0 - 2.5 * index, 4.0)
        line = ax.plot(depths, list(values), marker=marker, ms=size, mfc="none", mew=1.4, label=name)[0]
        fit = (fits or {}).get(name)
        if isinstance(fit, DecayFit):
            if fit.law is not None and not fit.holds:  # said in the legend, with no line's sample beside it
                ax.plot([], [], " ", label=f"  {fit.describe()}")
            fit = (*fit.curve(), fit.legend()) if fit.holds else None
        if fit is not None:
            xs, ys, label = fit
            # on top of the data, thicker and darker, so that a law drawn through its points stays visible
            ax.plot(xs, ys, "--", color=line.get_color(), lw=1.6, zorder=3, label=f"  {label}")
    ax.set_xscale("log")
    depths = sorted({d for ds, _ in curves.values() for d in ds})
    ax.set_xticks(depths, [str(d) for d in depths])
    ax.xaxis.set_minor_locator(FixedLocator([]))
    all_values = [v for _, values in curves.values() for v in values]
    _style_correlation_axes(ax, "depth", title or "neighbor correlation vs depth", all_values)
    return fig


def plot_model_bars(values: Mapping[str, float], ax: Axes | None = None, title: str = "") -> Figure:
    """One horizontal bar of neighbor correlation per model, highest first (a ``--models`` survey)."""
    order = sorted(values, key=lambda name: values[name] if math.isfinite(values[name]) else -math.inf)
    fig, ax = _new_axes(ax, (6.0, 0.6 + 0.28 * len(order)))
    ax.barh(range(len(order)), [values[name] for name in order], color="tab:blue")
    ax.set_yticks(range(len(order)), order, fontsize="small")
    ax.set_xlim(min([0.0, *(v for v in values.values() if math.isfinite(v))]) - 0.02, 1.02)
    ax.axvline(0, color="black", lw=0.5)
    ax.set_xlabel("neighbor correlation (1 = smooth, 0 = white noise)")
    ax.set_title(title or "neighbor correlation at init")
    return fig


_SUMMARY_STATISTICS = (
    ("neighbor_corr", "neighbor correlation"),
    ("effective_rank", "effective rank"),
    ("stable_rank", "stable rank"),
    ("spectral_slope", "spectral slope"),
)


def style_step_axis(ax: Axes, label: str = "step") -> None:
    """A training-step x axis: symlog (step 0 and the log-spaced start both visible), plain-number ticks.

    Plain numbers rather than matplotlib's ``10^k`` mathtext labels, which also cost more to render
    than the rest of a small figure.
    """
    ax.set_xscale("symlog", linthresh=1.0)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # the scale said in the label: linear from 0 to 1, logarithmic past it
    ax.set_xlabel(f"{label} (symlog)")


def plot_readings(ax: Axes, steps: Sequence[float], values: Sequence[float], *fmt: str, **style) -> bool:
    """A statistic against the step, with every NaN reading (no reading: a non-finite or zero gradient) marked
    as an ``x`` on the axis floor in the line's colour rather than left as a silent gap; ``fmt`` and ``style``
    go to ``ax.plot``. Returns whether any reading was NaN (then add :func:`unread_legend_entry`)."""
    (line,) = ax.plot(steps, values, *fmt, **style)
    missing = [step for step, value in zip(steps, values) if math.isnan(value)]
    if missing:
        ax.plot(missing, [0.02] * len(missing), "x", color=line.get_color(), transform=ax.get_xaxis_transform())
    return bool(missing)


def unread_legend_entry() -> tuple[Line2D, str]:
    """``(handle, label)`` explaining :func:`plot_readings`' marks, for a legend (a handle on no axes)."""
    return Line2D([], [], ls="", marker="x", color="gray"), "x on the axis floor:\nNaN, no reading"


def _step_edges(ax: Axes, steps: Sequence[int]) -> list[float]:
    """Cell edges around each measured step on ``ax``'s (symlog) step axis: midpoints, in the axis' own
    scale, between neighbouring steps, so that each column sits at its step and spans half way to the next."""
    scale = ax.xaxis.get_transform()
    ys = [float(y) for y in scale.transform(numpy.asarray(steps, dtype=float))]
    if len(ys) == 1:
        ys_edges = [ys[0] - 0.5, ys[0] + 0.5]
    else:
        mids = [(a + b) / 2 for a, b in zip(ys, ys[1:])]
        ys_edges = [2 * ys[0] - mids[0], *mids, 2 * ys[-1] - mids[-1]]
    return [float(x) for x in scale.inverted().transform(numpy.asarray(ys_edges))]


def _spaced_ticks(ax: Axes, steps: Sequence[int], most: int) -> list[int]:
    """At most ``most`` of the measured steps, none closer than a fraction of the axis to the last one kept."""
    scale = ax.xaxis.get_transform()
    where = [float(y) for y in scale.transform(numpy.asarray(steps, dtype=float))]
    gap = (where[-1] - where[0]) / most if len(where) > 1 else 0.0
    kept: list[int] = []
    last = -math.inf
    for step, y in zip(steps, where):
        if y - last >= gap:
            kept.append(step)
            last = y
    return kept


def plot_block_heatmap(
    history: Sequence[ShatteringResult | Mapping],
    ax: Axes | None = None,
    title: str = "",
    max_labels: int = 64,
    colorbar: bool = True,
    max_step_labels: int = 12,
) -> Figure:
    """Neighbor correlation per block (rows, forward order) x measured step (columns), from a monitor history.

    ``history`` holds the monitor's results (its ``history``), or their plain entries (a result file's
    ``shattering``; :func:`~lightning_callbacks.results.as_results`). At most ``max_labels`` block names label
    the rows (evenly spaced), at most ``max_step_labels`` measured steps label the step axis. Columns are
    placed by step on a symlog axis (the schedule is log-spaced at first); a block without a reading (NaN) is
    a gray cell.
    """
    fig, ax = _new_axes(ax)
    results = as_results(history)
    steps = [result.step for result in results]
    readings = [{block.name: block.neighbor_corr for block in result.blocks} for result in results]
    layers = list(dict.fromkeys(name for reading in readings for name in reading))
    if not layers:
        ax.text(0.5, 0.5, "no per-layer profile (blocks=None)", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    values = [[reading.get(name, math.nan) for reading in readings] for name in layers]
    # columns spaced by step value on a symlog axis (the schedule is log-spaced at first: categories would
    # give the first tenth of a run half the width); each measurement spans to the middle of its neighbours
    ax.set_xscale("symlog", linthresh=1.0)
    edges = _step_edges(ax, steps)
    cmap = colormaps["viridis"].with_extremes(bad="lightgray")
    masked = numpy.ma.masked_invalid(numpy.array(values, dtype=float))
    image = ax.pcolormesh(edges, numpy.arange(len(layers) + 1) - 0.5, masked, cmap=cmap, vmin=0.0, vmax=1.0)
    ax.set_ylim(len(layers) - 0.5, -0.5)  # forward order from the top
    if colorbar:
        fig.colorbar(image, ax=ax, label="neighbor correlation", pad=0.01)
    # a block reading 1.0 at a step whose input-level reading is NaN (non-finite output): histories recorded before
    # the monitor kept block statuses hold such readings, which say nothing of smoothness: hatched, and said so
    suspect = [
        (col, row)
        for col, (result, reading) in enumerate(zip(results, readings))
        if not any(math.isfinite(mean) for mean, _ in result.statistics.values())
        for row, name in enumerate(layers)
        if reading.get(name) == 1.0
    ]
    for col, row in suspect:
        ax.add_patch(Rectangle((edges[col], row - 0.5), edges[col + 1] - edges[col], 1, fill=False, hatch="xxx",
                               ec="crimson", lw=0))  # fmt: skip
    if suspect:
        label = "1.0 at a NaN step: not smooth"
        ax.add_patch(Rectangle((0, 0), 0, 0, fill=False, hatch="xxx", ec="crimson", label=label))
    if masked.mask.any():
        ax.add_patch(Rectangle((0, 0), 0, 0, color="lightgray", label="NaN: no reading"))
    if suspect or masked.mask.any():
        # below the axes, under the step label: inside, it would hide cells
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize="small", ncols=2, frameon=False)
    step = math.ceil(len(layers) / max_labels)
    # the last block is always named (its row often reads 1 by construction: only a linear head follows it)
    rows = sorted({*range(0, len(layers) - step // 2, step), len(layers) - 1})
    ax.set_yticks(list(rows), [layers[i] for i in rows], fontsize=6 if len(rows) > 16 else "small")
    ax.xaxis.set_major_locator(FixedLocator(_spaced_ticks(ax, steps, max_step_labels)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.xaxis.set_minor_locator(FixedLocator([]))
    ax.set_xlabel("measured step")
    ax.set_ylabel("layer (forward order)")
    if title:
        ax.set_title(title)
    return fig


def plot_training_summary(history: Sequence[ShatteringResult | Mapping], title: str = "") -> Figure:
    """One picture of a run: neighbor correlation per block x measured step, and the statistics vs step.

    ``history`` holds one result per measurement (what ``ShatteringMonitor.history`` keeps), or their plain
    entries (see :func:`plot_block_heatmap`). The heatmap's rows are the blocks in forward order, its columns
    the measured steps; each curve is the mean over the probe lines with a band of one standard deviation
    across them.
    """
    results = as_results(history)
    layers = list(dict.fromkeys(block.name for result in results for block in result.blocks))
    # fixed margins rather than a layout engine: drawn at every measurement, constrained layout
    # would cost 4x the rendering itself; the left margin fits the longest layer name
    left = min(0.35, 0.04 + 0.0075 * max([len(name) for name in layers] or [0]))
    fig = Figure(figsize=(11.0, 6.4))
    grid = fig.add_gridspec(
        2, 4, height_ratios=[1.4, 1.0], left=left, right=0.97, top=0.95, bottom=0.08, hspace=0.35, wspace=0.3
    )
    heat = fig.add_subplot(grid[0, :])
    plot_block_heatmap(results, ax=heat)
    heat.set_title(title or "shattering during training")
    for column, (key, label) in enumerate(_SUMMARY_STATISTICS):
        ax = fig.add_subplot(grid[1, column])
        points = [(r.step, *r.statistics[key]) for r in results if math.isfinite(r.statistics.get(key, (math.nan,))[0])]
        if points:
            xs, means, stds = zip(*points)
            ax.plot(xs, means, "o-", ms=3)
            ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)], alpha=0.25)
        else:
            ax.text(0.5, 0.5, "flat at every\nmeasurement", ha="center", va="center", transform=ax.transAxes)
        style_step_axis(ax)
        ax.set_title(label, fontsize="medium")
    return fig


def __getattr__(name: str) -> object:
    """Plotting's old fit helpers keep working with a warning (``lightning_callbacks.deprecations``)."""
    from lightning_callbacks.deprecations import moved_fit_helper

    return moved_fit_helper(name)
