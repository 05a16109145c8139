"""``ShatteringCallback``: the shattering measurer in a Hugging Face ``Trainer`` (needs ``transformers``).

A thin adapter over :class:`~lightning_callbacks.measure.ShatteringMeasurer`, like the Lightning
callback: the Trainer's events (training begins, an optimizer step is about to be taken, training
ends, a checkpoint is saved) are translated into the measurer's, which owns the protocol (the
network's first calls are recorded, micro-batches of gradient accumulation included; the init
reading is taken before the first update; a failed measurement warns and training goes on). As
Hugging Face callbacks go, it works with no argument::

    trainer = Trainer(model=model, args=args, train_dataset=data, callbacks=[ShatteringCallback()])

Each reading then goes into ``trainer.state.log_history`` and the figures into
``<output_dir>/shattering/``. A callback is handed no Trainer, and the reporting callbacks
(TensorBoard, W&B...) run before user callbacks in ``on_log``, so to log through the Trainer's own
reporting (``Trainer.log``, to whatever ``report_to`` names) and send the figures to its TensorBoard
writer, give the callback the Trainer::

    ShatteringCallback.attach(trainer, every_n_steps=100)
    trainer.train()

Resuming (``trainer.train(resume_from_checkpoint=...)``) keeps the lines and the schedule: the
measurer's state is saved beside each checkpoint as ``shattering.pt`` (the Trainer's own callback
state is JSON, which cannot hold the probe).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

try:
    from transformers import TrainerCallback
except ImportError as error:  # an optional extra: say which
    raise ImportError(
        "ShatteringCallback is the Hugging Face Trainer's callback and needs transformers and accelerate: "
        "pip install 'timm-ll[hf]'"
    ) from error

from lightning_callbacks.deprecations import check_keywords
from lightning_callbacks.measure import ShatteringMeasurer
from lightning_callbacks.options import OPTION_DEFAULTS, ShatteringOptions, option_names
from lightning_callbacks.plotting.runs import FigureSink, writer_sink
from lightning_callbacks.publish import Publisher
from lightning_callbacks.results import ShatteringResult

__all__ = ["ShatteringCallback", "STATE_FILE"]

STATE_FILE = "shattering.pt"


class ShatteringCallback(TrainerCallback):
    """Measure gradient shattering while a Hugging Face ``Trainer`` trains (see the module docstring).

    Args:
        trainer: the ``Trainer`` whose reporting logs the values (:meth:`attach` passes it); without it the
            readings go into ``state.log_history`` only.
        **options: the options of :class:`~lightning_callbacks.options.ShatteringOptions`, refused at once
            if bad.
    """

    def __init__(self, trainer: Any = None, **options: Any) -> None:
        # LightningCLI reads this get() as an accepted option: a config's old `layers:` is renamed below, with a warning
        options["layers"] = options.get("layers", "auto")
        check_keywords(options, option_names(), type(self).__name__, defaults=OPTION_DEFAULTS)  # in place
        self.options = ShatteringOptions(**options)
        self.trainer = trainer
        self.measurer: ShatteringMeasurer | None = None
        self._publisher = Publisher(self.options, "ShatteringCallback")
        self._sinks: list[FigureSink] = []

    @classmethod
    def attach(cls, trainer: Any, **options: Any) -> ShatteringCallback:
        """Create the callback for ``trainer``, add it to the Trainer's callbacks and return it."""
        callback = cls(trainer, **options)
        trainer.add_callback(callback)
        return callback

    @property
    def history(self) -> list[ShatteringResult]:
        """Every measurement so far, as typed results."""
        return self.measurer.history if self.measurer is not None else []

    # ---- the Trainer's events, translated ------------------------------------------------
    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any
    ) -> None:
        network = model if model is not None else self.trainer.model
        self.measurer = ShatteringMeasurer(network, self.options)
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if state.global_step > 0 and saved.is_file():  # resumed: the same lines, call and schedule
            self.measurer.load_state_dict(torch.load(saved, weights_only=True))
        reporting = [r for r in (args.report_to or []) if r != "none"]
        if self.trainer is None and reporting and state.is_world_process_zero:
            warnings.warn(
                f"ShatteringCallback without the Trainer: its readings go into state.log_history only, not to "
                f"{', '.join(reporting)}; ShatteringCallback.attach(trainer, ...) logs them through Trainer.log "
                "(and its figures to the TensorBoard writer)",
                stacklevel=2,
            )
        self._sinks = self._tensorboard_sinks()
        self.measurer.watch()

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._publish(args, state, self.measurer.before_optimizer_step(state.global_step))

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.measurer is None:
            return
        self._publish(args, state, self.measurer.end(state.global_step))
        self._publisher.ended(state.global_step, self.measurer.history, **self._figure_places(args, state))
        line = self._publisher.verdict_line(self.measurer.history)
        if line is not None and state.is_world_process_zero:
            print(line)  # the Trainer's own console (its logging shows warnings only by default)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.measurer is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(self.measurer.state_dict(), folder / STATE_FILE)

    # ---- the results, onto the Trainer's reporting ---------------------------------------
    def _publish(self, args: Any, state: Any, result: ShatteringResult | None) -> None:
        def log(logged: dict[str, float]) -> None:
            if self.trainer is not None:
                self.trainer.log(dict(logged))  # the Trainer's own reporting, at state.global_step == result.step
            else:
                state.log_history.append({**logged, "step": result.step})

        def warn(note: str) -> None:
            warnings.warn(note, stacklevel=4)

        places = self._figure_places(args, state)
        self._publisher.measured(result, self.measurer.history, log=log, warn=warn, **places)

    def _figure_places(self, args: Any, state: Any) -> dict[str, Any]:
        return dict(main_process=state.is_world_process_zero, sinks=lambda: self._sinks, png_dir=self._png_dir(args))

    def _tensorboard_sinks(self) -> list[FigureSink]:
        """The attached Trainer's TensorBoard writer as a figure sink (its reporting callback opened it)."""
        callbacks = self.trainer.callback_handler.callbacks if self.trainer is not None else []
        writers = [getattr(c, "tb_writer", None) for c in callbacks]
        return [writer_sink(w, self.options.prefix) for w in writers if hasattr(w, "add_figure")]

    def _png_dir(self, args: Any) -> Path:
        return Path(args.output_dir) / self.options.prefix
