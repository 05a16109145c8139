"""What one measurement found, as a typed result, and as the plain entry checkpoints and result files keep.

Old formats are read here, and in two more places this list names (renamed *names* are
:mod:`lightning_callbacks.deprecations`'): :meth:`ShatteringResult.from_entry` reads every entry a checkpoint or
a committed result file holds (the keys ``stats``, ``layers``, ``status``; older ones without kernels, statuses
or token readings) and :func:`as_results` turns a history of either kind into typed results;
:meth:`~lightning_callbacks.lines.ProbeLines.load` reads an older checkpoint's single line ``(2, ...)``;
:func:`~lightning_callbacks.plotting.plot_block_heatmap` hatches the 1.0 readings that histories recorded
before block statuses hold at a step with a non-finite output."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from lightning_callbacks import functional as F

__all__ = ["BlockReading", "ShatteringResult", "as_results", "KERNEL", "TOKEN_KERNEL", "TOKEN_RANK"]

# the key family of the forward kernel (the cosine of a signal at each line's two endpoints)
KERNEL = "kernel"
# the token kernel's two readings (:mod:`lightning_callbacks.functional.tokens`), logged per block
TOKEN_KERNEL = "token_kernel"
TOKEN_RANK = "token_rank"


@dataclass(frozen=True)
class BlockReading:
    """One block's reading.

    Attributes:
        name: the block (a submodule name of the measured network).
        neighbor_corr: the neighbour correlation of the gradient at the block's output, mean over
            the lines (NaN unless ``status`` is ``"measured"`` or ``"flat"``).
        status: what its gradients allowed (see :func:`~lightning_callbacks.functional.gradient_status`).
        kernel, kernel_std: the forward kernel at the block's output, mean and spread over the lines
            (NaN where the output was zero, not finite, or has no row per probe point).
        token_kernel, token_rank: the token kernel at the block's output (the mean cosine between one input's
            distinct tokens, and its token matrix's effective rank over ``min(T, D)``), mean over the lines'
            endpoints; NaN unless ``token_status`` is ``"measured"`` (else it says why: ``"no token axis"``,
            ``"one token"``...; ``"off"`` where the option is off).
    """

    name: str
    neighbor_corr: float
    status: F.Status
    kernel: float = math.nan
    kernel_std: float = math.nan
    token_kernel: float = math.nan
    token_rank: float = math.nan
    token_status: str = "off"


@dataclass(frozen=True)
class ShatteringResult:
    """What one measurement found (identical on every process).

    Attributes:
        step: the training step it was taken at (optimizer steps taken so far).
        statistics: ``(mean, sample std)`` across the lines of the input-level ``neighbor_corr``,
            ``effective_rank``, ``stable_rank`` and ``spectral_slope`` (for token ids, of the
            gradient w.r.t. the embeddings; the spectral slope is left out where every line is
            flat) and of the forward ``kernel`` at the network's output.
        input_status: the worst status among the lines' input-level gradients.
        blocks: the per-block readings, in the order the forward pass ran the blocks.
        lines: how many lines were measured (all processes together).
        gradients: the first line's input-level gradients ``(points, ...)`` for figures (rank 0's line;
            kept for the latest result of a history only).
        output_finite: whether the network's output (through the readout) was finite at every point.
        failed: why the measurement failed (then every value is NaN), else None.
    """

    step: int
    statistics: dict[str, tuple[float, float]]
    input_status: F.Status = "measured"
    blocks: list[BlockReading] = field(default_factory=list)
    lines: int = 0
    gradients: torch.Tensor | None = None
    output_finite: bool = True
    failed: str | None = None

    @classmethod
    def failure(cls, step: int, blocks: list[str], cause: str) -> ShatteringResult:
        """The result of a measurement that failed: NaN everywhere, and the cause."""
        nan = math.nan
        return cls(
            step=step,
            statistics={"neighbor_corr": (nan, nan), KERNEL: (nan, nan)},
            input_status="non-finite",
            blocks=[BlockReading(name, nan, "non-finite") for name in blocks],
            failed=cause,
        )

    def scalars(self, prefix: str = "shattering") -> dict[str, float]:
        """The logged keys: ``<prefix>/<statistic>`` and ``<prefix>/<statistic>_std`` (the forward kernel at the
        output is ``<prefix>/kernel``), and for every block ``<prefix>/neighbor_corr/<block>``,
        ``<prefix>/kernel/<block>`` and ``<prefix>/kernel_std/<block>`` (NaN for no reading)."""
        out: dict[str, float] = {}
        for key, (mean, std) in self.statistics.items():
            out[f"{prefix}/{key}"] = mean
            out[f"{prefix}/{key}_std"] = std
        for block in self.blocks:
            out[f"{prefix}/neighbor_corr/{block.name}"] = block.neighbor_corr
            out[f"{prefix}/{KERNEL}/{block.name}"] = block.kernel
            out[f"{prefix}/{KERNEL}_std/{block.name}"] = block.kernel_std
            if block.token_status != "off":
                out[f"{prefix}/{TOKEN_KERNEL}/{block.name}"] = block.token_kernel
                out[f"{prefix}/{TOKEN_RANK}/{block.name}"] = block.token_rank
        return out

    def without_gradients(self) -> ShatteringResult:
        """This result without its gradients (a history keeps them for its latest result only)."""
        return self if self.gradients is None else replace(self, gradients=None)

    # ---- the plain entry: checkpoints (loaded with weights_only=True), result files, figures ----
    def entry(self) -> dict[str, Any]:
        """Plain values: ``step``, ``stats`` (finite statistics as [mean, std]), ``layers`` (block -> neighbour
        correlation), ``status`` (block -> status, for the blocks without a reading), ``kernel`` (block ->
        [mean, std]) and, for a failed measurement, ``failed`` (the cause). The keys ``stats``, ``layers``
        and ``status`` are those of every committed result file."""
        entry: dict[str, Any] = {
            "step": self.step,
            "stats": {k: v for k, v in self.statistics.items() if math.isfinite(v[0])},
            "layers": {b.name: b.neighbor_corr for b in self.blocks},
            "status": {b.name: b.status for b in self.blocks if b.status not in F.MEASURABLE},
            KERNEL: {b.name: (b.kernel, b.kernel_std) for b in self.blocks},
        }
        tokens = [b for b in self.blocks if b.token_status != "off"]
        if tokens:  # block -> [token kernel, token rank, status]
            entry["tokens"] = {b.name: (b.token_kernel, b.token_rank, b.token_status) for b in tokens}
        if self.failed is not None:
            entry["failed"] = self.failed
        return entry

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ShatteringResult:
        """The result an :meth:`entry` (or an older one, without kernels or statuses) describes."""
        status = entry.get("status") or {}
        kernels = entry.get(KERNEL) or {}
        tokens = entry.get("tokens") or {}
        nan = (math.nan, math.nan)
        blocks = [
            BlockReading(
                name,
                float(corr),
                status.get(name, "measured" if corr == corr else "non-finite"),
                *map(float, kernels.get(name, nan)),
                *((float(tokens[name][0]), float(tokens[name][1]), str(tokens[name][2])) if name in tokens else ()),
            )
            for name, corr in (entry.get("layers") or {}).items()
        ]
        stats = {k: (float(v[0]), float(v[1])) for k, v in (entry.get("stats") or {}).items()}
        return cls(step=int(entry["step"]), statistics=stats, blocks=blocks, failed=entry.get("failed"))


def as_results(history: Sequence[ShatteringResult | Mapping[str, Any]]) -> list[ShatteringResult]:
    """Typed results of a history that may hold plain entries (a result file's ``shattering``, an old checkpoint)."""
    return [item if isinstance(item, ShatteringResult) else ShatteringResult.from_entry(item) for item in history]
