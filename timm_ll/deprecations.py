"""Every renamed public name of ``timm_ll``, in one place (the README's *Changelog* lists them).

The training app moved from ``timm_ll.<module>`` to ``timm_ll.app.<module>`` (b18cb58), so that the
plugin never imports Lightning: the old module names are files of two lines that call
:func:`moved_module`, and keep working with a ``DeprecationWarning`` that names the new module.
``timm_ll.app.reporting.median_time`` (removed in 670fe3a) is back as a deprecated function that
names its replacement. ``timm_ll.app.training.validation_run`` (moved to ``examples/validation.py``)
still runs, with a warning, from ``timm_ll.app.training`` (the plugin's modules import no app module).
``timm_ll.crelu_recompute`` (``timm_ll/layers.py``) and ``CifarNet``'s string flags ``activation=``,
``residual=``, ``init=`` (``timm_ll/models/cifar.py``) warn through :func:`warn_moved` where they are handled.
``lightning_callbacks.deprecations`` does the same for the measurer's names; the two are kept apart
so that the plugin imports nothing of the measurer.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
import warnings
from collections.abc import Callable

__all__ = ["moved_module", "median_time", "warn_moved"]


def warn_moved(old: str, new: str, stacklevel: int) -> None:
    """The one warning a renamed or moved name of ``timm_ll`` gives: what it was, what to use now."""
    warnings.warn(
        f"{old} is deprecated and will be removed in a later release: use {new} instead",
        DeprecationWarning,
        stacklevel=stacklevel,
    )


def moved_module(old: str, new: str) -> None:
    """Make the module ``old`` (being imported) an alias of ``new``, with a warning."""
    module = importlib.import_module(new)
    warn_moved(f"the module {old}", new, stacklevel=4)
    sys.modules[old] = module  # the import system hands the caller what sys.modules holds after the import


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Deprecated: median wall time of ``fn`` in seconds over ``repeats`` runs after ``warmup`` runs."""
    warn_moved(
        "timm_ll.app.reporting.median_time",
        "torch.utils.benchmark.Timer(...).blocked_autorange().median",
        stacklevel=3,
    )
    import torch

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
