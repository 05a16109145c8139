"""A sound CIFAR-style training recipe for any timm model, as a LightningModule and DataModule.

SGD (momentum 0.9, Nesterov, weight decay 5e-4 on weights only), one-cycle or cosine LR,
random crop (4-pixel padding) and horizontal flip done on the device on uint8 tensors held
in memory, optional label smoothing. Used by ``timm-ll train`` and ``examples/depth_sweep.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import lightning.pytorch as L
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from timm_ll.data import ImageData

__all__ = [
    "Recipe",
    "ImageClassifier",
    "InMemoryImages",
    "ImageSourceDataModule",
    "random_crop_flip",
    "balanced_subset",
    "fit_and_test",
]


@dataclass
class Recipe:
    """Optimization settings (defaults: the He et al. 2016 CIFAR recipe with a one-cycle schedule)."""

    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = True
    schedule: Literal["onecycle", "cosine"] = "onecycle"
    label_smoothing: float = 0.0
    warmup_fraction: float = 0.15

    def __post_init__(self) -> None:
        if self.schedule not in ("onecycle", "cosine"):
            raise ValueError(f"schedule={self.schedule!r}: use 'onecycle' or 'cosine'")
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(f"label_smoothing={self.label_smoothing}: use a value in [0, 1)")


def random_crop_flip(images: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, batched on the images' device."""
    n, _, h, w = images.shape
    device = images.device
    padded = F.pad(images, (padding, padding, padding, padding)).permute(0, 2, 3, 1)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), device=device)
    rows = (dy + torch.arange(h, device=device))[:, :, None]
    cols = (dx + torch.arange(w, device=device))[:, None, :]
    out = padded[torch.arange(n, device=device)[:, None, None], rows, cols].permute(0, 3, 1, 2)
    flip = torch.rand(n, device=device) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def balanced_subset(data: ImageData, size: int, seed: int = 0) -> ImageData:
    """A fixed, class-balanced subset of ``size`` images (``size // classes`` per class)."""
    if size >= len(data):
        return data
    per_class = size // len(data.classes)
    gen = torch.Generator().manual_seed(seed)
    picks = []
    for label in range(len(data.classes)):
        members = (data.labels == label).nonzero().flatten()
        picks.append(members[torch.randperm(len(members), generator=gen)[:per_class]])
    index = torch.cat(picks).sort().values
    return ImageData(data.images[index], data.labels[index], data.classes)


class InMemoryImages(L.LightningDataModule):
    """uint8 images held in memory; batches stay uint8 until they reach the device."""

    def __init__(
        self, train: ImageData | None, test: ImageData | None, batch_size: int = 128, num_workers: int = 0
    ) -> None:
        super().__init__()
        self.batch_size, self.num_workers = batch_size, num_workers
        self.train_data = self.test_data = None
        if train is not None and test is not None:
            self._set_data(train, test)

    def _set_data(self, train: ImageData, test: ImageData) -> None:
        if train.classes != test.classes:
            raise ValueError(f"train and test classes differ: {train.classes} vs {test.classes}")
        self.train_data, self.test_data = train, test

    def train_dataloader(self) -> DataLoader:
        data = TensorDataset(self.train_data.images, self.train_data.labels)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self) -> DataLoader:
        data = TensorDataset(self.test_data.images, self.test_data.labels)
        return DataLoader(data, batch_size=2 * self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()


class ImageSourceDataModule(InMemoryImages):
    """:class:`InMemoryImages` loaded by name or path (see :func:`timm_ll.data.load_source`) in ``setup``.

    Configurable from a LightningCLI config: ``data: {source: digits, batch_size: 128}``.
    """

    def __init__(
        self, source: str = "digits", batch_size: int = 128, train_subset: int | None = None, num_workers: int = 0
    ) -> None:
        super().__init__(None, None, batch_size=batch_size, num_workers=num_workers)
        self.source, self.train_subset = source, train_subset

    def setup(self, stage: str) -> None:
        if self.train_data is None:
            from timm_ll.data import load_source

            train = load_source(self.source, "train")
            if self.train_subset:
                train = balanced_subset(train, self.train_subset)
            self._set_data(train, load_source(self.source, "test"))


class ImageClassifier(L.LightningModule):
    """Any timm model (by name) with the CIFAR recipe; ``self.model`` is the timm network.

    Args:
        model_name: a timm model name, e.g. ``"ll_plain56"`` or ``"resnet18"``.
        num_classes: classifier outputs.
        recipe: optimization settings.
        max_steps: length of the LR schedule (the Trainer's ``max_steps``).
        augment: random crop + flip on the device during training.
        channels_last: use the channels-last memory format (faster convs on GPUs).
        model_kwargs: extra ``timm.create_model`` arguments.
    """

    def __init__(
        self,
        model_name: str,
        num_classes: int = 10,
        recipe: Recipe | None = None,
        max_steps: int = 1000,
        augment: bool = True,
        channels_last: bool = False,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.recipe = recipe or Recipe()
        self.save_hyperparameters(
            dict(
                model_name=model_name,
                num_classes=num_classes,
                recipe=asdict(self.recipe),
                max_steps=max_steps,
                augment=augment,
                model_kwargs=model_kwargs or {},
            )
        )
        self.model = timm.create_model(model_name, num_classes=num_classes, **(model_kwargs or {}))
        cfg = self.model.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, -1, 1, 1) * 255, persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, -1, 1, 1) * 255, persistent=False)
        self.max_steps, self.augment, self.channels_last = max_steps, augment, channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of normalized float images (N, C, H, W)."""
        return self.model(x)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        images, labels = batch
        if images.dtype == torch.uint8:  # normalize (and augment) on the device
            images = images.float()
            if self.trainer.training and self.augment:
                images = random_crop_flip(images)
            images = (images - self.mean) / self.std
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
        return images, labels

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
        r = self.recipe
        decay = [p for p in self.parameters() if p.ndim > 1]
        no_decay = [p for p in self.parameters() if p.ndim <= 1]  # norm scales and biases: no weight decay
        optimizer = torch.optim.SGD(
            [dict(params=decay, weight_decay=r.weight_decay), dict(params=no_decay, weight_decay=0.0)],
            lr=r.lr,
            momentum=r.momentum,
            nesterov=r.nesterov,
        )
        if r.schedule == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer,
                max_lr=r.lr,
                total_steps=self.max_steps + 1,
                pct_start=r.warmup_fraction,
                anneal_strategy="cos",
                div_factor=10.0,
                final_div_factor=100.0,
                cycle_momentum=False,
            )
        else:
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_steps)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=scheduler, interval="step"))


@dataclass
class TrainResult:
    """What one training run produced."""

    model: str
    test_acc: float
    test_loss: float
    steps: int
    seconds: float
    params: int
    log_dir: str
    checkpoint: str | None


def fit_and_test(
    model_name: str,
    train: ImageData,
    test: ImageData,
    *,
    max_steps: int,
    batch_size: int = 128,
    recipe: Recipe | None = None,
    out_dir: str = "timm-ll-runs",
    accelerator: str = "auto",
    precision: str | None = None,
    monitor_every: int | None = 500,
    val_every_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    run_name: str | None = None,
) -> TrainResult:
    """Train ``model_name`` for ``max_steps`` with the recipe, then report accuracy on ``test``.

    Logs to CSV and TensorBoard under ``out_dir/<run_name>`` (default: the model name; pass
    e.g. ``ll_plain80`` when ``model_kwargs`` change the depth), checkpoints the last step, and
    runs the ShatteringMonitor every ``monitor_every`` steps (None: off). On a GPU it trains in
    ``bf16-mixed`` with channels-last unless ``precision`` says otherwise.
    """
    import time

    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    from lightning_callbacks import ShatteringMonitor

    L.seed_everything(seed, verbose=False)
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    precision = precision or ("bf16-mixed" if on_gpu else "32-true")
    module = ImageClassifier(
        model_name,
        num_classes=len(train.classes),
        recipe=recipe,
        max_steps=max_steps,
        channels_last=on_gpu,
        model_kwargs=model_kwargs,
    )
    run_name = run_name or model_name
    loggers = [CSVLogger(out_dir, name=run_name), TensorBoardLogger(out_dir, name=run_name)]
    checkpoint = ModelCheckpoint(dirpath=f"{loggers[0].log_dir}/checkpoints", save_last=True, save_top_k=0)
    callbacks: list[Any] = [checkpoint]
    if monitor_every:
        callbacks.append(ShatteringMonitor(every_n_steps=monitor_every, module="model", log_figures=False))
    trainer = L.Trainer(
        max_steps=max_steps,
        accelerator=accelerator,
        devices=1,
        precision=precision,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        log_every_n_steps=20,
        val_check_interval=val_every_steps,
        check_val_every_n_epoch=None if val_every_steps else 1,
        num_sanity_val_steps=0,
        limit_val_batches=0 if not val_every_steps else 1.0,
    )
    data = InMemoryImages(train, test, batch_size=batch_size)
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    metrics = trainer.test(module, datamodule=data, verbose=False)[0]
    return TrainResult(
        model=run_name,
        test_acc=float(metrics["test/acc"]),
        test_loss=float(metrics["test/loss"]),
        steps=trainer.global_step,
        seconds=round(seconds, 1),
        params=sum(p.numel() for p in module.model.parameters()),
        log_dir=loggers[0].log_dir,
        checkpoint=checkpoint.last_model_path or None,
    )
