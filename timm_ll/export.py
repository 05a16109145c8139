"""Trained weights in timm's own sharing format: a folder of ``config.json`` + ``model.safetensors`` (+ a card).

timm (>= 1.0.16) loads such a folder with ``timm.create_model("local-dir:<folder>", pretrained=True)``,
and the same files on the Hugging Face Hub with ``hf-hub:<owner>/<name>``; with timm-ll installed, its
models load that way in a program that never imports ``timm_ll`` (the install's import hook registers
them when timm is imported). timm's own ``save_for_hf`` writes the files; this module only adds the
model card and reads a ``timm-ll train`` (Lightning) checkpoint without importing Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

__all__ = ["save_pretrained", "export_checkpoint", "model_from_checkpoint"]


# config.json's key for what is known of the training run (timm reads the file's other keys and ignores this one)
RESULTS_KEY = "timm_ll"


def save_pretrained(
    model: nn.Module,
    folder: str | Path,
    *,
    model_args: dict[str, Any] | None = None,
    model_card: str | None = None,
    results: dict[str, Any] | None = None,
) -> Path:
    """Write ``model`` into ``folder`` as timm shares weights: ``model.safetensors``, ``config.json``
    (``architecture``: the registered name, ``num_classes``, ``pretrained_cfg``, ``model_args``) and, if
    given, ``model_card`` as ``README.md``. Returns the folder.

    Args:
        model: a timm model (created by its registered name; compiled in place is fine).
        model_args: creation arguments beyond the registered name's (e.g. ``{"depth": 80}``); timm records
            the ones the factory saw, these are added.
        results: what is known of the run (e.g. ``{"test_accuracy": 0.78, "data": "CIFAR-10"}``), written
            into ``config.json`` under ``"timm_ll"``.
    """
    import json

    from timm.models import save_for_hf

    folder = Path(folder)
    network = getattr(model, "_orig_mod", model)
    save_for_hf(network, str(folder), model_args=model_args or None, safe_serialization=True)
    if results:
        config_path = folder / "config.json"
        config = json.loads(config_path.read_text())
        config[RESULTS_KEY] = results
        config_path.write_text(json.dumps(config, indent=2))
    if model_card is not None:
        (folder / "README.md").write_text(model_card)
    return folder


def model_from_checkpoint(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a ``timm-ll train`` checkpoint (a Lightning ``.ckpt`` of ``ImageClassifier``), with
    its weights, and the checkpoint's hyperparameters (``model_name``, ``num_classes``, ``recipe``,
    ``model_kwargs``, ...) with its ``global_step`` (the optimizer steps taken when it was written). Lightning
    is not imported: the file is read with ``torch.load``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"checkpoint {str(path)!r} does not exist: pass the .ckpt that timm-ll train wrote "
            "(<log_dir>/checkpoints/last.ckpt)"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    hparams = checkpoint.get("hyper_parameters") or {}
    if "model_name" not in hparams or "state_dict" not in checkpoint:
        raise ValueError(
            f"{path} is not a timm-ll train checkpoint (no hyper_parameters.model_name or state_dict); for other "
            "checkpoints create the model yourself and call timm_ll.export.save_pretrained(model, folder)"
        )
    model = timm.create_model(
        hparams["model_name"], num_classes=hparams.get("num_classes", 10), **(hparams.get("model_kwargs") or {})
    )
    state = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}  # a network compiled in place
    model.load_state_dict(state)
    return model.eval(), {**hparams, "global_step": checkpoint.get("global_step")}


def export_checkpoint(
    checkpoint: str | Path,
    folder: str | Path,
    model_card: str | None = None,
    *,
    test_accuracy: float | None = None,
    data: str | None = None,
) -> Path:
    """Write the network of a ``timm-ll train`` checkpoint into ``folder`` in timm's format (see
    :func:`save_pretrained`); the card defaults to one made from the checkpoint's hyperparameters and, where
    given, the run's ``test_accuracy`` (a fraction) on ``data``, which also go into ``config.json``."""
    if test_accuracy is not None and not 0.0 <= test_accuracy <= 1.0:
        raise ValueError(f"test_accuracy={test_accuracy}: give the run's accuracy as a fraction in [0, 1]")
    model, hparams = model_from_checkpoint(checkpoint)
    card = model_card or card_text(
        hparams["model_name"],
        recipe=hparams.get("recipe"),
        data=data,
        test_acc=test_accuracy,
        steps=hparams["global_step"],
        source=Path(checkpoint).name,
    )
    results = {key: value for key, value in (("test_accuracy", test_accuracy), ("data", data)) if value is not None}
    return save_pretrained(
        model, folder, model_args=hparams.get("model_kwargs") or None, model_card=card, results=results or None
    )


def card_text(
    architecture: str,
    *,
    recipe: dict[str, Any] | None = None,
    data: str | None = None,
    test_acc: float | None = None,
    steps: int | None = None,
    shattering: dict[str, float] | None = None,
    source: str | None = None,
) -> str:
    """A model card (``README.md``) in the Hugging Face layout: front matter, then what is known of the run."""
    lines = [
        "---",
        "library_name: timm",
        "license: apache-2.0",
        "tags:",
        "- image-classification",
        "- timm",
        "- timm-ll",
        "---",
        f"# {architecture}",
        "",
        f"A `{architecture}` network from timm-ll (looks-linear skip-free nets, Balduzzi et al. 2017, "
        "arXiv:1702.08591), trained with `timm-ll train`.",
        "",
        "```python",
        "import timm  # with timm-ll installed; no import of timm_ll needed",
        "",
        'model = timm.create_model("local-dir:<this folder>", pretrained=True)',
        "```",
        "",
    ]
    facts = []
    if data is not None:
        facts.append(f"- data: {data}")
    if steps is not None:
        facts.append(f"- optimizer steps: {steps}")
    if test_acc is not None:
        facts.append(f"- test accuracy: {100 * test_acc:.2f}%")
    if recipe:
        facts.append("- recipe: " + ", ".join(f"{k}={v}" for k, v in recipe.items()))
    if shattering:
        shown = ", ".join(f"{k.split('/', 1)[-1]} {v:.3f}" for k, v in shattering.items() if "/neighbor_corr/" not in k)
        facts.append(f"- shattering at the end of training (ShatteringMonitor): {shown}")
    if source is not None:
        facts.append(f"- exported from: {source}")
    return "\n".join(lines + (["## Training", "", *facts, ""] if facts else []))
