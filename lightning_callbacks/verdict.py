"""A verdict a user can act on: the first block where something went wrong, per measurement.

Three readings of a :class:`~lightning_callbacks.results.ShatteringResult`, each a block index in forward order
(``NONE``, -1, where nothing went wrong) and named in one line:

- **shattered**: where the gradient, travelling back from the output, first reads as noise: scanning the
  blocks from the last to the first, the first whose neighbour correlation is at most :data:`NOISE_CORR`.
- **inputs merged**: where the forward signal first stops telling the line's two inputs apart: scanning from
  the first block, the first whose forward kernel (the cosine of its outputs at the two ends) is at least
  :data:`MERGED_KERNEL`.
- **tokens collapsed**: where one input's tokens (or spatial positions) first point one way: the first block
  whose token kernel (their mean cosine) is at least :data:`COLLAPSED_TOKENS`.

A block without a reading (NaN: its status says why) is skipped. The thresholds are chosen from committed
readings at initialization (``docs/MONITOR.md``, *The verdict*, block `verdict-at-init`; the data is
``docs/results/verdict_at_init.jsonl``, from ``examples/verdict_at_init.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from lightning_callbacks.results import BlockReading, ShatteringResult

__all__ = ["Verdict", "verdict", "NOISE_CORR", "MERGED_KERNEL", "COLLAPSED_TOKENS", "NONE", "VERDICT_KEYS"]

# the thresholds (docs/MONITOR.md, "The verdict", states each with the committed data it comes from)
# at init, the shattered nets' blocks read at most 0.097 and every other block of 53 models at least 0.21; white
# noise's ACF(1) over 64 points spreads about 0.125, 0.06 for the mean of 4 lines: the threshold sits in the gap
NOISE_CORR = 0.15  # a neighbour correlation at or below this is noise
# at init the forward kernel rises smoothly with depth (no gap): 0.99, two outputs within 8 degrees, is a convention
# that the kernel-shaped nets (looks-linear, TAT: at most 0.77) stay far below and deep unshaped ones pass
MERGED_KERNEL = 0.99  # a forward kernel at or above this: the two inputs are no longer told apart
# at init no model of 53 reaches it (conv nets' spatial positions at most 0.9923); attention without skips does
COLLAPSED_TOKENS = 0.999  # a token kernel at or above this: one input's tokens point one way
NONE = -1  # the logged index where nothing went wrong
# the logged keys under <prefix>/verdict/, in the order the line names them
VERDICT_KEYS = ("shattered", "inputs_merged", "tokens_collapsed")


@dataclass(frozen=True)
class Verdict:
    """Where each failure first shows, as an index into ``blocks`` (forward order), ``NONE`` where it does not.

    Attributes:
        step: the measurement's step.
        blocks: the block names, in forward order.
        shattered, inputs_merged, tokens_collapsed: see the module docstring.
    """

    step: int
    blocks: tuple[str, ...]
    shattered: int = NONE
    inputs_merged: int = NONE
    tokens_collapsed: int = NONE

    def scalars(self, prefix: str = "shattering") -> dict[str, float]:
        """The logged keys: ``<prefix>/verdict/<what>``, a block index or -1 for none."""
        return {f"{prefix}/verdict/{key}": float(getattr(self, key)) for key in VERDICT_KEYS}

    def _where(self, index: int) -> str:
        return f"block {index} of {len(self.blocks)} ({self.blocks[index]})"

    def line(self) -> str:
        """One line a person reads, e.g. ``verdict at step 600: gradients shattered from block 12 of 27
        (stages.1.3) back to the input; inputs told apart at every block; tokens distinct at every block``."""
        if not self.blocks:
            return f"verdict at step {self.step}: no block readings (blocks=None), nothing to say per block"
        parts = [
            f"gradients shattered from {self._where(self.shattered)} back to the input"
            if self.shattered != NONE
            else "no gradient shattered",
            f"inputs merged (forward kernel >= {MERGED_KERNEL}) from {self._where(self.inputs_merged)}"
            if self.inputs_merged != NONE
            else "inputs told apart at every block",
            f"tokens collapsed (token kernel >= {COLLAPSED_TOKENS}) from {self._where(self.tokens_collapsed)}"
            if self.tokens_collapsed != NONE
            else "tokens distinct at every block",
        ]
        return f"verdict at step {self.step}: " + "; ".join(parts)


def _first(readings: Sequence[tuple[int, float]], passes: float, above: bool) -> int:
    for index, value in readings:
        if math.isfinite(value) and (value >= passes if above else value <= passes):
            return index
    return NONE


def verdict(result: ShatteringResult) -> Verdict:
    """The verdict of one measurement (a failed one has no readings: nothing went wrong that it can name)."""
    blocks: list[BlockReading] = list(result.blocks)
    indexed = list(enumerate(blocks))
    return Verdict(
        step=result.step,
        blocks=tuple(b.name for b in blocks),
        # the gradient travels from the output back: the first block on its way that reads as noise
        shattered=_first([(i, b.neighbor_corr) for i, b in reversed(indexed)], NOISE_CORR, above=False),
        inputs_merged=_first([(i, b.kernel) for i, b in indexed], MERGED_KERNEL, above=True),
        tokens_collapsed=_first([(i, b.token_kernel) for i, b in indexed], COLLAPSED_TOKENS, above=True),
    )
