"""Which figures a monitored run draws, when, and where they go: one place for every adapter.

Figures are drawn sparingly, since rendering costs more than the measurement on small models:
figure sinks (a TensorBoard writer, a W&B logger) get the depth profile at every measurement (it is
that measurement's picture), the summary once at the end (it is cumulative, its numbers already
reach the loggers as scalars at every measurement, and drawing it each time was the largest cost of
a short run measured often), and the first line's gradient traces and covariance image at init and
at the end; PNGs are written at init (``<figure>_init.png``) and at the end
(``<figure>.png``, ``summary.png``), so a run leaves a bounded set of files.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from lightning_callbacks import functional as F
from lightning_callbacks import plotting
from lightning_callbacks.results import ShatteringResult

__all__ = ["FigureSink", "RunFigures", "figure_sinks", "writer_sink"]

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
            sinks.append(writer_sink(logger.experiment, prefix))
    return sinks


def writer_sink(writer: Any, prefix: str) -> FigureSink:
    """A sink for a TensorBoard ``SummaryWriter`` (anything with ``add_figure``)."""
    return lambda name, fig, step: writer.add_figure(f"{prefix}/{name}", fig, step, close=False)


def _depth_profile(latest: ShatteringResult) -> F.DepthProfile | None:
    """The latest measurement's profile, blocks without a reading (NaN) kept in place to be marked."""
    if sum(1 for b in latest.blocks if b.neighbor_corr == b.neighbor_corr) < 2:
        return None
    return F.profile_from_correlations([b.name for b in latest.blocks], [b.neighbor_corr for b in latest.blocks])


def draw(
    history: Sequence[ShatteringResult],
    gradients: torch.Tensor | None,
    detail: bool,
    profile: bool = True,
    summary: bool = True,
) -> dict[str, Figure]:
    """The figures of the latest measurement: with ``profile`` its depth profile, with ``summary`` the
    summary of the whole history, with ``detail`` the gradient traces and covariance image of
    ``gradients`` (one line's)."""
    figures: dict[str, Figure] = {}
    if detail and gradients is not None:
        figures.update(
            gradient_traces=plotting.plot_gradient_traces(gradients), covariance=plotting.plot_covariance(gradients)
        )
    latest = history[-1] if history else None
    depth_profile = _depth_profile(latest) if profile and latest is not None else None
    if depth_profile is not None:
        status = {b.name: b.status for b in latest.blocks if b.status not in F.MEASURABLE}
        kernel, tokens = [b.kernel for b in latest.blocks], [b.token_kernel for b in latest.blocks]
        figures["depth_profile"] = plotting.plot_depth_profile(
            depth_profile, status=status, kernel=kernel, token_kernel=tokens
        )
    if summary and history:
        figures["summary"] = plotting.plot_training_summary(history)
    return figures


class RunFigures:
    """The figures of one monitored run: call :meth:`measured` after every measurement and :meth:`ended`
    once at the end (or on an exception); only the main process should. Their ``png_dir`` is the folder of
    the PNGs (created when first written), or None for no PNGs.
    """

    def __init__(self) -> None:
        self._gradients: torch.Tensor | None = None
        self._profile: tuple[int, Figure] | None = None  # (step, depth profile) last drawn for the sinks

    def measured(
        self,
        step: int,
        history: Sequence[ShatteringResult],
        gradients: torch.Tensor | None,
        sinks: Sequence[FigureSink],
        png_dir: Path | None,
    ) -> None:
        """Send the depth profile of the measurement at ``step`` to the sinks (and at init the detail
        figures, to the sinks and as PNGs)."""
        self._gradients = None if gradients is None else gradients.detach().cpu()
        if step != 0 and not sinks:
            return
        figures = draw(history, self._gradients, detail=step == 0, summary=False)
        if "depth_profile" in figures:
            self._profile = (step, figures["depth_profile"])
        _send(sinks, figures, step)
        if step == 0 and png_dir is not None:
            write_pngs(png_dir, figures, "_init")

    def ended(
        self, step: int, history: Sequence[ShatteringResult], sinks: Sequence[FigureSink], png_dir: Path | None
    ) -> None:
        """Write the final PNGs and send the summary and the final detail figures to the sinks (a depth
        profile already drawn at ``step`` is reused, not drawn again)."""
        if not history:
            return
        reused = {"depth_profile": self._profile[1]} if self._profile and self._profile[0] == step else {}
        figures = draw(history, self._gradients, detail=True, profile=not reused) | reused
        if png_dir is not None:
            write_pngs(png_dir, figures)
        _send(
            sinks,
            {name: figures[name] for name in ("summary", "gradient_traces", "covariance") if name in figures},
            step,
        )


def write_pngs(folder: Path, figures: dict[str, Figure], suffix: str = "") -> None:
    """Write each figure as ``<folder>/<name><suffix>.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, fig in figures.items():
        fig.savefig(folder / f"{name}{suffix}.png", dpi=100)


def _send(sinks: Sequence[FigureSink], figures: dict[str, Figure], step: int) -> None:
    for sink in sinks:
        for name, fig in figures.items():
            sink(name, fig, step)
