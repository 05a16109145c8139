"""Every option of a shattering measurement, with its default, written once.

:class:`ShatteringOptions` is what :class:`~lightning_callbacks.measure.ShatteringMeasurer` takes, and
what the Lightning and Hugging Face callbacks pass on from their keyword arguments (so LightningCLI
and a YAML ``init_args`` list read these very fields). Bad values are refused when the object is
built, before any training, with an error that names the option and the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.deprecations import check_keywords

__all__ = ["ShatteringOptions", "ForwardFn", "option_names", "OPTION_DEFAULTS", "Schedule", "early_steps"]

ForwardFn = Callable[[nn.Module, torch.Tensor], Any]


@dataclass(frozen=True, eq=False)
class ShatteringOptions:
    """What a shattering measurement measures, when, and how it is reported.

    Args:
        every_n_steps: measure at every multiple of this optimizer step.
        log_spaced_start: also measure at 1, 2, 5, 10, 20, 50... before ``every_n_steps``, where
            shattering changes most.
        num_lines: probe lines, between distinct pairs of samples of the first training calls.
        num_points: points on each line; the default 4 x 64 costs what one 256-point line does.
        probe: one fixed probe ``(n, ...)`` ordered along a path, instead of the lines.
        blocks: ``"auto"`` (:func:`~lightning_callbacks.functional.auto_blocks`: a timm or zoo model's
            repeated blocks and stem), a list of submodule names, or ``None`` for the input only.
        bn_mode: ``"eval"`` (running statistics) or ``"batch"`` (the paper's probe statistics; each
            line is then its own batch).
        readout: callable mapping the output ``(n, ...)`` to ``(n,)``; default a seeded random unit
            projection of the ``logits`` or first per-sample tensor (never a scalar loss).
        forward_fn: ``forward_fn(module, probe) -> output`` runs the network on a probe instead of
            replaying its recorded training call.
        embedding: for token-id inputs, the name of the embedding module whose output is probed
            (default: the first ``nn.Embedding`` the forward runs).
        chunk_size: most probe points per forward pass in eval mode (default: the first training
            call's batch size, and never below :data:`~lightning_callbacks.lines.MIN_CHUNK`).
        token_kernel: also read each block's token kernel at the lines' endpoints (the mean cosine between the
            tokens of one input, and the effective rank of its token matrix over ``min(T, D)``: rank collapse);
            it reuses the outputs the forward kernel keeps, so it costs no extra forward pass.
        token_layout: where a 3-d block output holds its tokens: ``"NTD"`` (batch, tokens, features: the
            transformers and timm convention) or ``"NDT"`` (batch, features, tokens: a 1-d conv). A 4-d
            ``(n, C, H, W)`` output's tokens are its ``H * W`` positions.
        measure_at_end: also measure the trained network when training ends (the schedule measures
            before an optimizer step, so the weights after the last step are otherwise never seen).
        log_figures: draw the figures (to figure-taking loggers, and PNGs under ``<log dir>/<prefix>/``).
        prefix: prefix of the logged keys.
    """

    every_n_steps: int = 1000
    log_spaced_start: bool = True
    num_lines: int = 4
    num_points: int = 64
    probe: torch.Tensor | None = None
    blocks: str | Sequence[str] | None = "auto"
    bn_mode: F.BNMode = "eval"
    readout: F.Readout | None = None
    forward_fn: ForwardFn | None = None
    embedding: str | None = None
    chunk_size: int | None = None
    token_kernel: bool = True
    token_layout: F.TokenLayout = "NTD"
    measure_at_end: bool = True
    log_figures: bool = True
    prefix: str = "shattering"

    def __post_init__(self) -> None:
        for name in ("every_n_steps", "num_lines"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}={value!r}: use a positive integer")
        if not isinstance(self.num_points, int) or self.num_points < 2:
            raise ValueError(f"num_points={self.num_points!r}: a probe line needs at least 2 points")
        if self.chunk_size is not None and (not isinstance(self.chunk_size, int) or self.chunk_size < 1):
            raise ValueError(f"chunk_size={self.chunk_size!r}: use a positive integer, or None for the batch size")
        probe = self.probe
        if probe is not None and (not isinstance(probe, torch.Tensor) or probe.dim() < 1 or probe.shape[0] < 2):
            raise ValueError("probe must be a tensor (n, ...) of n >= 2 inputs ordered along a path")
        if isinstance(self.blocks, str) and self.blocks != "auto":
            raise ValueError(f"blocks={self.blocks!r}: use 'auto', a list of submodule names, or None")
        if self.readout is not None and not callable(self.readout):
            raise TypeError("readout must be a callable mapping outputs (n, ...) to scalars (n,)")
        if self.forward_fn is not None and not callable(self.forward_fn):
            raise TypeError(
                f"forward_fn must be a callable(module, probe) -> output, got {type(self.forward_fn).__name__}"
            )
        if self.embedding is not None and not isinstance(self.embedding, str):
            raise TypeError(f"embedding must be the name of a submodule, got {type(self.embedding).__name__}")
        if not isinstance(self.prefix, str) or not self.prefix:
            raise ValueError(f"prefix={self.prefix!r}: use a non-empty string, the first part of every logged key")
        F.check_bn_mode(self.bn_mode)
        if self.token_layout not in F.TOKEN_LAYOUTS:
            raise ValueError(f"token_layout={self.token_layout!r}: use one of {F.TOKEN_LAYOUTS}")


def option_names() -> list[str]:
    """The names :class:`ShatteringOptions` takes (an adapter's keyword arguments are checked against them)."""
    return [f.name for f in fields(ShatteringOptions)]


def _refusing_misspelt_options(init: Callable[..., None]) -> Callable[..., None]:
    """The dataclass's ``__init__``, which names the closest valid option for a misspelt one (the generated one
    only says "unexpected keyword"); ``functools.wraps`` keeps its signature for ``inspect`` and LightningCLI."""

    @functools.wraps(init)
    def checked(self: ShatteringOptions, *args: Any, **kwargs: Any) -> None:
        check_keywords(kwargs, option_names(), type(self).__name__, allow_renamed=False)
        init(self, *args, **kwargs)

    return checked


ShatteringOptions.__init__ = _refusing_misspelt_options(ShatteringOptions.__init__)  # type: ignore[method-assign]

# each option's default, for telling a LightningCLI default (it passes every accepted option) from a given value
OPTION_DEFAULTS: dict[str, Any] = {f.name: f.default for f in fields(ShatteringOptions)}


def early_steps(every_n_steps: int) -> list[int]:
    """The log-spaced steps measured before ``every_n_steps``: 0, 1, 2, 5, 10, 20, 50, 100, ..."""
    steps, decade = [0], 1
    while decade < every_n_steps:
        steps += [s for s in (decade, 2 * decade, 5 * decade) if s < every_n_steps]
        decade *= 10
    return steps


class Schedule:
    """The measured steps: every multiple of ``every_n_steps`` and, with ``log_spaced_start``, the log-spaced
    steps before it (:func:`early_steps`), where shattering changes most."""

    def __init__(self, every_n_steps: int = 1000, log_spaced_start: bool = True) -> None:
        self.every_n_steps = every_n_steps
        self._early = set(early_steps(every_n_steps)) if log_spaced_start else {0}

    def due(self, step: int) -> bool:
        """Whether ``step`` is a measured step."""
        return step % self.every_n_steps == 0 or step in self._early
