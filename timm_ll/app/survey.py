"""Measure models at initialization: the library function behind ``timm-ll shatter`` and the zoo surveys.

One model at a time, created by its registered name, measured by the framework-free
:class:`~lightning_callbacks.ShatteringMeasurer` on one line between two real images (normalized
as the model's ``pretrained_cfg`` asks, resized to its input size).
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F

from lightning_callbacks import ShatteringMeasurer
from lightning_callbacks.functional import line_probe
from timm_ll.app.data import ImageData

__all__ = ["measure_at_init", "probe_images"]


def probe_images(data: ImageData, input_size: tuple[int, int, int], mean: Any, std: Any, seed: int) -> torch.Tensor:
    """Two distinct images of ``data`` (picked by ``seed``) as the model takes them: ``(2, C, H, W)``."""
    gen = torch.Generator().manual_seed(seed)
    first, second = torch.randperm(len(data), generator=gen)[:2].tolist()
    images = data.images[[first, second]].float().div(255)
    channels, height, width = input_size
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).repeat(1, channels, 1, 1)
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    mean_t = torch.tensor(mean[:channels] if len(mean) >= channels else [mean[0]] * channels).view(1, -1, 1, 1)
    std_t = torch.tensor(std[:channels] if len(std) >= channels else [std[0]] * channels).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def measure_at_init(
    name: str,
    data: ImageData,
    *,
    num_points: int = 128,
    bn_mode: str = "eval",
    dtype: str = "auto",
    seed: int = 0,
    **model_kwargs: Any,
) -> tuple[dict[str, Any], torch.Tensor]:
    """Create ``name`` at init (seeded, with ``model_kwargs``) and measure it on a ``num_points`` line between
    two images of ``data``; returns ``(row, input gradients along the line)``.

    The row has ``model``, ``architecture``, ``input_size``, ``dtype`` and the statistics
    ``neighbor_corr``, ``effective_rank``, ``stable_rank``, ``spectral_slope`` (NaN for a flat gradient,
    which has no spectrum). ``dtype="auto"`` measures looks-linear models in float64 (their exact
    cancellation leaves ~1e-3 relative round-off in float32 at depth 56+), the rest in float32.
    """
    torch.manual_seed(seed)
    model = timm.create_model(name, **model_kwargs)
    looks_linear = getattr(model, "looks_linear", False)  # CifarNet and SkipFreeResNet both say
    resolved = (torch.float64 if looks_linear else torch.float32) if dtype == "auto" else getattr(torch, dtype)
    model = model.to(resolved)
    cfg = model.pretrained_cfg
    ends = probe_images(data, cfg["input_size"], cfg["mean"], cfg["std"], seed).to(resolved)
    probe = line_probe(ends[0], ends[1], num_points)
    # bound memory on large inputs (224x224 timm models): samples are independent in eval mode
    chunk = max(1, (2**22) // probe[0].numel()) if bn_mode == "eval" else None
    measurer = ShatteringMeasurer(model, probe=probe, layers=None, bn_mode=bn_mode, chunk_size=chunk)
    measurer.record(ends)  # the model is called as model(images)
    result = measurer.measure(0)
    statistics = {key: result.statistics.get(key, (float("nan"), 0.0))[0] for key in _STATISTICS}
    row = dict(
        model=name,
        architecture=cfg.get("architecture", name),
        input_size=list(cfg["input_size"]),
        dtype=str(resolved).removeprefix("torch."),
        **statistics,
    )
    return row, result.gradients


_STATISTICS = ("neighbor_corr", "effective_rank", "stable_rank", "spectral_slope")
