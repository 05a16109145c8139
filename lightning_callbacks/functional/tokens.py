"""The token kernel: how alike the tokens of one input have become (rank collapse, oversmoothing).

With depth, attention without skips makes the tokens of a sequence (the patches of an image) point the
same way (Dong et al. 2021, *Attention is not all you need: pure attention loses rank doubly
exponentially with depth*; Noci et al. 2022). The gradient statistics look across inputs; this looks
within one: for a block's output at one sample, the mean cosine between its distinct tokens (1: every
token points the same way) and the effective rank of its token matrix as a fraction of ``min(T, D)``.

Which axis holds the tokens: a sample of a ``(n, T, D)`` output (the transformers and timm convention)
is ``(T, D)``; with ``layout="NDT"`` a ``(n, D, T)`` output's sample ``(D, T)`` is transposed; a
``(n, C, H, W)`` output's sample has ``H * W`` tokens of ``C`` (its spatial positions). Anything else
has no token axis.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from lightning_callbacks.functional.statistics import effective_rank, singular_values

__all__ = ["TokenLayout", "TokenReading", "TOKEN_LAYOUTS", "token_matrix", "token_reading", "token_readings"]

TokenLayout = Literal["NTD", "NDT"]
TOKEN_LAYOUTS = ("NTD", "NDT")

# why a block has no token reading (a block with one has the status "measured")
TokenStatus = Literal["measured", "no token axis", "one token", "zero", "non-finite"]


@dataclass(frozen=True)
class TokenReading:
    """One sample's token reading: ``kernel`` (mean cosine between distinct tokens), ``rank`` (effective rank of
    the ``(T, D)`` token matrix over ``min(T, D)``), both NaN unless ``status`` is ``"measured"``."""

    kernel: float
    rank: float
    status: TokenStatus


def token_matrix(sample: torch.Tensor, layout: TokenLayout = "NTD") -> torch.Tensor | None:
    """One sample's tokens as a ``(T, D)`` matrix (see the module docstring), or None without a token axis."""
    if layout not in TOKEN_LAYOUTS:
        raise ValueError(f"layout={layout!r}: use one of {TOKEN_LAYOUTS}")
    if sample.dim() == 2:
        return sample if layout == "NTD" else sample.T
    if sample.dim() == 3:  # (C, H, W): a spatial position is a token of C channels
        return sample.flatten(1).T
    return None


def token_reading(sample: torch.Tensor, layout: TokenLayout = "NTD", mask: torch.Tensor | None = None) -> TokenReading:
    """The token reading of one sample (a block's output at one input, without its batch axis).

    ``mask``: ``(T,)``, nonzero for the tokens that count (an attention mask: padding is left out); ignored
    where its length is not the sample's token count. Tokens whose vector is zero have no direction and are
    left out of the cosine.
    """
    nan = math.nan
    tokens = token_matrix(sample, layout)
    if tokens is None:
        return TokenReading(nan, nan, "no token axis")
    if mask is not None and mask.numel() == tokens.shape[0]:
        tokens = tokens[mask.reshape(-1).to(tokens.device) != 0]
    tokens = tokens.to(torch.float64)
    if not torch.isfinite(tokens).all():
        return TokenReading(nan, nan, "non-finite")
    norms = tokens.norm(dim=1)
    directions = tokens[norms > 0] / norms[norms > 0, None]
    count = directions.shape[0]
    if tokens.shape[0] < 2:
        return TokenReading(nan, nan, "one token")
    if count < 2:
        return TokenReading(nan, nan, "zero")
    # the mean of the off-diagonal cosines without the (T, T) Gram matrix (a 224x224 stem has 12,544 tokens):
    # |sum of unit vectors|^2 = T + the sum over ordered pairs of distinct tokens of their cosine
    total = directions.sum(0)
    kernel = (float(total @ total) - count) / (count * (count - 1))
    rank = float(effective_rank(tokens, singular=singular_values(tokens))) / min(tokens.shape)
    return TokenReading(kernel, rank, "measured")


def token_readings(ends: torch.Tensor, layout: TokenLayout = "NTD", mask: torch.Tensor | None = None) -> TokenReading:
    """The token reading of one line: the mean of its two endpoints' (``ends`` of shape ``(2, ...)``), or the
    first endpoint's status where either has none."""
    first, second = (token_reading(end, layout, mask) for end in ends)
    if first.status != "measured" or second.status != "measured":
        return first if first.status != "measured" else second
    return TokenReading((first.kernel + second.kernel) / 2, (first.rank + second.rank) / 2, "measured")
