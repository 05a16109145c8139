"""Measure gradient shattering (Balduzzi et al. 2017) on any model, in any training loop.

- :mod:`lightning_callbacks.functional`: pure torch probes, gradients and statistics.
- :mod:`lightning_callbacks.metrics`: the statistics as torchmetrics metrics.
- :class:`ShatteringMeasurer` (:mod:`lightning_callbacks.measure`): the framework-free measurer, for
  any loop (plain PyTorch, Fabric, Accelerate...).
- :class:`ShatteringMonitor`: the Lightning callback; :class:`ShatteringCallback`: the Hugging Face
  ``Trainer`` callback. Both adapt the measurer, and are imported on first use (the metrics too),
  so that importing this package imports neither Lightning nor transformers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lightning_callbacks.measure import ShatteringMeasurer
from lightning_callbacks.options import ShatteringOptions
from lightning_callbacks.results import BlockReading, ShatteringResult
from lightning_callbacks.verdict import Verdict, verdict

if TYPE_CHECKING:
    from lightning_callbacks.hf import ShatteringCallback
    from lightning_callbacks.metrics import EffectiveRank, ForwardKernel, GradientCorrelation, SpectralSlope, StableRank
    from lightning_callbacks.shattering import ShatteringMonitor

__all__ = [
    "ShatteringMeasurer",
    "ShatteringOptions",
    "ShatteringResult",
    "BlockReading",
    "Verdict",
    "verdict",
    "ShatteringMonitor",
    "ShatteringCallback",
    "GradientCorrelation",
    "EffectiveRank",
    "StableRank",
    "SpectralSlope",
    "ForwardKernel",
]

# imported on first use (PEP 562): the framework adapters, and the metrics (importing torchmetrics imports
# transformers where it is installed)
_LAZY = {
    "ShatteringMonitor": "lightning_callbacks.shattering",
    "ShatteringCallback": "lightning_callbacks.hf",
    **dict.fromkeys(
        ("GradientCorrelation", "EffectiveRank", "StableRank", "SpectralSlope", "ForwardKernel"),
        "lightning_callbacks.metrics",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lightning_callbacks' has no attribute {name!r}")
