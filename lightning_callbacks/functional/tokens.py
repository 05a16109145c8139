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

__all__ = [
    "TokenLayout",
    "TokenReading",
    "TOKEN_LAYOUTS",
    "token_matrix",
    "token_reading",
    "token_readings",
    "token_readings_of_lines",
]

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
    tokens = _token_matrices(sample.unsqueeze(0), layout)
    return None if tokens is None else tokens[0]


def _token_matrices(samples: torch.Tensor, layout: TokenLayout) -> torch.Tensor | None:
    """Every sample's tokens at once, ``(m, T, D)`` (a view), or None without a token axis."""
    if layout not in TOKEN_LAYOUTS:
        raise ValueError(f"layout={layout!r}: use one of {TOKEN_LAYOUTS}")
    if samples.dim() == 3:
        return samples if layout == "NTD" else samples.mT
    if samples.dim() == 4:  # (m, C, H, W): a spatial position is a token of C channels
        return samples.flatten(2).mT
    return None


def token_reading(sample: torch.Tensor, layout: TokenLayout = "NTD", mask: torch.Tensor | None = None) -> TokenReading:
    """The token reading of one sample (a block's output at one input, without its batch axis).

    ``mask``: ``(T,)``, nonzero for the tokens that count (an attention mask: padding is left out); ignored
    where its length is not the sample's token count. Tokens whose vector is zero have no direction and are
    left out of the cosine.
    """
    return _readings(sample.unsqueeze(0), layout, mask)[0]


def token_readings(ends: torch.Tensor, layout: TokenLayout = "NTD", mask: torch.Tensor | None = None) -> TokenReading:
    """The token reading of one line: the mean of its two endpoints' (``ends`` of shape ``(2, ...)``), or the
    first endpoint's status where either has none."""
    return token_readings_of_lines([ends], layout, mask)[0]


def token_readings_of_lines(
    lines: list[torch.Tensor], layout: TokenLayout = "NTD", mask: torch.Tensor | None = None
) -> list[TokenReading]:
    """:func:`token_readings` of each line's ``(2, ...)`` endpoints, all lines read together where their
    shapes agree (one batched computation), line by line where they do not."""
    if len({end.shape for end in lines}) != 1:
        return [token_readings(ends, layout, mask) for ends in lines]
    each = _readings(torch.cat(lines), layout, mask)
    readings = []
    for first, second in zip(each[0::2], each[1::2]):
        if first.status != "measured" or second.status != "measured":
            readings.append(first if first.status != "measured" else second)
        else:
            readings.append(
                TokenReading((first.kernel + second.kernel) / 2, (first.rank + second.rank) / 2, "measured")
            )
    return readings


def _readings(samples: torch.Tensor, layout: TokenLayout, mask: torch.Tensor | None) -> list[TokenReading]:
    """:func:`token_reading` of every sample of ``samples`` ``(m, ...)``, computed together: a handful of batched
    operations instead of a dozen per sample (a measurement reads every block at every line's two ends).

    The effective rank is :func:`~lightning_callbacks.functional.effective_rank`'s, from the singular values as
    the square roots of the eigenvalues of each sample's float64 Gram matrix (the smaller side), as
    :func:`~lightning_callbacks.functional.singular_values` computes them for a float32 matrix.
    """
    nan = math.nan
    tokens = _token_matrices(samples, layout)
    if tokens is None:
        return [TokenReading(nan, nan, "no token axis")] * samples.shape[0]
    if mask is not None and mask.numel() == tokens.shape[1]:
        tokens = tokens[:, mask.reshape(-1).to(tokens.device) != 0]
    if tokens.shape[1] < 2:
        return [TokenReading(nan, nan, "one token")] * samples.shape[0]
    # numpy's matrix_rank tolerance of the activations' own precision: round-off does not add rank
    eps = torch.finfo(tokens.dtype if tokens.is_floating_point() else torch.float64).eps * max(tokens.shape[1:])
    # contiguous: a conv output's tokens are a transposed view, and the reductions below run along D
    tokens = tokens.to(torch.float64, memory_format=torch.contiguous_format)
    # a sample's sum is finite iff all its entries are (float32 values cannot overflow a float64 sum): one
    # reduction instead of isfinite's several passes
    finite = torch.isfinite(tokens.sum((1, 2)))
    if not bool(finite.all()):
        tokens = torch.where(finite[:, None, None], tokens, 0.0)
    norms = tokens.norm(dim=2)  # (m, T)
    directed = norms > 0
    count = directed.sum(1)  # tokens with a direction, per sample
    # the mean of the off-diagonal cosines without the (T, T) Gram matrix (a 224x224 stem has 12,544 tokens):
    # |sum of unit vectors|^2 = T + the sum over ordered pairs of distinct tokens of their cosine; the sum of
    # unit vectors as one weighted contraction, without a normalized copy of the tokens
    weights = torch.where(directed, 1.0 / norms.clamp_min(torch.finfo(torch.float64).tiny), 0.0)
    total = torch.einsum("mtd,mt->md", tokens, weights)
    kernel = ((total * total).sum(1) - count) / (count * (count - 1)).clamp_min(1)
    gram = tokens @ tokens.mT if tokens.shape[1] <= tokens.shape[2] else tokens.mT @ tokens
    singular = torch.linalg.eigvalsh(gram).clamp_(min=0).sqrt_()  # ascending
    kept = singular > eps * singular[:, -1:]
    p = torch.where(kept, singular, 0.0) / torch.where(kept, singular, 0.0).sum(1, keepdim=True).clamp_min(1e-300)
    rank = torch.exp(-torch.where(kept, p * p.clamp_min(1e-300).log(), 0.0).sum(1)) / min(tokens.shape[1:])
    readings = []
    for ok, n, k, r in zip(finite.tolist(), count.tolist(), kernel.tolist(), rank.tolist()):
        status = "non-finite" if not ok else "zero" if n < 2 else "measured"
        readings.append(TokenReading(k, r, "measured") if status == "measured" else TokenReading(nan, nan, status))
    return readings
