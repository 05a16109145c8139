"""The recipe studies' validation run (``recipe_sweep.py``, ``ll_gap.py``): train on part of the training split
and score on a held-out part of it, so that a recipe is chosen without looking at the test set."""

from __future__ import annotations

import time
from typing import Any

from timm_ll.app.data import ImageData
from timm_ll.app.recipe import Recipe
from timm_ll.app.reporting import machine, provenance
from timm_ll.app.training import fit_and_test

__all__ = ["validation_run"]


def validation_run(
    model_name: str,
    train: ImageData,
    val: ImageData,
    *,
    max_steps: int,
    recipe: Recipe,
    out_dir: str,
    seed: int = 0,
    callbacks: list[Any] | None = None,
) -> dict[str, Any]:
    """Train on ``train`` and score on ``val``, held-out *training* images (a recipe is chosen without
    the test set); the monitor is off. Returns a study's row fields: ``val_error``, ``steps``,
    ``train_images``, ``val_images``, ``seconds`` (training and scoring) and ``machine``."""

    start = time.perf_counter()
    result = fit_and_test(
        model_name,
        train,
        val,
        max_steps=max_steps,
        recipe=recipe,
        out_dir=out_dir,
        monitor_every=None,
        progress=False,
        seed=seed,
        callbacks=callbacks,
    )
    return dict(
        val_error=1 - result.test_acc,
        steps=result.steps,
        train_images=len(train),
        val_images=len(val),
        seconds=round(time.perf_counter() - start, 1),
        machine=machine(),
        provenance=provenance(),
    )
