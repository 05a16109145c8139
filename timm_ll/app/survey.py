"""Measure models at initialization: the library function behind ``timm-ll shatter`` and the zoo surveys.

One model at a time, created by its registered name, measured by the framework-free
:class:`~lightning_callbacks.ShatteringMeasurer` on one line between two real images (normalized
as the model's ``pretrained_cfg`` asks, resized to its input size).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F

from lightning_callbacks import ShatteringMeasurer
from lightning_callbacks.functional import endpoint_cosine, line_probe
from lightning_callbacks.verdict import VERDICT_KEYS, verdict
from timm_ll.app.data import ImageData
from timm_ll.app.recipe import SURVEY_POINTS
from timm_ll.app.reporting import write_json

__all__ = ["measure_at_init", "probe_images", "shatter", "family_jobs", "write_figures", "FIGURE_NAMES"]

# (registered name, family or None, depth or None): one model of a survey
Job = tuple[str, "str | None", "int | None"]


def probe_images(data: ImageData, input_size: tuple[int, int, int], mean: Any, std: Any, seed: int) -> torch.Tensor:
    """Two distinct images of ``data`` (picked by ``seed``) as the model takes them: ``(2, C, H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    first, second = torch.randperm(len(data), generator=gen)[:2].tolist()
    images = data.images[[first, second]].float().div(255)
    channels, height, width = input_size
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).repeat(1, channels, 1, 1)
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    mean_t = torch.tensor(mean[:channels] if len(mean) >= channels else [mean[0]] * channels).view(1, -1, 1, 1)
    std_t = torch.tensor(std[:channels] if len(std) >= channels else [std[0]] * channels).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def measure_at_init(
    name: str,
    data: ImageData,
    *,
    num_points: int = SURVEY_POINTS,
    bn_mode: str = "eval",
    dtype: str = "auto",
    seed: int = 0,
    blocks: str | None = "auto",
    **model_kwargs: Any,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Create ``name`` at init (seeded, with ``model_kwargs``) and measure it on a ``num_points`` line between
    two images of ``data``; returns ``(row, input gradients along the line)``.

    The row has ``model``, ``architecture``, ``input_size``, ``dtype`` and the statistics
    ``neighbor_corr``, ``effective_rank``, ``stable_rank``, ``spectral_slope`` (NaN for a flat gradient,
    which has no spectrum) and ``kernel`` (the forward kernel: the cosine of the logits at the two images,
    against ``input_cosine``, theirs) and ``token_kernel`` (the mean cosine between the spatial positions of
    ``forward_features`` at the two images: how alike the last block's tokens are; NaN without a token axis).
    With ``blocks`` (the measurer's option; None: the input only) it also has ``blocks``, each block's
    ``[name, neighbor_corr, kernel, token_kernel]`` in forward order, and ``verdict``, the block indices of
    :func:`lightning_callbacks.verdict.verdict` with its ``line``.
    ``dtype="auto"`` measures looks-linear models in float64 (their exact
    cancellation leaves ~1e-3 relative round-off in float32 at depth 56+), the rest in float32.
    """
    torch.manual_seed(seed)
    model = timm.create_model(name, **model_kwargs)
    looks_linear = getattr(model, "looks_linear", False)  # CifarNet and SkipFreeResNet both say
    resolved = (torch.float64 if looks_linear else torch.float32) if dtype == "auto" else getattr(torch, dtype)
    model = model.to(resolved)
    cfg = model.pretrained_cfg
    ends = probe_images(data, cfg["input_size"], cfg["mean"], cfg["std"], seed).to(resolved)
    probe = line_probe(ends[0], ends[1], num_points)
    # bound memory on large inputs (224x224 timm models): samples are independent in eval mode
    chunk = max(1, (2**22) // probe[0].numel()) if bn_mode == "eval" else None
    measurer = ShatteringMeasurer(model, probe=probe, blocks=blocks, bn_mode=bn_mode, chunk_size=chunk)
    result = measurer.measure(0, ends)  # the model is called as model(images)
    statistics = {key: result.statistics.get(key, (float("nan"), 0.0))[0] for key in _STATISTICS}
    row = dict(
        model=name,
        architecture=cfg.get("architecture", name),
        input_size=list(cfg["input_size"]),
        dtype=str(resolved).removeprefix("torch."),
        **statistics,
        input_cosine=endpoint_cosine(ends).item(),
        token_kernel=_features_token_kernel(model, ends),
    )
    if blocks is not None:
        found = verdict(result)
        row["blocks"] = [[b.name, b.neighbor_corr, b.kernel, b.token_kernel] for b in result.blocks]
        row["verdict"] = {key: getattr(found, key) for key in VERDICT_KEYS} | {"line": found.line()}
    return row, result.gradients


def _features_token_kernel(model: torch.nn.Module, ends: torch.Tensor) -> float:
    """The token kernel of the network's last block (its ``forward_features``) at the two images, in eval mode."""
    from lightning_callbacks.functional import token_readings

    features = getattr(model, "forward_features", None)
    if features is None:
        return float("nan")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return token_readings(features(ends)).kernel
    finally:
        model.train(was_training)


_STATISTICS = ("neighbor_corr", "effective_rank", "stable_rank", "spectral_slope", "kernel")


def family_jobs(families: Sequence[str], depths: Sequence[int]) -> list[Job]:
    """The survey's jobs for CIFAR families x depths, by registered name (``ll_plain56``)."""
    return [(f"{family}{depth}", family, depth) for family in families for depth in depths]


def shatter(
    jobs: Sequence[Job],
    data: ImageData,
    *,
    out: Path,
    json_path: Path | None = None,
    data_name: str | None = None,
    num_points: int = SURVEY_POINTS,
    bn_mode: str = "eval",
    dtype: str = "auto",
    seed: int = 0,
    on_model: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure every job at init (:func:`measure_at_init`), fit each family's decay with depth, draw the
    three figures into ``out`` (:func:`write_figures`) and, with ``json_path``, write every number there
    (``data_name`` says which data, in the report).
    Returns the report: ``results`` (a row per model, with ``family`` and ``depth``), ``fits``, ``figures``
    and the options. What ``timm-ll shatter`` prints, and what the surveys in ``examples/`` run."""
    from lightning_callbacks import functional as F

    start = time.perf_counter()
    results: list[dict[str, Any]] = []
    grads: dict[str, Any] = {}
    for name, family, depth in jobs:
        if on_model is not None:
            on_model(name)
        row, grads[name] = measure_at_init(name, data, num_points=num_points, bn_mode=bn_mode, dtype=dtype, seed=seed)
        results.append(dict(row, family=family, depth=depth))
    fits = {}
    for family in dict.fromkeys(r["family"] for r in results if r["family"] is not None):
        rows = [r for r in results if r["family"] == family]
        law, rate, r2 = F.fit_decay([r["depth"] for r in rows], [r["neighbor_corr"] for r in rows])
        fits[family] = dict(law=law, rate=rate, r2=r2)
    figures = write_figures(out, results, grads, fits)
    report = dict(
        schema="timm-ll/shatter/1",
        data=data_name,
        num_points=num_points,
        bn_mode=bn_mode,
        dtype=dtype,
        seed=seed,
        seconds=round(time.perf_counter() - start, 2),
        results=results,
        fits=fits,
        figures=[str(p) for p in figures],
    )
    if json_path is not None:
        write_json(json_path, report)
    return report


FIGURE_NAMES = ("neighbor_corr.png", "gradient_traces.png", "covariance.png")


def write_figures(out: Path, results: list[dict[str, Any]], grads: dict[str, Any], fits: dict[str, Any]) -> list[Path]:
    """The run's three figures, always the same set (:data:`FIGURE_NAMES`), overwritten in ``out``.

    ``neighbor_corr.png``: correlation against depth per family with the fitted laws, or one bar
    per model for a ``--models`` run; ``gradient_traces.png`` and ``covariance.png``: one panel per model.
    """
    from matplotlib.figure import Figure  # bare Figures: no pyplot, no backend needed

    from lightning_callbacks.plotting import plot_covariance, plot_gradient_traces, plot_model_bars

    out.mkdir(parents=True, exist_ok=True)
    paths = [out / name for name in FIGURE_NAMES]
    if fits:
        depth_curves_figure(results, fits).savefig(paths[0], dpi=110)
    else:
        plot_model_bars({r["model"]: r["neighbor_corr"] for r in results}).savefig(paths[0], dpi=110)
    names = list(grads)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    for path, plot in zip(paths[1:], (plot_gradient_traces, plot_covariance)):
        fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
        for i, name in enumerate(names):
            plot(grads[name], ax=fig.add_subplot(rows, cols, i + 1), title=name)
        fig.savefig(path, dpi=90)
    return paths


def depth_curves_figure(results: list[dict[str, Any]], fits: dict[str, Any]) -> Any:
    """Correlation against depth per family, with each family's fitted law where one holds (the legend says
    why where none does); ``fits`` names the families to draw."""
    from lightning_callbacks import functional as F
    from lightning_callbacks.plotting import plot_depth_curves

    curves, fitted = {}, {}
    for family in fits:
        rows = [r for r in results if r["family"] == family]
        curves[family] = ([r["depth"] for r in rows], [r["neighbor_corr"] for r in rows])
        fitted[family] = F.fit_decay(*curves[family])
    drawn = any(fit.holds for fit in fitted.values())  # a title promises a dashed law only where one is drawn
    title = "neighbor correlation vs depth" + (" (dashed: fitted law)" if drawn else "")
    return plot_depth_curves(curves, fits=fitted, title=title)
