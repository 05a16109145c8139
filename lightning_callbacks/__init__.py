"""Measure gradient shattering (Balduzzi et al. 2017) on any model, in any Lightning Trainer.

- :mod:`lightning_callbacks.functional`: pure torch probes, gradients and statistics.
- :mod:`lightning_callbacks.metrics`: ``GradientCorrelation`` and ``EffectiveRank`` torchmetrics.
- :class:`ShatteringMonitor`: the Lightning callback.
"""

from lightning_callbacks.metrics import EffectiveRank, GradientCorrelation
from lightning_callbacks.shattering import ShatteringMonitor

__all__ = ["ShatteringMonitor", "GradientCorrelation", "EffectiveRank"]
