"""One measurement's statistics, summed across processes in one all-reduce.

:class:`Tally` keeps each probe line's readings (the gradient statistics, each block's neighbour correlation,
forward kernel and token kernel) as plain numbers while the lines are read, then adds them to torchmetrics
states at once and sums those across processes in one all-reduce when the result is read
(:func:`~lightning_callbacks.metrics.sum_across_processes`; another collective agrees on the blocks' statuses).
The measurer (:mod:`lightning_callbacks.measure`) makes one per device and world and reuses it.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from lightning_callbacks import functional as F
from lightning_callbacks.results import KERNEL, TOKEN_KERNEL, TOKEN_RANK, BlockReading, ShatteringResult

__all__ = ["Tally", "STATUS_ORDER", "metric_classes"]


def metric_classes() -> dict[str, type]:
    """The torchmetrics classes of the statistics, imported on first use: importing torchmetrics imports
    transformers where it is installed, which a plain loop's import of the measurer should not."""
    from lightning_callbacks.metrics import (
        EffectiveRank,
        ForwardKernel,
        GradientCorrelation,
        SpectralSlope,
        StableRank,
    )

    return {
        "neighbor_corr": GradientCorrelation,
        "effective_rank": EffectiveRank,
        "stable_rank": StableRank,
        "spectral_slope": SpectralSlope,
        KERNEL: ForwardKernel,
    }


# the worse of two lines' statuses is the block's (and is what every process agrees on)
STATUS_ORDER: tuple[F.Status, ...] = ("flat", "measured", "zero", "non-finite", "missing")


class Tally:
    """One measurement's statistics: each line's values kept as plain numbers while the lines are read, then
    added to torchmetrics states at once and summed across processes in one all-reduce when the result is
    read (two collectives a measurement, the other for the blocks' status). The metric objects live as long as
    the measurer (made once per device and world: building two dozen of them cost a fifth of a small net's
    measurement)."""

    def __init__(self, blocks: list[str], device: torch.device, sync: bool) -> None:
        classes = metric_classes()

        def metric(cls: type) -> Any:
            # float64 states: Metric.to(device) puts a metric back to the default dtype, float32; synced by result()
            return cls(sync_on_compute=False).to(device).set_dtype(torch.float64)

        self.blocks, self.device, self.sync = blocks, device, sync
        # one metric per key a line's values are noted under, named as logged: a statistic, (statistic, block)
        self.metrics: dict[Any, Any] = {key: metric(cls) for key, cls in classes.items()}
        for name in blocks:
            self.metrics["neighbor_corr", name] = metric(classes["neighbor_corr"])
            for key in (KERNEL, TOKEN_KERNEL, TOKEN_RANK):  # each a mean over the lines
                self.metrics[key, name] = metric(classes[KERNEL])
        self.start()

    def fits(self, blocks: list[str], device: torch.device, sync: bool) -> bool:
        return (self.blocks, self.device, self.sync) == (blocks, device, sync)

    def start(self, tokens: tuple[F.TokenLayout, torch.Tensor | None] | None = None) -> None:
        """Begin a measurement: no values, every state back to its default. ``tokens``: how the token kernel is
        read, ``(layout, attention mask or None)``; None: it is not."""
        self.tokens = tokens
        self._token_ends: dict[str, list[torch.Tensor]] = {}  # block -> each line's (2, ...) endpoint outputs
        self.worst = [0] * (len(self.blocks) + 2)  # input, output, blocks
        self.values: dict[Any, list[float]] = {}
        self.token_status: dict[str, str] = {}  # block -> why it has no token reading (the first line's cause)
        for metric in self.metrics.values():
            metric.reset()

    def _note(self, key: Any, value: float | torch.Tensor) -> None:
        self.values.setdefault(key, []).append(float(value))

    def add(self, line: F.InputGradients) -> None:
        """Add one line's readings (local)."""
        main = line.input if line.input is not None else next(iter(line.blocks.values()))
        status, corr = F.block_reading(main)  # the status and the neighbour correlation in one pass
        worst = self.worst
        worst[0] = max(worst[0], STATUS_ORDER.index(status))
        worst[1] = max(worst[1], int(line.output is not None and not torch.isfinite(line.output).all()))
        singular = F.singular_values(main)  # one decomposition for both ranks
        self._note("neighbor_corr", corr)
        self._note("effective_rank", F.effective_rank(main, singular=singular))
        self._note("stable_rank", F.stable_rank(main, singular=singular))
        if status != "flat":  # a flat gradient has no spectrum: left out
            self._note("spectral_slope", F.spectral_slope(main))
        if line.final_activations is not None:
            self._note(KERNEL, F.endpoint_cosine(line.final_activations))
        for index, name in enumerate(self.blocks, start=2):
            block_status, corr = F.block_reading(line.blocks[name], reached=name not in line.unreached)
            worst[index] = max(worst[index], STATUS_ORDER.index(block_status))
            self._note(("neighbor_corr", name), corr)
            if name in line.activations:
                self._note((KERNEL, name), F.endpoint_cosine(line.activations[name]))
                if self.tokens is not None:  # read for all lines at once by read_tokens()
                    self._token_ends.setdefault(name, []).append(line.activations[name])

    def read_tokens(self) -> None:
        """The token readings of every line added, block by block: each block's endpoints of all lines in one
        batched computation (a few operations a block instead of a few per line and block)."""
        for name, ends in self._token_ends.items():
            for reading in F.token_readings_of_lines(ends, *self.tokens):
                self._add_tokens(name, reading)
        self._token_ends = {}

    def _add_tokens(self, name: str, reading: F.TokenReading) -> None:
        if reading.status == "measured":
            self._note((TOKEN_KERNEL, name), reading.kernel)
            self._note((TOKEN_RANK, name), reading.rank)
        else:
            self.token_status.setdefault(name, reading.status)

    def _fill(self) -> None:
        """Every metric's states from this process's values: one update each."""
        for key, values in self.values.items():
            self.metrics[key].add(torch.tensor(values, dtype=torch.float64, device=self.device))

    def _token_reading(self, name: str) -> tuple[float, float, str]:
        """A block's token kernel and rank (means over the lines of every process) and its status."""
        if self.tokens is None:
            return math.nan, math.nan, "off"
        kernel, _, count = self.metrics[TOKEN_KERNEL, name].mean_and_std()
        if not count:
            return math.nan, math.nan, self.token_status.get(name, "no token axis")
        return kernel, self.metrics[TOKEN_RANK, name].mean_and_std()[0], "measured"

    def result(self, step: int, lines: list[F.InputGradients], total: int) -> ShatteringResult:
        """The synced result (a collective under a process group)."""
        self._fill()
        worst = torch.tensor(self.worst, dtype=torch.int64, device=self.device)
        if self.sync:  # every process labels each block by the worst line of all processes
            torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
            from lightning_callbacks.metrics import sum_across_processes  # imported with the metrics (lazily)

            sum_across_processes(list(self.metrics.values()))  # the metrics in one order on every process
        statistics = {}
        for key in metric_classes():
            mean, std, count = self.metrics[key].mean_and_std()
            if count:
                statistics[key] = (mean, std)
        corr = {name: self.metrics["neighbor_corr", name].mean_and_std()[0] for name in self.blocks}
        kernel = {name: self.metrics[KERNEL, name].mean_and_std()[:2] for name in self.blocks}
        tokens = {name: self._token_reading(name) for name in self.blocks}
        # blocks in the order the forward pass ran them (this process's lines, else registration order)
        order = list(lines[0].blocks) if lines else self.blocks
        readings = []
        for name in order:
            status = STATUS_ORDER[int(worst[2 + self.blocks.index(name)])]
            value = corr[name] if status in F.MEASURABLE else math.nan
            readings.append(BlockReading(name, value, status, *kernel[name], *tokens[name]))
        first = lines[0] if lines else None
        gradients = None
        if first is not None:
            gradients = first.input if first.input is not None else next(iter(first.blocks.values()), None)
        return ShatteringResult(
            step=step,
            statistics=statistics,
            input_status=STATUS_ORDER[int(worst[0])],
            blocks=readings,
            lines=total,
            gradients=gradients,
            output_finite=not bool(worst[1]),
        )
