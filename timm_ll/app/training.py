"""A sound CIFAR-style training recipe for any timm model: the training app's public names in one place.

SGD (momentum 0.9, Nesterov, weight decay 5e-4 on weights only), one-cycle or cosine LR, random crop
(4-pixel padding) and horizontal flip done on the device on uint8 tensors held in memory, optional label
smoothing. Used by ``timm-ll train`` and ``examples/depth_sweep.py``. Each concern has a module of its own:

- :mod:`timm_ll.app.recipe`: the settings, the optimizer and the LR schedule;
- :mod:`timm_ll.app.datamodule`: the class-balanced split, the augmentation, the DataModule;
- :mod:`timm_ll.app.classifier`: the LightningModule;
- :mod:`timm_ll.app.run`: one run (the Trainer, fit, test, export, resuming);
- :mod:`timm_ll.app.run_logs`: its loggers and training curves.

``validation_run`` moved beside the two recipe studies that use it (``examples/validation.py``); the name
here is deprecated (:mod:`timm_ll.deprecations`).
"""

from __future__ import annotations

from typing import Any

from timm_ll.app.classifier import ImageClassifier
from timm_ll.app.datamodule import (
    ImageSourceDataModule,
    InMemoryImages,
    balanced_split,
    balanced_subset,
    random_crop_flip,
)
from timm_ll.app.recipe import Recipe, optimizer_and_schedule
from timm_ll.app.run import ResumableRun, TrainResult, fit_and_test
from timm_ll.app.run_logs import keep_earlier_metrics, run_loggers, training_curves

__all__ = [
    "Recipe",
    "optimizer_and_schedule",
    "ImageClassifier",
    "InMemoryImages",
    "ImageSourceDataModule",
    "random_crop_flip",
    "balanced_subset",
    "balanced_split",
    "fit_and_test",
    "TrainResult",
    "ResumableRun",
    "training_curves",
    "keep_earlier_metrics",
    "run_loggers",
]


def __getattr__(name: str) -> Any:
    if name == "validation_run":
        return _validation_run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _validation_run(model_name: str, train: Any, val: Any, **run: Any) -> dict[str, Any]:
    """Deprecated: train on ``train``, score on ``val`` (held-out training images), monitor off; a study's row
    fields. Moved beside the recipe studies that use it (``examples/validation.py``); kept here, whole, while
    the old name is deprecated, because the package cannot import the repository's examples."""
    import time

    import timm_ll.app.run as run_module  # looked up at the call: a test may stand in for fit_and_test
    from timm_ll.app.reporting import machine, provenance
    from timm_ll.deprecations import warn_moved

    warn_moved("timm_ll.app.training.validation_run", "examples/validation.py's validation_run", stacklevel=3)
    start = time.perf_counter()
    result = run_module.fit_and_test(model_name, train, val, monitor_every=None, progress=False, **run)
    return dict(
        val_error=1 - result.test_acc,
        steps=result.steps,
        train_images=len(train),
        val_images=len(val),
        seconds=round(time.perf_counter() - start, 1),
        machine=machine(),
        provenance=provenance(),
    )
