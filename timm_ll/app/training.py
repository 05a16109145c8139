"""A sound CIFAR-style training recipe for any timm model, as a LightningModule and DataModule.

SGD (momentum 0.9, Nesterov, weight decay 5e-4 on weights only), one-cycle or cosine LR,
random crop (4-pixel padding) and horizontal flip done on the device on uint8 tensors held
in memory, optional label smoothing. Used by ``timm-ll train`` and ``examples/depth_sweep.py``.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import timm
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from timm_ll.app.data import ImageData
from timm_ll.app.recipe import Recipe
from timm_ll.app.resident import DeviceBatches

__all__ = [
    "Recipe",
    "ImageClassifier",
    "InMemoryImages",
    "ImageSourceDataModule",
    "random_crop_flip",
    "balanced_subset",
    "balanced_split",
    "fit_and_test",
    "ResumableRun",
    "validation_run",
    "training_curves",
]


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


def balanced_split(data: ImageData, train_size: int, val_size: int, seed: int = 0) -> tuple[ImageData, ImageData]:
    """Two disjoint, fixed, class-balanced subsets: (``train_size`` images, ``val_size`` images).

    Per class, a seeded permutation gives the first ``train_size // classes`` images to the first
    subset and the next ``val_size // classes`` to the second: a held-out part of the *training*
    split, for choosing a recipe without looking at the test set. The first subset does not depend
    on ``val_size`` (it is :func:`balanced_subset`'s).
    """
    gen = torch.Generator().manual_seed(seed)
    per_train, per_val = train_size // len(data.classes), val_size // len(data.classes)
    train_idx, val_idx = [], []
    for label in range(len(data.classes)):
        members = (data.labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=gen)]
        if len(members) < per_train + per_val:
            raise ValueError(
                f"class {data.classes[label]!r} has {len(members)} images, fewer than the {per_train} + {per_val} "
                "asked for: ask for smaller subsets"
            )
        train_idx.append(members[:per_train])
        val_idx.append(members[per_train : per_train + per_val])

    def pick(parts: list[torch.Tensor]) -> ImageData:
        index = torch.cat(parts).sort().values
        return ImageData(data.images[index], data.labels[index], data.classes)

    return pick(train_idx), pick(val_idx)


def balanced_subset(data: ImageData, size: int, seed: int = 0) -> ImageData:
    """A fixed, class-balanced subset of ``size`` images (``size // classes`` per class)."""
    if size >= len(data):
        return data
    return balanced_split(data, size, 0, seed)[0]


class InMemoryImages(L.LightningDataModule):
    """uint8 images held in memory; batches stay uint8 until they reach the device, where they are
    augmented (random crop + flip, training only) and normalized.

    Args:
        train, test: the splits (or None, for a subclass that loads them in ``setup``).
        batch_size: training batch size (evaluation uses twice as many).
        num_workers: DataLoader workers.
        mean, std: per-channel normalization in [0, 1] units (e.g. the model's ``pretrained_cfg``);
            None: the training images' own statistics.
        augment: random crop (4-pixel zero padding) + horizontal flip of training batches.
        resident: keep both splits on the Trainer's device and draw batches there
            (:class:`~timm_ll.app.resident.DeviceBatches`): no host collation and no copy per step,
            which is what holds a GPU back on 32x32 images. Costs the splits' uint8 size in device
            memory (150 MB for CIFAR-10); needs ``num_workers=0``.
    """

    def __init__(
        self,
        train: ImageData | None,
        test: ImageData | None,
        batch_size: int = 128,
        num_workers: int = 0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: bool = True,
        resident: bool = False,
    ) -> None:
        super().__init__()
        if resident and num_workers:
            raise ValueError(
                f"resident=True with num_workers={num_workers}: device-resident batches need no loader "
                "workers; set num_workers=0"
            )
        self.batch_size, self.num_workers, self.augment = batch_size, num_workers, augment
        self.mean, self.std, self.resident = mean, std, resident
        self.train_data = self.test_data = None
        self._on_device: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}
        if train is not None and test is not None:
            self._set_data(train, test)

    def _set_data(self, train: ImageData, test: ImageData) -> None:
        if train.classes != test.classes:
            raise ValueError(f"train and test classes differ: {train.classes} vs {test.classes}")
        self.train_data, self.test_data = train, test
        if self.mean is None or self.std is None:
            pixels = train.images.transpose(0, 1).reshape(train.images.shape[1], -1).double().div(255)
            self.mean = tuple(pixels.mean(1).tolist()) if self.mean is None else self.mean
            self.std = tuple(pixels.std(1).clamp_min(1e-3).tolist()) if self.std is None else self.std

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """Augment (training only) and normalize uint8 images on the device; float batches pass unchanged."""
        images, labels = batch
        if images.dtype != torch.uint8:
            return images, labels
        images = images.float()
        if self.augment and self.trainer is not None and self.trainer.training:
            images = random_crop_flip(images)
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1) * 255
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1) * 255
        return (images - mean) / std, labels

    def _resident_batches(self, split: str, batch_size: int, train: bool) -> DeviceBatches:
        if self.trainer is None:
            raise RuntimeError(
                "resident=True draws batches on the Trainer's device: attach the DataModule to a Trainer"
            )
        device = self.trainer.strategy.root_device
        key = (split, str(device))
        if key not in self._on_device:  # one copy per split and device, kept for every later epoch and stage
            data = self.train_data if split == "train" else self.test_data
            self._on_device[key] = (data.images.to(device), data.labels.to(device))
        images, labels = self._on_device[key]
        return DeviceBatches(
            images,
            labels,
            batch_size,
            shuffle=train,
            drop_last=train,
            rank=self.trainer.global_rank,
            world_size=self.trainer.world_size,
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        if self.resident:
            return self._resident_batches("train", self.batch_size, train=True)
        data = TensorDataset(self.train_data.images, self.train_data.labels)
        return DataLoader(
            data,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=True,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def _eval_loader(self) -> DataLoader | DeviceBatches:
        if self.resident:
            return self._resident_batches("test", 2 * self.batch_size, train=False)
        data = TensorDataset(self.test_data.images, self.test_data.labels)
        return DataLoader(data, batch_size=2 * self.batch_size, num_workers=self.num_workers)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader()


class ImageSourceDataModule(InMemoryImages):
    """:class:`InMemoryImages` loaded by name or path (see :func:`timm_ll.app.data.load_source`) in ``setup``.

    Configurable from a LightningCLI config: ``data: {source: digits, batch_size: 128}``; ``mean``/``std``
    default to the training images' statistics.
    """

    def __init__(
        self,
        source: str = "digits",
        batch_size: int = 128,
        train_subset: int | None = None,
        num_workers: int = 0,
        mean: tuple[float, ...] | None = None,
        std: tuple[float, ...] | None = None,
        augment: bool = True,
        resident: bool = False,
    ) -> None:
        super().__init__(None, None, batch_size, num_workers, mean=mean, std=std, augment=augment, resident=resident)
        self.source, self.train_subset = source, train_subset

    def setup(self, stage: str) -> None:
        if self.train_data is None:
            from timm_ll.app.data import load_source

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
        r = self.recipe
        # norm scales and biases (1-d) get no weight decay unless the recipe asks for it
        decay = [p for p in self.parameters() if p.ndim > 1 or r.decay_norm_and_bias]
        no_decay = [p for p in self.parameters() if p.ndim <= 1 and not r.decay_norm_and_bias]
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
    """What one training run produced (``log_dir`` and ``checkpoint`` on the same footing as ``out_dir``)."""

    model: str
    architecture: str
    test_acc: float
    test_loss: float
    steps: int
    seconds: float
    params: int
    log_dir: str
    checkpoint: str | None
    # the ShatteringMonitor's measurements (its ``history``: step, input-level statistics as
    # (mean, std), per-block neighbour correlation); empty when the monitor was off
    shattering: list[dict[str, Any]] = field(default_factory=list)
    # the training curves at every logged step (see :func:`training_curves`)
    curves: dict[str, list[float]] = field(default_factory=dict)
    seed: int = 0
    # the trained network in timm's sharing format (``timm.create_model("local-dir:<export>", pretrained=True)``)
    export: str | None = None
    # the Trainer's precision ("32-true", "bf16-mixed"...)
    precision: str | None = None
    # the step an interrupted run was resumed from (None: it ran in one go); ``seconds`` counts both parts
    resumed_from: int | None = None


class ResumableRun(L.Callback):
    """What a cut-off run needs to end as an uninterrupted one would, kept in its checkpoints: the global torch
    RNG state (the next epoch's shuffle and the on-device augmentation draw from it) and the training time so
    far. Checkpoints are written at the end of each training epoch, where the data order of the next epoch has
    not been drawn yet, so a run resumed from one continues bitwise (``tests/test_training.py``)."""

    def __init__(self) -> None:
        self.seconds_before = 0.0  # training time of the earlier parts of a resumed run
        self.resumed_from: int | None = None
        self._start: float | None = None  # when this part's training began

    def state_dict(self) -> dict[str, Any]:
        state = dict(cpu_rng=torch.get_rng_state(), seconds=self.seconds_before + self._elapsed())
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        torch.set_rng_state(state_dict["cpu_rng"])
        if "cuda_rng" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda_rng"])
        self.seconds_before = float(state_dict["seconds"])

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # here, not in on_fit_start: the loops' counters (global_step) are restored between the two
        self._start = time.perf_counter()
        if self.seconds_before:
            self.resumed_from = trainer.global_step

    def _elapsed(self) -> float:
        return 0.0 if self._start is None else time.perf_counter() - self._start

    def seconds(self) -> float:
        """Training time over every part of the run."""
        return self.seconds_before + self._elapsed()


def training_curves(log_dir: str | Path) -> dict[str, list[float]]:
    """The run's training curves as the CSV logger wrote them: ``step``, ``loss`` and ``acc`` (of the
    training batch) and ``lr`` (the first parameter group's, from Lightning's ``LearningRateMonitor``)
    at every logged step, as parallel lists (a compact form for a results file)."""
    import csv

    # a resumed run's earlier parts first (see :func:`keep_earlier_metrics`): a step that a later part logged
    # again (after the checkpoint it resumed from) takes the later part's values
    files = sorted(Path(log_dir).glob("metrics.part*.csv"), key=lambda f: int(f.stem.removeprefix("metrics.part")))
    by_step: dict[int, dict[str, float]] = {}
    for path in [*files, Path(log_dir) / "metrics.csv"]:
        with path.open() as handle:
            _merge_records(list(csv.DictReader(handle)), by_step)
    steps = [step for step in sorted(by_step) if "loss" in by_step[step]]
    return dict(
        step=steps,
        **{name: [by_step[step].get(name, math.nan) for step in steps] for name in ("loss", "acc", "lr")},
    )


def _merge_records(records: list[dict[str, str]], by_step: dict[int, dict[str, float]]) -> None:
    """Lightning writes one CSV row per logging call site and step: merge them by step into ``by_step``."""
    lr_key = next((key for key in (records[0] if records else {}) if key.startswith("lr-")), None)
    for record in records:
        entry = by_step.setdefault(int(record["step"]), {})
        for name, key in (("loss", "train/loss"), ("acc", "train/acc"), ("lr", lr_key)):
            if key and record.get(key):
                entry[name] = float(record[key])


def keep_earlier_metrics(log_dir: Path) -> None:
    """Lightning's CSV logger deletes a folder's ``metrics.csv`` when it starts: before a run resumes into its
    folder, keep the earlier part's file as ``metrics.part<N>.csv`` (read back by :func:`training_curves`)."""
    current = log_dir / "metrics.csv"
    if current.exists():
        parts = len(list(log_dir.glob("metrics.part*.csv")))
        current.rename(log_dir / f"metrics.part{parts}.csv")


def run_loggers(out_dir: str, name: str, version: str | None = None) -> list[Any]:
    """CSV and (where tensorboard is installed) TensorBoard loggers writing into one ``out_dir/name/version_N``
    folder (``out_dir/name/<version>`` where the run is named). TensorBoard is not a dependency of the lean
    install: without it the run logs CSV only."""
    from importlib.util import find_spec

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    csv = CSVLogger(out_dir, name=name, version=version)
    csv.experiment  # noqa: B018  (creates the folder while it is empty: no "not empty" warning from CSV)
    if find_spec("tensorboard") is None and find_spec("tensorboardX") is None:
        return [csv]
    # TensorBoard takes the CSV logger's version: one folder per run, not version_0 and version_1
    return [csv, TensorBoardLogger(out_dir, name=name, version=csv.version, default_hp_metric=False)]


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
    monitor_options: dict[str, Any] | None = None,
    val_every_steps: int | None = None,
    seed: int = 0,
    progress: bool = True,
    model_kwargs: dict[str, Any] | None = None,
    resident_data: bool | None = None,
    compile: bool = False,
    data_name: str | None = None,
    run_name: str | None = None,
    resume: bool = False,
    callbacks: list[Any] | None = None,
) -> TrainResult:
    """Train the registered timm model ``model_name`` for ``max_steps`` with the recipe, then test it.

    Everything of the run lands in one printed folder, ``out_dir/<model_name>/version_N``: the
    CSV metrics, the TensorBoard events, the ShatteringMonitor's figures (every
    ``monitor_every`` steps; None: off; ``monitor_options`` are its other arguments, such as
    ``num_points``), the last-step checkpoint, and the trained network in
    timm's sharing format under ``timm/`` (``config.json``, ``model.safetensors``, a ``README.md``
    card), which ``timm.create_model("local-dir:<folder>", pretrained=True)`` loads. On a GPU it trains in
    ``bf16-mixed`` with channels-last unless ``precision`` says otherwise, and with the data
    held on the GPU unless ``resident_data`` is False (see :class:`InMemoryImages`).
    ``compile`` compiles the network (see :class:`ImageClassifier`); ``seconds`` then includes
    the compilation. ``data_name`` names the data in the exported model card.

    ``run_name`` names the run's folder ``out_dir/<model_name>/<run_name>`` instead of the next
    ``version_N`` (a study names it by what the run is, so that runs of different days never share a
    folder). With ``resume``, a run whose folder holds ``checkpoints/last.ckpt`` (written at the end of
    every training epoch) continues from it and ends as the uninterrupted run would; ``seconds`` then
    counts every part. ``callbacks`` are added to the Trainer's.
    """

    from lightning_callbacks import ShatteringMonitor

    L.seed_everything(seed, verbose=False)
    on_gpu = torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda")
    module = ImageClassifier(
        model_name,
        num_classes=len(train.classes),
        recipe=recipe,
        max_steps=max_steps,
        channels_last=on_gpu,
        model_kwargs=model_kwargs,
        compile=compile,
    )
    last = Path(out_dir) / model_name / run_name / "checkpoints" / "last.ckpt" if run_name else None
    resume_from = str(last) if resume and last is not None and last.exists() else None
    if resume_from:
        keep_earlier_metrics(last.parent.parent)
    loggers = run_loggers(out_dir, model_name, version=run_name)
    clock = ResumableRun()
    trainer = _trainer(
        loggers,
        max_steps=max_steps,
        steps_per_epoch=max(1, len(train) // batch_size),
        accelerator=accelerator,
        precision=precision or ("bf16-mixed" if on_gpu else "32-true"),
        monitor_every=monitor_every,
        monitor_options=monitor_options,
        val_every_steps=val_every_steps,
        progress=progress,
        benchmark=on_gpu,  # cuDNN picks the fastest conv algorithms: fixed shapes, so it pays after step one
        extra_callbacks=[clock, *(callbacks or [])],
    )
    cfg = module.model.pretrained_cfg
    data = InMemoryImages(
        train,
        test,
        batch_size=batch_size,
        mean=cfg.get("mean"),
        std=cfg.get("std"),
        resident=on_gpu if resident_data is None else resident_data,
    )
    trainer.fit(module, datamodule=data, ckpt_path=resume_from)
    seconds = clock.seconds()
    metrics = trainer.test(module, datamodule=data, verbose=False)[0]
    checkpoint = f"{loggers[0].log_dir}/checkpoints/last.ckpt"
    trainer.save_checkpoint(checkpoint)  # the trained network, also where the run ended between two epochs
    monitor = next((c for c in trainer.callbacks if isinstance(c, ShatteringMonitor)), None)
    for logger in loggers:
        logger.save()  # the CSV file holds every logged step before it is read back
    export = _export(module, loggers[0].log_dir, metrics, trainer.global_step, monitor, data_name)
    return TrainResult(
        model=model_name,
        architecture=module.model.pretrained_cfg.get("architecture", model_name),
        test_acc=float(metrics["test/acc"]),
        test_loss=float(metrics["test/loss"]),
        steps=trainer.global_step,
        seconds=round(seconds, 1),
        params=sum(p.numel() for p in module.model.parameters()),
        log_dir=loggers[0].log_dir,
        checkpoint=checkpoint,
        shattering=[result.entry() for result in monitor.history] if monitor is not None else [],
        curves=training_curves(loggers[0].log_dir),
        seed=seed,
        export=export,
        precision=trainer.precision,
        resumed_from=clock.resumed_from,
    )


def _export(
    module: ImageClassifier, log_dir: str, metrics: dict[str, float], steps: int, monitor: Any, data: str | None
) -> str:
    """Write the trained network into ``<log_dir>/timm`` in timm's format, with a card of the run."""
    from timm_ll.export import card_text, save_pretrained

    folder = Path(log_dir) / "timm"
    card = card_text(
        module.hparams["model_name"],
        recipe=module.hparams["recipe"],
        data=data,
        test_acc=float(metrics["test/acc"]),
        steps=steps,
        shattering=dict(monitor.last_measurement) if monitor is not None else None,
    )
    save_pretrained(module.model, folder, model_args=module.hparams["model_kwargs"] or None, model_card=card)
    return str(folder)


def validation_run(
    model_name: str,
    train: ImageData,
    val: ImageData,
    *,
    max_steps: int,
    recipe: Recipe,
    out_dir: str,
    seed: int = 0,
) -> dict[str, Any]:
    """Train on ``train`` and score on ``val``, held-out *training* images (a recipe is chosen without
    the test set); the monitor is off. Returns a study's row fields: ``val_error``, ``steps``,
    ``train_images``, ``val_images``, ``seconds`` (training and scoring) and ``machine``."""

    from timm_ll.app.reporting import machine, provenance

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


def _trainer(
    loggers: list[Any],
    *,
    max_steps: int,
    steps_per_epoch: int,
    accelerator: str,
    precision: str,
    monitor_every: int | None,
    val_every_steps: int | None,
    progress: bool,
    monitor_options: dict[str, Any] | None = None,
    benchmark: bool = False,
    extra_callbacks: list[Any] | None = None,
) -> L.Trainer:
    from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint

    from lightning_callbacks import ShatteringMonitor

    log_dir = loggers[0].log_dir
    callbacks: list[Any] = [
        # one file, last.ckpt, rewritten after the last batch of every epoch: what a cut-off run resumes from. Saved
        # on that batch's end, not on the epoch's end, because Lightning resumes a checkpoint of the last batch as
        # a finished epoch, and one of the epoch's end as an unfinished one (it would train one batch too many)
        ModelCheckpoint(
            dirpath=f"{log_dir}/checkpoints",
            filename="last",
            save_top_k=1,
            every_n_train_steps=steps_per_epoch,
            save_on_train_epoch_end=False,
            enable_version_counter=False,
        ),
        LearningRateMonitor(logging_interval="step"),
    ]
    if monitor_every:
        callbacks.append(ShatteringMonitor(every_n_steps=monitor_every, module="model", **(monitor_options or {})))
    callbacks += extra_callbacks or []
    return L.Trainer(
        max_steps=max_steps,
        # a real epoch count for the progress bar ("Epoch 3/12"); max_steps still ends the run
        max_epochs=math.ceil(max_steps / steps_per_epoch),
        accelerator=accelerator,
        devices=1,
        precision=precision,
        benchmark=benchmark,
        logger=loggers,
        callbacks=callbacks,
        enable_progress_bar=progress,
        enable_model_summary=False,
        # at least once an epoch (a small dataset's epoch is shorter than 20 steps: no Lightning warning)
        log_every_n_steps=max(1, min(20, steps_per_epoch)),
        val_check_interval=val_every_steps,
        check_val_every_n_epoch=None if val_every_steps else 1,
        num_sanity_val_steps=0,
        limit_val_batches=0 if not val_every_steps else 1.0,
    )
