"""One training run: the Trainer assembled with its checkpoint, LR monitor and ShatteringMonitor, fit, test,
and the trained network exported in timm's format; a cut-off run resumes from its last checkpoint."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import torch

from timm_ll.app.classifier import ImageClassifier
from timm_ll.app.data import ImageData
from timm_ll.app.datamodule import InMemoryImages
from timm_ll.app.recipe import BATCH_SIZE, MONITOR_EVERY, Recipe
from timm_ll.app.run_logs import keep_earlier_metrics, run_loggers, training_curves

__all__ = ["fit_and_test", "TrainResult", "ResumableRun"]


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


def fit_and_test(
    model_name: str,
    train: ImageData,
    test: ImageData,
    *,
    max_steps: int,
    batch_size: int = BATCH_SIZE,
    recipe: Recipe | None = None,
    out_dir: str = "timm-ll-runs",
    accelerator: str = "auto",
    precision: str | None = None,
    monitor_every: int | None = MONITOR_EVERY,
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
    results = dict(test_accuracy=float(metrics["test/acc"]), steps=steps) | ({"data": data} if data else {})
    save_pretrained(
        module.model, folder, model_args=module.hparams["model_kwargs"] or None, model_card=card, results=results
    )
    return str(folder)


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
