"""Never a killed run: how the measurer fails.

Bad options fail when the measurer (or an adapter) is built, before any training. A measurement that fails once
training runs warns once per cause, is kept in the history as a failed result (NaN everywhere, ``failed`` names
the cause) and training goes on; the next due step tries again.
:meth:`~lightning_callbacks.measure.ShatteringMeasurer.measure`, the direct call, raises instead.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

__all__ = ["MeasurementFailed", "Once", "cause_of", "FailureWarnings"]


class MeasurementFailed(RuntimeError):
    """Another process's part of a measurement failed (that process's warning names the cause)."""


class Once:
    """The run's warn-once register: ``once(key)`` is True the first time a key is seen, False after."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str) -> bool:
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


def cause_of(error: BaseException) -> str:
    """How a failure is named in warnings and in a failed result's ``failed``."""
    return f"{type(error).__name__}: {error}"


class FailureWarnings:
    """The measurer's warnings: one per cause, each saying that training goes on."""

    def __init__(self, who: str) -> None:
        self.who, self.once = who, Once()

    def warn(self, cause: str) -> None:
        if self.once(cause):
            warnings.warn(
                f"{self.who}: {cause}. Training goes on: a failed measurement is logged as NaN and the next due "
                "step tries again (this warning is given once per cause)",
                stacklevel=4,
            )

    def guard(self, action: Callable[[], object]) -> str | None:
        """Run ``action()``; on an exception, warn once with its cause and return the cause (None: it ran)."""
        try:
            action()
        except Exception as error:  # noqa: BLE001 - a monitor never ends a run: warn and go on
            cause = cause_of(error)
            self.warn(cause)
            return cause
        return None
