"""Probes and readouts: the inputs a measurement runs on and the scalar it differentiates."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["Readout", "line_probe", "RandomProjectionReadout", "random_projection_readout"]

Readout = Callable[[torch.Tensor], torch.Tensor]


def line_probe(x0: torch.Tensor, x1: torch.Tensor, num_points: int = 256) -> torch.Tensor:
    """``num_points`` evenly spaced inputs on the segment from ``x0`` to ``x1`` (both included).

    The paper's probe is the 1-D grid of 256 points on [-2, 2]: ``line_probe(tensor([-2.]),
    tensor([2.]))``. For images, ``x0`` and ``x1`` are two samples of shape (C, H, W).

    Returns:
        A tensor of shape ``(num_points, *x0.shape)``, ordered along the path.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"line_probe needs endpoints of one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if num_points < 2:
        raise ValueError(f"num_points={num_points}: a line probe needs at least 2 points")
    if not (x0.is_floating_point() and x1.is_floating_point()):
        raise TypeError(
            f"line_probe interpolates between inputs and needs floating tensors, got {x0.dtype}; for integer "
            "inputs such as token ids, probe a layer's output instead (blocks=['<embedding module>'])"
        )
    t = torch.linspace(0.0, 1.0, num_points, device=x0.device, dtype=x0.dtype).view(-1, *([1] * x0.dim()))
    return x0.unsqueeze(0) + t * (x1 - x0).unsqueeze(0)


class RandomProjectionReadout:
    """A class-agnostic scalar readout: the output projected on a fixed random unit vector.

    The vector depends only on ``seed`` and the output size (drawn from a private generator:
    the global RNG is never touched), so every call and every process uses the same one.
    A class rather than a closure so that it pickles (``ddp_spawn``, checkpoints).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        flat = output.reshape(output.shape[0], -1)
        key = (flat.shape[1], flat.device, flat.dtype)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(self.seed)
            u = torch.randn(flat.shape[1], generator=generator, dtype=torch.float64)
            self._cache[key] = (u / u.norm()).to(device=flat.device, dtype=flat.dtype)
        return flat @ self._cache[key]


def random_projection_readout(seed: int = 0) -> Readout:
    """The default readout: :class:`RandomProjectionReadout` with ``seed``."""
    return RandomProjectionReadout(seed)
