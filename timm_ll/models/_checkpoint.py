"""Checkpoint loading shared by every timm_ll family: Lightning/compile prefixes and clear shape errors."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

# Prefixes that wrappers put in front of a model's own keys: a LightningModule holding the net as
# ``self.model``, torch.compile's ``_orig_mod``, DataParallel/DDP's ``module`` (timm strips that one too).
_WRAPPER_PREFIXES = ("model.", "_orig_mod.", "module.", "net.")


def _strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor], expected: set[str]) -> dict[str, torch.Tensor]:
    state = dict(state_dict)
    changed = True
    while changed and not (expected & state.keys()):
        changed = False
        for prefix in _WRAPPER_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix) :]: v for k, v in state.items()}
                changed = True
                break
    if not (expected & state.keys()):
        # a LightningModule may hold more than the net (a loss with buffers, metrics): keep the net's keys
        for prefix in _WRAPPER_PREFIXES:
            picked = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if expected & picked.keys():
                return picked
    return state


def checkpoint_filter_fn(state_dict: Mapping[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Adapt a checkpoint to ``model`` for timm's ``load_pretrained`` and name any layer that does not fit.

    Accepts a plain state dict, a timm/torch checkpoint (timm already unwrapped ``state_dict``),
    or a Lightning ``.ckpt`` state dict whose keys carry the ``model.`` prefix of the
    LightningModule attribute holding the net.

    Raises:
        ValueError: a tensor's shape differs from the model's (the message names the layer
            and both shapes), or no key of the checkpoint belongs to this model.
    """
    own = model.state_dict()
    state = _strip_wrapper_prefixes(state_dict, set(own))
    if not (set(own) & state.keys()):
        sample = ", ".join(sorted(state)[:3])
        raise ValueError(
            f"none of the checkpoint's keys (e.g. {sample}) belong to {type(model).__name__}; "
            "was it saved from another architecture, or under a prefix other than "
            f"{', '.join(p.rstrip('.') for p in _WRAPPER_PREFIXES)}?"
        )
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    classifier = cfg.get("classifier", "fc")
    # timm drops the checkpoint's head itself when the model asks for another number of classes
    head_replaced = getattr(model, "num_classes", None) != cfg.get("num_classes")
    for key, tensor in state.items():
        if head_replaced and key.startswith(f"{classifier}."):
            continue
        if key in own and own[key].shape != tensor.shape:
            hint = (
                "the checkpoint was trained for another number of classes: pass num_classes to match it, or "
                "pretrained_cfg_overlay=dict(file=..., num_classes=<checkpoint's>) to let timm drop the old head"
                if key.startswith(f"{classifier}.")
                else "was it saved from another family, depth, width or in_chans?"
            )
            raise ValueError(
                f"checkpoint layer {key!r} has shape {tuple(tensor.shape)} but the model expects "
                f"{tuple(own[key].shape)}: {hint}"
            )
    return state


def check_pretrained_file(pretrained: bool, kwargs: dict[str, Any]) -> None:
    """Name a missing local weights file before timm raises its bare ``FileNotFoundError`` (and mark a folder
    as one to load the way ``local-dir:`` does, in ``kwargs``).

    Our models have no hub weights: ``pretrained=True`` loads the ``file`` given through
    ``pretrained_cfg_overlay`` (or a ``pretrained_cfg`` dict): a file, or a folder in timm's sharing
    format (``config.json`` + ``model.safetensors``, which ``local-dir:`` names this way).
    """
    if not pretrained:
        return
    for key in ("pretrained_cfg_overlay", "pretrained_cfg"):
        cfg = kwargs.get(key)
        file = cfg.get("file") if isinstance(cfg, Mapping) else None
        if file and os.path.isdir(file) and isinstance(cfg, dict) and not cfg.get("source"):
            # a folder in timm's format: timm loads it as it loads local-dir:<folder>
            kwargs[key] = dict(cfg, source="local-dir")  # type: ignore[index]
        elif file and not os.path.exists(file):
            raise FileNotFoundError(
                f"{key} file {str(file)!r} does not exist: pass the path of a state dict, a timm checkpoint, a "
                "Lightning .ckpt (timm-ll train writes <log_dir>/checkpoints/last.ckpt) or a folder in timm's "
                "format (timm-ll train writes <log_dir>/timm/)"
            )
