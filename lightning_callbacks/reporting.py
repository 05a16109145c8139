"""What an adapter reports of a measurement: the values to log, and the warnings to give, once per cause.

Every adapter (the Lightning and Hugging Face callbacks) reports through :class:`ResultReport`, so
that the same measurement logs the same keys and warns the same way whatever runs the training.
"""

from __future__ import annotations

import math

from lightning_callbacks.failures import Once
from lightning_callbacks.results import KERNEL, TOKEN_KERNEL, TOKEN_RANK, ShatteringResult
from lightning_callbacks.verdict import verdict

__all__ = ["ResultReport", "NO_READING"]

# the warning for a block without a reading, by its status
NO_READING = {
    "missing": "ran but does not reach the network's output (an unused branch or head?): no gradient reaches it",
    "zero": "has a gradient of exactly zero at every probe point (dead ReLUs, underflow, a product with 0)",
    "non-finite": "has NaN/Inf gradients",
}


class ResultReport:
    """Turns results into the values to log and the warnings to give (each cause once per run).

    Args:
        prefix: prefix of the logged keys.
        bn_mode: the measurement's BN mode (the advice for a non-finite output depends on it).
        who: the name the warnings start with (the adapter's).
    """

    def __init__(self, prefix: str, bn_mode: str, who: str) -> None:
        self.prefix, self.bn_mode, self.who = prefix, bn_mode, who
        self._once = Once()

    def __call__(self, result: ShatteringResult) -> tuple[dict[str, float], list[str]]:
        """``(values to log, new warnings)``: the input-level gradient statistics only where finite; every block
        the forward kernel and the token kernel (NaN for no reading, whose status says why: a block whose output has
        no token axis reads NaN there by design, without a warning); the verdict's block indices
        (``<prefix>/verdict/<what>``, :mod:`lightning_callbacks.verdict`); a failed measurement's NaN as they
        are (the measurer warned with its cause), and no verdict."""
        scalars = result.scalars(self.prefix)
        if result.failed is not None:
            return scalars, []
        always = tuple(f"{self.prefix}/{key}" for key in ("neighbor_corr/", KERNEL, TOKEN_KERNEL, TOKEN_RANK))
        notes = self._notes(result)
        bad = [k for k, v in scalars.items() if not math.isfinite(v) and not k.startswith(always)]
        bad = [k for k in bad if self._once(k)]
        if bad:
            notes.append(
                f"{self.who}: {', '.join(sorted(bad))} not finite at step {result.step} (NaN/Inf gradients); "
                "non-finite values are not logged, and this warning is given once per key"
            )
        logged = {k: v for k, v in scalars.items() if math.isfinite(v) or k.startswith(always)}
        if result.blocks:  # where each failure first shows, by block index (-1: nowhere)
            logged.update(verdict(result).scalars(self.prefix))
        return logged, notes

    def _notes(self, result: ShatteringResult) -> list[str]:
        notes = []
        if not result.output_finite and self._once("output"):
            hint = (
                "with bn_mode='eval' that is typical of a deep net without skips in its first steps, whose BN "
                "running statistics do not match its activations yet; bn_mode='batch' measures with the probe's own "
                "statistics"
                if self.bn_mode == "eval"
                else "its weights or activations have overflowed"
            )
            notes.append(
                f"{self.who}: the network's output on the probe (through the readout) is not finite at step "
                f"{result.step}; {hint}"
            )
        for status, text in NO_READING.items():
            blocks = [b.name for b in result.blocks if b.status == status]
            if blocks and self._once(f"status:{status}"):
                shown = ", ".join(blocks[:3]) + (f" ... ({len(blocks)} blocks)" if len(blocks) > 3 else "")
                notes.append(
                    f"{self.who}: block {shown} {text} at step {result.step}; its {self.prefix}/neighbor_corr/<block> "
                    "is logged as NaN (no reading), and this warning is given once"
                )
        return notes
