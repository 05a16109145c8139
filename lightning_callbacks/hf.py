"""``ShatteringCallback``: the shattering measurer in a Hugging Face ``Trainer`` (needs ``transformers``).

A thin adapter over :class:`~lightning_callbacks.measure.ShatteringMeasurer`, like the Lightning
callback: the network's first training call is recorded (its ``input_ids``, ``attention_mask``,
``labels``...) and the lines run between two samples' embedding outputs (or inputs). The init
reading is taken right after the first forward, before any update; after that the net is measured
at the end of each due optimizer step (``state.global_step`` updates done, so gradient accumulation
counts optimizer steps). The values are logged through the Trainer's own reporting
(``Trainer.log``: TensorBoard, W&B, ... whatever ``report_to`` names) under the keys the Lightning
callback logs, at the measured step. A callback is handed no Trainer, and reporting callbacks run
before user callbacks in ``on_log``, so the callback is given the Trainer::

    trainer = Trainer(model=model, args=args, train_dataset=data)
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

from lightning_callbacks import functional as F
from lightning_callbacks.figures import RunFigures
from lightning_callbacks.measure import ShatteringMeasurer, check_options
from lightning_callbacks.report import ResultReport

__all__ = ["ShatteringCallback", "STATE_FILE"]

STATE_FILE = "shattering.pt"


class ShatteringCallback(TrainerCallback):
    """Measure gradient shattering while a Hugging Face ``Trainer`` trains (see the module docstring).

    Args:
        trainer: the ``Trainer`` whose reporting logs the values (:meth:`attach` passes it).
        log_figures: write the figures as PNGs under ``<output_dir>/<prefix>/`` (at init and at the end).
        prefix: prefix of the logged keys.
        measure_at_end: also measure the trained network when training ends.
        **options: the measurer's (:class:`~lightning_callbacks.measure.ShatteringMeasurer`):
            ``every_n_steps``, ``num_lines``, ``num_points``, ``layers``, ``bn_mode``, ``readout``,
            ``forward_fn``, ``embedding``, ``chunk_size``, ``probe``, ``log_spaced_start``.
    """

    def __init__(
        self,
        trainer: Any = None,
        *,
        log_figures: bool = True,
        prefix: str = "shattering",
        measure_at_end: bool = True,
        **options: Any,
    ) -> None:
        defaults = dict(every_n_steps=1000, num_lines=4, num_points=64, layers="auto")
        options = defaults | options
        check_options(**options)
        self.options = options
        self.trainer = trainer
        self.log_figures, self.prefix, self.measure_at_end = log_figures, prefix, measure_at_end
        self.measurer: ShatteringMeasurer | None = None
        self._report = ResultReport(prefix, options.get("bn_mode", "eval"), "ShatteringCallback")
        self._figures = RunFigures()
        self._hooks: list[Any] = []

    @classmethod
    def attach(cls, trainer: Any, **kwargs: Any) -> ShatteringCallback:
        """Create the callback for ``trainer``, add it to the Trainer's callbacks and return it."""
        callback = cls(trainer, **kwargs)
        trainer.add_callback(callback)
        return callback

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every measurement so far (see :attr:`ShatteringMeasurer.history`)."""
        return self.measurer.history if self.measurer is not None else []

    # ---- hooks ---------------------------------------------------------------------------
    def on_train_begin(
        self, args: Any, state: Any, control: Any, model: nn.Module | None = None, **kwargs: Any
    ) -> None:
        if self.trainer is None:
            raise ValueError(
                "ShatteringCallback logs through the Trainer's own reporting (Trainer.log), which a callback is not "
                "handed: add it with ShatteringCallback.attach(trainer, ...) or ShatteringCallback(trainer, ...)"
            )
        network = model if model is not None else self.trainer.model
        self.measurer = ShatteringMeasurer(network, **self.options)
        saved = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if state.global_step > 0 and saved.is_file():  # resumed: the same lines, call and schedule
            self.measurer.load_state_dict(torch.load(saved, weights_only=False))
        if not self.measurer.ready:
            self._watch_first_call(network, state)

    def _watch_first_call(self, network: nn.Module, state: Any) -> None:
        """Record the first training call; measure right after its forward if the step is due (the init
        reading), with the buffers from before that forward."""
        measurer = self.measurer
        recorder = measurer.start_recording()
        target = F.unwrap_compiled(network)
        before: dict[str, Any] = {}

        def snapshot(*_: Any) -> None:
            before.setdefault("buffers", F.buffer_copies(target))

        def after(*_: Any) -> None:
            self._remove_hooks()
            measurer.finish_recording(recorder)
            if measurer.due(state.global_step):
                self._measure(state.global_step, buffers=before["buffers"])

        self._hooks = [target.register_forward_pre_hook(snapshot), target.register_forward_hook(after)]

    def _remove_hooks(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks = []

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.measurer is not None and self.measurer.ready and self.measurer.due(state.global_step):
            self._measure(state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._remove_hooks()
        measurer = self.measurer
        if measurer is None:
            return
        if self.measure_at_end and measurer.ready and measurer.history and measurer.last_step != state.global_step:
            self._measure(state.global_step)
        if self.log_figures and state.is_world_process_zero:
            self._figures.ended(state.global_step, measurer.history, [], self._png_dir(args))

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.measurer is not None and state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            folder.mkdir(parents=True, exist_ok=True)
            torch.save(self.measurer.state_dict(), folder / STATE_FILE)

    # ---- measurement ---------------------------------------------------------------------
    def _measure(self, step: int, buffers: Any = None) -> None:
        result = self.measurer.measure(step, buffers=buffers)
        logged, notes = self._report(result)
        state = self.trainer.state
        if state.is_world_process_zero:
            for note in notes:
                warnings.warn(note, stacklevel=2)
        self.trainer.log(dict(logged))  # the Trainer's own reporting, at state.global_step == step
        if self.log_figures and state.is_world_process_zero:
            self._figures.measured(step, self.measurer.history, result.gradients, [], self._png_dir(self.trainer.args))

    def _png_dir(self, args: Any) -> Path:
        return Path(args.output_dir) / self.prefix
