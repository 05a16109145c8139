"""The training recipe, written once: its settings (``Recipe``'s defaults are ``timm-ll train``'s) and the
optimizer and LR schedule they make.

A module of its own, without Lightning (torch is imported when an optimizer is made), so that the command
line can show the settings in ``--help`` without importing the training loop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import torch

__all__ = ["Recipe", "optimizer_and_schedule", "BATCH_SIZE", "MONITOR_EVERY", "SURVEY_POINTS"]

# the app's own defaults, written once (``timm-ll train`` and ``fit_and_test``; ``timm-ll shatter`` and the survey)
BATCH_SIZE = 128  # the training batch, as in He et al. (2016) for CIFAR
MONITOR_EVERY = 500  # steps between the ShatteringMonitor's readings of a training run
SURVEY_POINTS = 128  # points on the survey's line probe at init: 128 keeps the main job short


@dataclass
class Recipe:
    """Optimization settings: SGD as in He et al. (2016) for CIFAR, with a one-cycle schedule.

    The peak LR (0.02) and warm-up (30% of the run) won for both ``ll_plain56`` and
    ``cifar_resnet56`` in ``examples/recipe_sweep.py`` (234 steps on 10k CIFAR-10 images, chosen on
    held-out training images; docs/REPRODUCTION.md section e). He et al.'s 0.1 is made for 64k
    steps; at this budget it cost them 4-18 points of validation error.
    """

    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.3
    # weight decay on norm scales/shifts and biases too (timm's ``filter_bias_and_bn=False``); off by default
    decay_norm_and_bias: bool = False

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: use 'onecycle' or 'cosine'")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing}: use a value in [0, 1)")


def optimizer_and_schedule(
    recipe: Recipe, parameters: Iterable[torch.nn.Parameter], max_steps: int
) -> tuple[torch.optim.SGD, Any]:
    """SGD with the recipe's momentum and weight decay (norm scales and biases, the 1-d parameters, get none
    unless ``decay_norm_and_bias``), and its LR schedule over ``max_steps`` steps, to be stepped every step."""
    import torch

    parameters = list(parameters)
    decay = [p for p in parameters if p.ndim > 1 or recipe.decay_norm_and_bias]
    no_decay = [p for p in parameters if p.ndim <= 1 and not recipe.decay_norm_and_bias]
    optimizer = torch.optim.SGD(
        [dict(params=decay, weight_decay=recipe.weight_decay), dict(params=no_decay, weight_decay=0.0)],
        lr=recipe.lr,
        momentum=recipe.momentum,
        nesterov=recipe.nesterov,
    )
    if recipe.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(
            optimizer,
            max_lr=recipe.lr,
            total_steps=max_steps + 1,
            pct_start=recipe.warmup_fraction,
            anneal_strategy="cos",
            div_factor=10.0,
            final_div_factor=100.0,
            cycle_momentum=False,
        )
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_steps)
    return optimizer, scheduler
