"""What every adapter does with a measurement's result, written once: log its values, give its warnings (once
per cause), draw its figures. An adapter says only how its framework logs, warns and which figure sinks it has.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from lightning_callbacks.options import ShatteringOptions
from lightning_callbacks.plotting.runs import FigureSink, RunFigures
from lightning_callbacks.reporting import ResultReport
from lightning_callbacks.results import ShatteringResult
from lightning_callbacks.verdict import verdict

__all__ = ["Publisher"]


class Publisher:
    """Publishes a monitored run's results for one adapter (``who`` starts its warnings).

    Args:
        options: the run's options (prefix, BN mode, whether to draw figures).
        who: the adapter's name, as its warnings say it.
    """

    def __init__(self, options: ShatteringOptions, who: str) -> None:
        self.options = options
        self.report = ResultReport(options.prefix, options.bn_mode, who)
        self.figures = RunFigures()

    def measured(
        self,
        result: ShatteringResult | None,
        history: list[ShatteringResult],
        *,
        log: Callable[[dict[str, float]], None],
        warn: Callable[[str], None],
        main_process: bool,
        sinks: Callable[[], Sequence[FigureSink]],
        png_dir: Path,
    ) -> None:
        """After a measurement (nothing when ``result`` is None): ``log`` its values on every process, ``warn``
        its new warnings and draw the figures on the main process (``sinks`` is asked only then)."""
        if result is None:
            return
        logged, notes = self.report(result)
        if main_process:
            for note in notes:
                warn(note)
        log(logged)
        if self.options.log_figures and main_process:
            self.figures.measured(result.step, history, result.gradients, sinks(), png_dir)

    def ended(
        self,
        step: int,
        history: list[ShatteringResult],
        *,
        main_process: bool,
        sinks: Callable[[], Sequence[FigureSink]],
        png_dir: Path,
    ) -> None:
        """When training ends (or fails): the run's final figures, on the main process."""
        if self.options.log_figures and main_process:
            self.figures.ended(step, history, sinks(), png_dir)

    def verdict_line(self, history: list[ShatteringResult]) -> str | None:
        """The line printed when training ends: the verdict of the last measurement that has readings (None
        where none has), with the adapter's prefix."""
        measured = [result for result in history if result.failed is None and result.blocks]
        if not measured:
            return None
        return f"{self.options.prefix}: {verdict(measured[-1]).line()}"
