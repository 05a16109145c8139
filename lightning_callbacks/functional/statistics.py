"""Statistics of the gradients along one probe: correlation, ranks, spectrum, and what there is to measure."""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = [
    "Status",
    "MEASURABLE",
    "gradient_status",
    "block_reading",
    "is_flat",
    "autocorrelation",
    "neighbor_correlation",
    "gradient_covariance",
    "effective_rank",
    "stable_rank",
    "spectral_slope",
    "singular_values",
    "gradient_statistics",
    "endpoint_cosine",
]

# what one probe's gradients allow (see gradient_status); only the measurable ones get a number
Status = Literal["measured", "flat", "zero", "non-finite", "missing"]
MEASURABLE = ("measured", "flat")
# gradients that differ by less than this many units of round-off of their dtype count as "all equal"
_CONSTANT_ULPS = 10_000.0


def _constant_tolerance(grads: torch.Tensor) -> float:
    """Centered-to-uncentered energy ratio below which gradients count as equal up to round-off."""
    return (_CONSTANT_ULPS * torch.finfo(grads.dtype if grads.is_floating_point() else torch.float64).eps) ** 2


def _as_matrix(grads: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    if grads.dim() == 0 or grads.shape[0] < 2:
        raise ValueError(f"need gradients at >= 2 points along the probe, shape (n, ...), got {tuple(grads.shape)}")
    return grads.reshape(grads.shape[0], -1).to(dtype)


def _working_dtype(grads: torch.Tensor) -> torch.dtype:
    """float64 for float64 gradients, float32 for the rest: the round-off of float32 sums stays many orders of
    magnitude below the flatness tolerance, which is set in units of the gradients' own round-off, and a
    float64 copy of every block's gradients would cost a third of the measurement on a CPU."""
    return torch.float64 if grads.dtype == torch.float64 else torch.float32


def _centered(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(mean, z, flat)``: the float64 mean of the gradients ``(n, D)`` over the probe, the gradients centered
    along it (in :func:`_working_dtype`), and whether they are equal up to round-off (centered energy at most
    :func:`_constant_tolerance` of the uncentered one)."""
    mean, z, energy = _centered_energy(grads)
    return mean, z, _is_flat(grads, mean, energy)


def _centered_energy(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(mean, z, energy)``: the mean over the probe, the centered gradients and their energy, the mean and
    the energy returned in float64."""
    g = _as_matrix(grads, _working_dtype(grads))
    # the mean in the working dtype: torch's reductions sum pairwise (relative error ~ eps, far below the
    # flatness tolerance), and a float64 accumulation over every block's gradients costs 3x as much
    mean = g.mean(dim=0)
    z = g - mean
    flat_z = z.reshape(-1)
    return mean.double(), z, torch.dot(flat_z, flat_z).double()


def _uncentered(mean: torch.Tensor, n: int, energy: torch.Tensor) -> torch.Tensor:
    # the uncentered energy is the centered one plus n |mean|^2: no second pass over the gradients;
    # it is exactly zero only for gradients that are zero everywhere
    return energy + n * torch.dot(mean, mean)


def _is_flat(grads: torch.Tensor, mean: torch.Tensor, energy: torch.Tensor) -> bool:
    uncentered = _uncentered(mean, grads.shape[0], energy)
    # an all-zero gradient is not flat: it is no gradient at all (see gradient_status)
    return bool(uncentered > 0 and energy <= _constant_tolerance(grads) * uncentered)


def is_flat(grads: torch.Tensor) -> bool:
    """Whether the gradients ``(n, ...)`` are equal at every probe point up to round-off and not all zero
    (a linear net's are)."""
    return _centered(grads)[2]


def gradient_status(grads: torch.Tensor, reached: bool = True) -> Status:
    """What the gradients ``(n, ...)`` of one probe allow to be said, before any statistic is read off them.

    - ``"missing"``: not ``reached`` (the block ran, but its output does not reach the readout);
    - ``"non-finite"``: a NaN or Inf among them;
    - ``"zero"``: exactly zero everywhere although connected (dead ReLUs, underflow, a product with 0);
    - ``"flat"``: equal and non-zero at every point up to round-off (a linear path): correlation 1;
    - ``"measured"``: they vary along the probe.

    Only ``"flat"`` and ``"measured"`` gradients have a neighbour correlation.
    """
    return block_reading(grads, reached)[0]


def block_reading(grads: torch.Tensor, reached: bool = True) -> tuple[Status, float]:
    """``(status, neighbour correlation)`` of one probe's gradients in one pass over them (a depth profile
    reads every block of every line): the correlation is NaN unless the status is measurable."""
    if not reached:
        return "missing", math.nan
    mean, z, energy = _centered_energy(grads)
    if not torch.isfinite(energy):  # a NaN or Inf anywhere makes the energy non-finite
        return "non-finite", math.nan
    if _uncentered(mean, z.shape[0], energy) == 0:
        return "zero", math.nan
    if _is_flat(grads, mean, energy):  # the one test of flatness, as autocorrelation's
        return "flat", 1.0
    n = z.shape[0]
    return "measured", (torch.dot(z[: n - 1].reshape(-1), z[1:].reshape(-1)).double() / energy).item()


def autocorrelation(grads: torch.Tensor, max_lag: int = 1) -> torch.Tensor:
    """Autocorrelation of gradients along the probe, lags 0..``max_lag``.

    ``z_i = g_i - mean_i g``; ``ACF(k) = sum_i <z_i, z_{i+k}> / sum_i <z_i, z_i>``. For 1-D
    inputs this is exactly the paper's ACF. If the centered energy is negligible against the
    uncentered one (below ``(1e4 * finfo(dtype).eps)^2`` of it: all gradients equal up to
    round-off, e.g. an LL net at init) every lag is 1.0, never NaN; non-finite gradients and
    gradients that are zero everywhere (nothing to correlate) give NaN.

    Returns:
        float64 tensor of shape ``(max_lag + 1,)``; entry 0 is 1.
    """
    mean, z, energy = _centered_energy(grads)
    n = z.shape[0]
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag={max_lag} must be in [0, {n - 1}] for {n} points")
    if not torch.isfinite(energy) or _uncentered(mean, n, energy) == 0:  # NaN/Inf, or no gradient at all
        return torch.full((max_lag + 1,), math.nan, dtype=torch.float64)
    if _is_flat(grads, mean, energy):
        return torch.ones(max_lag + 1, dtype=torch.float64)
    lagged = [torch.dot(z[: n - k].reshape(-1), z[k:].reshape(-1)).double() / energy for k in range(1, max_lag + 1)]
    return torch.stack([torch.ones((), dtype=torch.float64), *lagged])


def neighbor_correlation(grads: torch.Tensor) -> torch.Tensor:
    """``ACF(1)``: correlation of gradients at neighbouring probe points (1 = smooth, 0 = white noise)."""
    return autocorrelation(grads, max_lag=1)[1]


def gradient_covariance(grads: torch.Tensor) -> torch.Tensor:
    """The paper's covariance image: ``|Z Z^T|`` of centered gradients, scaled to a maximum of 1.

    Returns:
        ``(n, n)`` float64 tensor in [0, 1] (all zeros if the gradients do not vary).
    """
    _, z, _ = _centered(grads)
    z = z.double()
    cov = (z @ z.T).abs()
    top = cov.max()
    return cov / top if top > 0 else cov


def singular_values(matrix: torch.Tensor) -> torch.Tensor:
    """The float64 singular values of ``matrix`` ``(n, ...)`` flattened to ``(n, D)``, largest first (NaN if it
    is not finite): compute them once and hand them to :func:`effective_rank` and :func:`stable_rank`.

    A float64 matrix gets an SVD. Any other dtype gets the square roots of the eigenvalues of its float64 Gram
    matrix (the smaller of ``A A^T`` and ``A^T A``): products of float32 values are exact in float64, so the
    values are accurate to about ``1e-8`` of the largest, far below the float32 rank tolerance of
    :func:`effective_rank` (``~1e-7 * max(n, D)``), at a tenth of an SVD's cost on a probe's gradients.
    """
    if matrix.dim() < 2:
        raise ValueError(f"expected a matrix (n, ...), got shape {tuple(matrix.shape)}")
    flat = matrix.reshape(matrix.shape[0], -1)
    if not torch.isfinite(flat).all():
        return torch.full((min(flat.shape),), math.nan, dtype=torch.float64)
    if flat.dtype == torch.float64:
        return torch.linalg.svdvals(flat)
    flat = flat.to(torch.float64)
    gram = flat @ flat.T if flat.shape[0] <= flat.shape[1] else flat.T @ flat
    return torch.linalg.eigvalsh(gram).clamp_(min=0).sqrt_().flip(0)


def effective_rank(
    matrix: torch.Tensor, eps: float | None = None, singular: torch.Tensor | None = None
) -> torch.Tensor:
    """Effective rank of Roy & Vetterli (2007): ``exp(H(p))``, ``p = s / sum(s)`` over singular values ``s``.

    ``matrix`` is ``(n, ...)``, flattened to ``(n, D)`` and not centered. Convention: singular
    values at or below ``eps * max(s)`` are treated as exact zeros (``0 log 0 = 0``), so
    round-off does not add rank. The default ``eps`` is numpy's ``matrix_rank`` tolerance,
    ``finfo(matrix.dtype).eps * max(n, D)``. A zero matrix has effective rank 0. ``singular``: its
    :func:`singular_values`, if already computed.
    """
    if eps is None:
        dtype = matrix.dtype if matrix.is_floating_point() else torch.float64
        eps = torch.finfo(dtype).eps * max(matrix.shape[0], matrix[0].numel())
    s = singular_values(matrix) if singular is None else singular
    if torch.isnan(s).any():
        return torch.tensor(math.nan, dtype=torch.float64)
    if s.numel() == 0 or s.max() <= 0:
        return torch.tensor(0.0, dtype=torch.float64)
    s = s[s > eps * s.max()]
    p = s / s.sum()
    return torch.exp(-(p * p.log()).sum())


def stable_rank(matrix: torch.Tensor, singular: torch.Tensor | None = None) -> torch.Tensor:
    """Stable rank ``||A||_F^2 / ||A||_2^2`` of the ``(n, D)`` matrix (0 for a zero matrix); ``singular``: its
    :func:`singular_values`, if already computed."""
    s = singular_values(matrix) if singular is None else singular
    if torch.isnan(s).any():
        return torch.tensor(math.nan, dtype=torch.float64)
    if s.numel() == 0 or s.max() == 0:
        return torch.tensor(0.0, dtype=torch.float64)
    return s.pow(2).sum() / s.max().pow(2)


def spectral_slope(grads: torch.Tensor) -> torch.Tensor:
    """Exponent ``beta`` of the power spectrum ``P(f) ~ f^-beta`` of the gradients along the probe.

    The centered gradients are Fourier-transformed along the path, the power is averaged
    over the remaining dimensions, and ``beta`` is the least-squares slope of ``-log P``
    against ``log f`` over the non-zero frequencies. White noise gives ~0, brown noise ~2;
    gradients constant up to round-off (see :func:`autocorrelation`) give NaN (no spectrum).
    """
    _, z, flat = _centered(grads)
    if flat:
        return torch.tensor(math.nan, dtype=torch.float64)
    # the transform in the working dtype (a float64 copy triples its cost), the average over dimensions in float64
    power = torch.fft.rfft(z, dim=0).abs().pow(2).mean(dim=1, dtype=torch.float64)[1:]
    freqs = torch.arange(1, power.shape[0] + 1, dtype=torch.float64, device=power.device)
    keep = power > 0
    if keep.sum() < 2 or not torch.isfinite(power).all():
        return torch.tensor(math.nan, dtype=torch.float64)
    _, slope, _ = _fit_line(freqs[keep].log(), power[keep].log())
    return torch.tensor(-slope, dtype=torch.float64)


def gradient_statistics(grads: torch.Tensor) -> dict[str, float]:
    """Every statistic of one probe's gradients ``(n, ...)``: the one place the monitor and the CLI compute them.

    Returns:
        ``neighbor_corr``, ``effective_rank``, ``stable_rank`` and ``spectral_slope`` (NaN for
        a flat gradient, which has no spectrum; see :func:`spectral_slope`), as Python floats.
    """
    singular = singular_values(grads)
    return {
        "neighbor_corr": neighbor_correlation(grads).item(),
        "effective_rank": effective_rank(grads, singular=singular).item(),
        "stable_rank": stable_rank(grads, singular=singular).item(),
        "spectral_slope": spectral_slope(grads).item(),
    }


def endpoint_cosine(ends: torch.Tensor) -> torch.Tensor:
    """The forward kernel of one line: the cosine similarity of a signal (a block's output, the network's
    output) at the line's two endpoints, ``ends`` of shape ``(2, ...)``, flattened, in float64.

    It is the "C map" of signal-propagation theory (Poole et al. 2016; Schoenholz et al. 2017; DKS/TAT):
    how close a network maps two inputs. 1 means one direction (the inputs are no longer told apart),
    the input's own cosine means the geometry is kept. Uncentered, as the theory's. NaN where either
    endpoint's signal is zero or not finite.
    """
    if ends.dim() == 0 or ends.shape[0] != 2:
        raise ValueError(f"need a line's two endpoints, shape (2, ...), got {tuple(ends.shape)}")
    flat = ends.reshape(2, -1).to(torch.float64)
    # one product gives both squared norms and the dot product (a measurement reads every block of every line)
    (aa, ab), (_, bb) = (flat @ flat.T).tolist()
    norms = math.sqrt(aa) * math.sqrt(bb)
    if not math.isfinite(norms) or norms == 0:
        return torch.tensor(math.nan, dtype=torch.float64)
    return torch.tensor(ab / norms, dtype=torch.float64)


def _fit_line(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """Least squares y = a + b x (``torch.linalg.lstsq``); returns (a, b, R^2)."""
    design = torch.stack([torch.ones_like(x), x], dim=1)
    a, b = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.flatten().tolist()
    ss_tot = (y - y.mean()).pow(2).sum()
    ss_res = (y - a - b * x).pow(2).sum()
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else torch.tensor(1.0, dtype=torch.float64)
    return a, b, float(r2)
