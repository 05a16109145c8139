"""Any timm model with the recipe, as a LightningModule: cross-entropy steps that log loss and accuracy."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning.pytorch as L
import timm
import torch
import torch.nn.functional as F

from timm_ll.app.recipe import Recipe, optimizer_and_schedule

__all__ = ["ImageClassifier"]


class ImageClassifier(L.LightningModule):
    """Any timm model (by name) with the CIFAR recipe; ``self.model`` is the timm network.

    Args:
        model_name: a timm model name, e.g. ``"ll_plain56"`` or ``"resnet18"``.
        num_classes: classifier outputs.
        recipe: optimization settings.
        max_steps: length of the LR schedule (the Trainer's ``max_steps``).
        channels_last: use the channels-last memory format (faster convs on GPUs).
        model_kwargs: extra ``timm.create_model`` arguments.
        compile: compile the network in place (``self.model.compile()``): the steps' logging stays
            eager, the checkpoint keys stay timm's, and the ShatteringMonitor measures it eagerly.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 10,
        recipe: Recipe | None = None,
        max_steps: int = 1000,
        channels_last: bool = False,
        model_kwargs: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> None:
        super().__init__()
        self.recipe = recipe or Recipe()
        self.save_hyperparameters(
            dict(
                model_name=model_name,
                num_classes=num_classes,
                recipe=asdict(self.recipe),
                max_steps=max_steps,
                model_kwargs=model_kwargs or {},
            )
        )
        self.model = timm.create_model(model_name, num_classes=num_classes, **(model_kwargs or {}))
        self.max_steps, self.channels_last = max_steps, channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:
            self.model.compile()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of normalized float images (N, C, H, W); the DataModule normalizes and augments."""
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=self.recipe.label_smoothing)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", (logits.argmax(1) == labels).float().mean())
        return loss

    def _evaluate(self, batch: Any, stage: str) -> None:
        images, labels = batch
        logits = self(images)
        self.log(f"{stage}/loss", F.cross_entropy(logits, labels), sync_dist=True)
        self.log(f"{stage}/acc", (logits.argmax(1) == labels).float().mean(), prog_bar=True, sync_dist=True)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer, scheduler = optimizer_and_schedule(self.recipe, self.parameters(), self.max_steps)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=scheduler, interval="step"))
