"""torchmetrics shells over :mod:`lightning_callbacks.functional`.

Each metric is a :class:`torchmetrics.aggregation.MeanMetric` of a per-probe statistic: every
``update`` adds one probe's value, and the states (a weighted sum and a weight, reduced with
``"sum"``) make a DDP sync give exactly the mean over all processes' probes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics.aggregation import MeanMetric
from torchmetrics.utilities.plot import _AX_TYPE, _PLOT_OUT_TYPE

from lightning_callbacks import functional as F

__all__ = [
    "GradientCorrelation",
    "EffectiveRank",
    "StableRank",
    "SpectralSlope",
    "ForwardKernel",
    "sum_across_processes",
]


class _MeanOfProbes(MeanMetric):
    """Mean (and spread) of a per-probe statistic of gradients ``(n, ...)`` ordered along a probe.

    float64 states: a weighted sum and a weight (MeanMetric's) plus a sum of squares, all
    reduced with ``"sum"``, so that after a DDP sync every process holds the statistics of all
    processes' probes.
    """

    is_differentiable = False
    full_state_update = False
    sum_sq: torch.Tensor
    # every state: a float64 scalar summed across processes (what sum_across_processes relies on)
    SUMMED_STATES = ("mean_value", "weight", "sum_sq")

    def __init__(self, **kwargs: Any) -> None:
        # a NaN statistic (non-finite gradients) must show in the mean, never be dropped silently
        super().__init__(nan_strategy="disable", **kwargs)
        self.add_state("sum_sq", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.set_dtype(torch.float64)

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def update(self, grads: torch.Tensor) -> None:  # type: ignore[override]
        """Add one probe's gradients, shape ``(n, ...)`` with ``n >= 2`` points along the path (for
        :class:`ForwardKernel`, the signal at a line's two endpoints)."""
        self.add(self._statistic(grads.detach()))

    def add(self, value: torch.Tensor | float) -> None:
        """Add one probe's statistic computed elsewhere, or a 1-D tensor of several probes' at once (the measurer
        reads a block's status and correlation in one pass: :func:`~lightning_callbacks.functional.block_reading`,
        and adds a measurement's lines in one update)."""
        value = torch.as_tensor(value, device=self.device, dtype=torch.float64)
        super().update(value)
        self.sum_sq += value.pow(2).sum()

    def mean_and_std(self) -> tuple[float, float, int]:
        """``(mean, sample standard deviation, count)`` over every probe so far (all processes' under DDP).

        The mean is NaN when no probe was added anywhere (count 0) or a statistic was NaN.
        """
        with self.sync_context(should_sync=self._to_sync, should_unsync=True):
            count = int(self.weight.item())
            mean = self.mean_value.item() / count if count else math.nan
            var = (self.sum_sq.item() - count * mean**2) / (count - 1) if count > 1 else 0.0
        return mean, math.sqrt(max(var, 0.0)), count

    def plot(
        self, val: torch.Tensor | Sequence[torch.Tensor] | None = None, ax: _AX_TYPE | None = None
    ) -> _PLOT_OUT_TYPE:
        """Plot the current value, or a sequence of values (e.g. one per step) as a curve."""
        return self._plot(val, ax)


def sum_across_processes(metrics: Sequence[_MeanOfProbes]) -> None:
    """Sum the states of many metrics over the default process group in one all-reduce, in place: after it every
    process holds every process's probes, as after torchmetrics' sync, and the metrics are read without one
    (``sync_on_compute=False``). Deliberately not torchmetrics' own sync, which gathers each state of each metric
    on its own: two collectives a state, over a thousand per measurement for a 200-layer net's per-block metrics.
    Every process must call it with the same metrics in the same order."""
    states = [(metric, name) for metric in metrics for name in metric.SUMMED_STATES]
    if not states:
        return
    packed = torch.stack([getattr(metric, name) for metric, name in states])
    torch.distributed.all_reduce(packed, op=torch.distributed.ReduceOp.SUM)
    for (metric, name), value in zip(states, packed, strict=True):
        setattr(metric, name, value)


class GradientCorrelation(_MeanOfProbes):
    """Mean autocorrelation at ``lag`` of gradients along probes (``lag=1``: neighbor correlation).

    Example:
        >>> metric = GradientCorrelation()
        >>> metric.update(torch.ones(8, 3))
        >>> float(metric.compute())
        1.0
    """

    higher_is_better = True
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def __init__(self, lag: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if lag < 1:
            raise ValueError(f"lag={lag}: the gradient correlation is measured at lag >= 1")
        self.lag = lag

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        return F.autocorrelation(grads, max_lag=self.lag)[self.lag]


class EffectiveRank(_MeanOfProbes):
    """Mean effective rank (Roy & Vetterli 2007) of the ``(n, D)`` gradient matrix of each probe."""

    higher_is_better = False
    plot_lower_bound = 0.0

    def __init__(self, eps: float | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.eps = eps

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        return F.effective_rank(grads, eps=self.eps)


class StableRank(_MeanOfProbes):
    """Mean stable rank ``||A||_F^2 / ||A||_2^2`` of the ``(n, D)`` gradient matrix of each probe."""

    higher_is_better = False
    plot_lower_bound = 0.0

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        return F.stable_rank(grads)


class SpectralSlope(_MeanOfProbes):
    """Mean spectral slope of the gradients along each probe (0 white noise, 2 brown noise).

    A flat probe (gradients equal at every point, as a linear net's) has no spectrum: callers
    leave it out rather than adding its NaN (see :func:`~lightning_callbacks.functional.spectral_slope`).
    """

    higher_is_better = True

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        return F.spectral_slope(grads)


class ForwardKernel(_MeanOfProbes):
    """Mean forward kernel over lines: the cosine similarity of a signal at each line's two endpoints
    (:func:`~lightning_callbacks.functional.endpoint_cosine`, the "C map"); ``update`` takes the signal at
    the endpoints, shape ``(2, ...)``.

    Example:
        >>> metric = ForwardKernel()
        >>> metric.update(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
        >>> round(float(metric.compute()), 4)
        0.7071
    """

    higher_is_better = None
    plot_lower_bound = -1.0
    plot_upper_bound = 1.0

    def _statistic(self, grads: torch.Tensor) -> torch.Tensor:
        return F.endpoint_cosine(grads)
