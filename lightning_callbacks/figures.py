"""Which figures a monitored run draws, when, and where they go: one place for every adapter.

Figures are drawn sparingly, since rendering costs more than the measurement on small models:
figure sinks (a TensorBoard writer, a W&B logger) get the depth profile and the summary at every
measurement, and the first line's gradient traces and covariance image at init and at the end;
PNGs are written at init (``<figure>_init.png``) and at the end (``<figure>.png``, ``summary.png``),
so a run leaves a bounded set of files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lightning_callbacks import functional as F
from lightning_callbacks import plotting

__all__ = ["FigureSink", "RunFigures", "figure_sinks"]

# (name, figure, step) -> None: sends one figure somewhere (a logger's image panel)
FigureSink = Callable[[str, Figure, int], None]


def figure_sinks(loggers: Sequence[Any], prefix: str) -> list[FigureSink]:
    """Sinks for the loggers that take figures: W&B (``log_image``) and anything with a TensorBoard-like
    ``experiment.add_figure`` (Lightning's TensorBoard logger); others are skipped."""
    sinks: list[FigureSink] = []
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            sinks.append(
                lambda name, fig, step, lg=logger: lg.log_image(key=f"{prefix}/{name}", images=[fig], step=step)
            )
        elif hasattr(getattr(logger, "experiment", None), "add_figure"):
            writer = logger.experiment
            sinks.append(lambda name, fig, step, w=writer: w.add_figure(f"{prefix}/{name}", fig, step, close=False))
    return sinks


def _depth_profile(history: Sequence[dict[str, Any]]) -> F.DepthProfile | None:
    """The latest measurement's profile, blocks without a reading (NaN) kept in place to be marked."""
    layers = history[-1]["layers"] if history else {}
    if sum(1 for c in layers.values() if c == c) < 2:
        return None
    return F.profile_from_correlations(list(layers), list(layers.values()))


def draw(
    history: Sequence[dict[str, Any]], gradients: torch.Tensor | None, detail: bool, overview: bool = True
) -> dict[str, Figure]:
    """The figures of the latest measurement: with ``overview`` the depth profile and the summary (from the
    history), with ``detail`` the gradient traces and covariance image of ``gradients`` (one line's)."""
    figures: dict[str, Figure] = {}
    if detail and gradients is not None:
        figures.update(
            gradient_traces=plotting.plot_gradient_traces(gradients), covariance=plotting.plot_covariance(gradients)
        )
    profile = _depth_profile(history) if overview else None
    if profile is not None:
        figures["depth_profile"] = plotting.plot_depth_profile(profile, status=history[-1].get("status"))
    if overview and history:
        figures["summary"] = plotting.plot_training_summary(history)
    return figures


class RunFigures:
    """The figures of one monitored run: call :meth:`measured` after every measurement and :meth:`ended`
    once at the end (or on an exception); only the main process should. Their ``png_dir`` is the folder of
    the PNGs (created when first written), or None for no PNGs.
    """

    def __init__(self) -> None:
        self._gradients: torch.Tensor | None = None
        self._overview: tuple[int, dict[str, Figure]] | None = None  # (step, figures) drawn for the sinks

    def measured(
        self,
        step: int,
        history: Sequence[dict[str, Any]],
        gradients: torch.Tensor | None,
        sinks: Sequence[FigureSink],
        png_dir: Path | None,
    ) -> None:
        """Send the figures of the measurement at ``step`` to the sinks (the PNGs at init)."""
        self._gradients = None if gradients is None else gradients.detach().cpu()
        if step != 0 and not sinks:
            return
        figures = draw(history, self._gradients, detail=step == 0)
        self._overview = (step, {k: v for k, v in figures.items() if k in ("depth_profile", "summary")})
        _send(sinks, figures, step)
        if step == 0 and png_dir is not None:
            write_pngs(png_dir, {name: fig for name, fig in figures.items() if name != "summary"}, "_init")

    def ended(
        self, step: int, history: Sequence[dict[str, Any]], sinks: Sequence[FigureSink], png_dir: Path | None
    ) -> None:
        """Write the final PNGs and send the final detail figures (the overview drawn at ``step`` is reused)."""
        if not history:
            return
        drawn = self._overview[1] if self._overview and self._overview[0] == step else {}
        figures = draw(history, self._gradients, detail=True, overview=not drawn) | drawn
        if png_dir is not None:
            write_pngs(png_dir, figures)
        _send(sinks, {name: figures[name] for name in ("gradient_traces", "covariance") if name in figures}, step)


def write_pngs(folder: Path, figures: dict[str, Figure], suffix: str = "") -> None:
    """Write each figure as ``<folder>/<name><suffix>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(folder / f"{name}{suffix}.png", dpi=100)


def _send(sinks: Sequence[FigureSink], figures: dict[str, Figure], step: int) -> None:
    for sink in sinks:
        for name, fig in figures.items():
            sink(name, fig, step)
