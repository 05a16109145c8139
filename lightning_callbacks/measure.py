"""The framework-free shattering measurer: it owns a monitored run's protocol, schedule, history and failures.

:class:`ShatteringMeasurer` holds everything a measurement needs across a run: the network, the
options (:class:`~lightning_callbacks.options.ShatteringOptions`), the probe lines (fixed from the
first training calls, saved in its ``state_dict``), how the network is called (a
:class:`~lightning_callbacks.replay.RecordedCall`), the schedule and the history of typed results.
It imports no training framework. A training loop tells it three things, and the Lightning and
Hugging Face callbacks do no more than translate their events into these::

    measurer = ShatteringMeasurer(model, every_n_steps=100)
    measurer.watch()                              # training starts: watch the network's calls
    for step, batch in enumerate(loader):
        model(**batch)["loss"].backward()
        result = measurer.before_optimizer_step(step)   # a ShatteringResult when one was due
        optimizer.step()
        optimizer.zero_grad()
    measurer.end(step + 1)                        # the trained network's reading

**The protocol.** From :meth:`~ShatteringMeasurer.watch` until the first optimizer step the
measurer records the network's first call (to replay it along the lines) and collects the probed
samples of every call (micro-batches included) until it has two per line; the buffers (BN running
statistics) are copied as they were before the first forward. At the first
:meth:`~ShatteringMeasurer.before_optimizer_step` the lines are fixed and the init reading is taken
with those buffers, before any update. With a single sample the second endpoint of the line is
derived from it (:func:`second_endpoint`), fixed for the run, with one warning. Later readings are
taken just before the due optimizer steps: the weights after ``step`` updates.

How it fails without ending a run: :mod:`~lightning_callbacks.failures`; how it measures under
``torch.distributed``: :mod:`~lightning_callbacks.distributed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.deprecations import check_keywords
from lightning_callbacks.distributed import any_process, broadcast_from_rank_zero, process_group
from lightning_callbacks.failures import FailureWarnings, MeasurementFailed, cause_of
from lightning_callbacks.lines import MIN_CHUNK, ProbeLines, line_pairs, second_endpoint, share_gradients
from lightning_callbacks.options import Schedule, ShatteringOptions, early_steps, option_names
from lightning_callbacks.replay import CallRecorder, RecordedCall, call_from_arguments, call_of, check_embedding
from lightning_callbacks.results import ShatteringResult
from lightning_callbacks.tally import Tally

# the names besides the measurer are where they were before their modules were split out (tests, benchmarks)
__all__ = ["ShatteringMeasurer", "MeasurementFailed", "Schedule", "early_steps", "line_pairs", "second_endpoint"]
__all__ += ["MIN_CHUNK"]


class ShatteringMeasurer:
    """Measures how shattered a network's input gradients are, and how close its forward signal maps the
    two ends of each line, in any training loop (see the module docstring for the protocol).

    At each measurement it takes the gradient of a scalar readout of the network at every point of
    the probe lines, at the input and at the output of each block, and keeps the block outputs and
    the network's output at each line's two endpoints (the forward kernel); it returns a
    :class:`~lightning_callbacks.results.ShatteringResult`. It never changes what training computes:
    no parameter ``.grad``, buffer, module mode or RNG state is left changed (see
    :func:`~lightning_callbacks.functional.input_gradients`).

    Args:
        model: the network to measure (a ``torch.compile``d one is measured through its original).
        options: a :class:`~lightning_callbacks.options.ShatteringOptions` (default: its defaults).
        **overrides: options given by name (``every_n_steps=100``), over ``options``.
    """

    def __init__(self, model: nn.Module, options: ShatteringOptions | None = None, **overrides: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"ShatteringMeasurer measures an nn.Module, got {type(model).__name__}")
        base = options if options is not None else ShatteringOptions()
        overrides = check_keywords(overrides, option_names(), type(self).__name__)  # renamed options warn
        self.options = replace(base, **overrides) if overrides else base
        self.model = model
        self.readout = self.options.readout or F.random_projection_readout()
        self.schedule = Schedule(self.options.every_n_steps, self.options.log_spaced_start)
        measured = F.unwrap_compiled(model)
        names = F.auto_blocks(measured) if self.options.blocks == "auto" else list(self.options.blocks or [])
        self.block_names: list[str] = list(F.resolve_blocks(measured, names))
        self.call: RecordedCall | None = None
        self.lines = ProbeLines(self.options.probe)
        self.batch_size: int | None = None
        self.last_step = -1
        self.history: list[ShatteringResult] = []
        self._recorder: CallRecorder | None = None
        self._init_buffers: list[tuple[nn.Module, str, torch.Tensor]] | None = None
        self._failures = FailureWarnings(type(self).__name__)
        self._tally: Tally | None = None
        self._unusable: str | None = None  # why the recorded call cannot be used (warned), if it cannot

    # ---- schedule ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is a step of the schedule that has not been measured yet."""
        return self.schedule.due(step) and step != self.last_step

    @property
    def ready(self) -> bool:
        """Whether it knows how to call the network and along which lines."""
        return self.lines.ready and (self.options.forward_fn is not None or self.call is not None)

    # ---- the protocol: what a training loop (or an adapter) tells the measurer -----------
    def watch(self) -> None:
        """Training starts: copy the buffers as they are (for the init reading) and watch the network's calls
        until the first optimizer step. Nothing to do for a measurer that is ready (a resumed run)."""
        if self.ready or self._recorder is not None:
            return
        network = F.unwrap_compiled(self.model)
        self._init_buffers = F.buffer_copies(network)
        self._recorder = CallRecorder(network, self.options.embedding, samples_wanted=2 * self.options.num_lines)

    def before_optimizer_step(self, step: int) -> ShatteringResult | None:
        """An optimizer step is about to be taken; the weights are those after ``step`` updates. Measure if
        ``step`` is due (the first time: fix the lines and take the init reading) and return the result,
        a failed one rather than an exception; None when nothing was due."""
        buffers = self._end_watch()
        return self._reading(step, buffers) if self.due(step) else None

    def end(self, step: int) -> ShatteringResult | None:
        """Training ended after ``step`` optimizer steps: with ``measure_at_end``, the trained network's reading
        (the init reading, if no optimizer step was ever taken); None when there is nothing to add."""
        buffers = self._end_watch()
        if not self.options.measure_at_end or step == self.last_step or not (self.history or buffers is not None):
            return None
        return self._reading(step, buffers)

    def _end_watch(self) -> list[tuple[nn.Module, str, torch.Tensor]] | None:
        """Stop watching once a call was seen; hand over the init reading's buffers (good for this step only)."""
        buffers, self._init_buffers = self._init_buffers, None
        if self._recorder is not None:
            self._unusable = self._failures.guard(self._stop_watching)
        return buffers

    def _reading(self, step: int, buffers: Sequence[tuple[nn.Module, str, torch.Tensor]] | None) -> ShatteringResult:
        """The protocol's measurement: a failed result, warned once per cause, instead of an exception."""
        if not self.ready:
            cause = self._unusable or (
                f"the measured network ({type(F.unwrap_compiled(self.model)).__name__}) has not run in training; "
                "tell the monitor which one does (module=...), or pass probe= and forward_fn="
            )
            self._failures.warn(cause)
            return self._failed(step, cause)
        try:
            return self.measure(step, buffers=buffers)
        except Exception as error:  # noqa: BLE001 - a monitor never ends a run: warn, keep a NaN reading, go on
            if not isinstance(error, MeasurementFailed) or process_group()[0] == 0:
                self._failures.warn(cause_of(error))
            return self._failed(step, cause_of(error))

    def _stop_watching(self) -> None:
        """Use the call the watch recorded (rank 0's, on every process); keep watching while none was seen."""
        if broadcast_from_rank_zero(self._recorder.call is not None):  # called only while watching
            recorder, self._recorder = self._recorder, None
            self.use_call(recorder.remove())

    # ---- how the network is called -------------------------------------------------------
    def use_call(self, call: RecordedCall | None) -> None:
        """Replay rank 0's ``call`` (every process calls this) and, without a fixed probe, run the lines between
        the samples of its input; with ``forward_fn``, only the lines are taken from it."""
        state = broadcast_from_rank_zero(None if call is None else call.state())
        if state is None:
            return
        call = RecordedCall.from_state(state)
        if call.discrete and self.options.forward_fn is None:
            check_embedding(F.unwrap_compiled(self.model), call)
        self.call = call
        if self.batch_size is None:
            self.batch_size = call.batch_size or int(call.inputs.shape[0])
        if not self.lines.ready:
            self.set_lines(call.inputs, broadcast=False)

    def set_lines(self, inputs: torch.Tensor, broadcast: bool = True) -> None:
        """Fix the lines between pairs of samples of ``inputs`` (rank 0's, on every process). With a single
        sample the line runs to :func:`~lightning_callbacks.lines.second_endpoint` of it (warned once)."""
        self.lines.fix(inputs, self.options.num_lines, self._failures.warn, broadcast, embedded=self.call is not None)
        if self.batch_size is None:
            self.batch_size = int(inputs.shape[0])

    def probes(self) -> list[torch.Tensor]:
        """The probes in use: the fixed one, or one line per stored pair of samples (for token ids, between the
        two samples' embedding outputs, with the embedding's current weights)."""
        embed = self.call is not None and self.call.discrete and self.options.forward_fn is None
        return self.lines.probes(self.options.num_points, self.model, self.call, embed)

    # ---- measurement ---------------------------------------------------------------------
    def measure(
        self,
        step: int,
        *args: Any,
        buffers: Sequence[tuple[nn.Module, str, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> ShatteringResult:
        """Measure now and raise on failure (the protocol's methods warn instead); every process of a process
        group must call it at the same step.

        Args:
            step: the training step (optimizer steps taken so far).
            *args, **kwargs: the arguments the network is called with in training; needed until a call is
                known (the first call's; later ones are ignored).
            buffers: measure with these buffer copies (:func:`~lightning_callbacks.functional.buffer_copies`)
                in place, e.g. the BN statistics from before a training forward that has since run.

        Raises:
            MeasurementFailed: another process's part failed (this process's own error is raised as is).
        """
        if (args or kwargs) and not self.ready:  # the direct path: keep that call
            network, keep = F.unwrap_compiled(self.model), 2 * self.options.num_lines
            if self.options.forward_fn is None:
                self.use_call(call_from_arguments(network, args, kwargs, keep, self.options.embedding))
            else:  # only the lines are taken from the call
                self.use_call(call_of(args, kwargs, keep=keep))
        if not self.ready:
            raise RuntimeError(
                "ShatteringMeasurer.measure() needs the arguments the network is called with the first time "
                "(measure(step, inputs) or measure(step, **batch)), or a probe= and forward_fn="
            )
        measured = F.unwrap_compiled(self.model)
        device = next((p.device for p in measured.parameters()), torch.device("cpu"))
        error: Exception | None = None
        try:  # this process's part: no collective but a sharded forward's own
            probes = self.probes()
            with F.buffers_swapped(buffers) if buffers is not None else nullcontext():
                lines = share_gradients(measured, probes, **self._gradient_options(measured))
            tally = self._tally_for(device, sync=process_group()[1] > 1)
            for line in lines:
                tally.add(line)
            tally.read_tokens()
        except (ValueError, TypeError) as failed:  # say so where the user's forward_fn is what failed
            error = failed if self.options.forward_fn is None else type(failed)(f"forward_fn=...: {failed}")
        except Exception as caught:  # noqa: BLE001 - whatever failed, the processes must agree on it first
            error = caught
        if any_process(error is not None, device):
            if error is not None:
                raise error
            raise MeasurementFailed(f"another process's measurement at step {step} failed (its warning names why)")
        result = tally.result(step, lines, len(probes))
        self._remember(result)
        return result

    def _tally_for(self, device: torch.device, sync: bool) -> Tally:
        """This measurement's tally: the measurer's, emptied, unless the device or the world changed."""
        tokens = None  # how the token kernel is read: the layout, and the recorded call's attention mask
        if self.options.token_kernel:
            tokens = self.options.token_layout, self.call.token_mask() if self.call is not None else None
        if self._tally is None or not self._tally.fits(self.block_names, device, sync):
            self._tally = Tally(self.block_names, device, sync)
        self._tally.start(tokens)
        return self._tally

    def _failed(self, step: int, cause: str) -> ShatteringResult:
        result = ShatteringResult.failure(step, self.block_names, cause)
        self._remember(result)
        return result

    def _remember(self, result: ShatteringResult) -> None:
        """Append ``result`` to the history (replacing one of the same step); only the latest keeps gradients."""
        kept = [r.without_gradients() for r in self.history if r.step != result.step]
        self.history = kept + [result]
        self.last_step = result.step

    def _gradient_options(self, measured: nn.Module) -> dict[str, Any]:
        """:func:`~lightning_callbacks.lines.line_gradients`' settings for this measurement."""
        forward_fn = self.options.forward_fn or (self.call.forward_fn(measured) if self.call is not None else None)
        chunk = self.options.chunk_size or max(self.batch_size or 1, MIN_CHUNK)
        return dict(
            readout=self.readout, bn_mode=self.options.bn_mode, blocks=self.block_names, chunk=chunk,
            forward_fn=forward_fn,
        )  # fmt: skip

    # ---- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The lines, the recorded call, the schedule's position and the history, as tensors and plain values
        (a checkpoint loads with ``torch.load(..., weights_only=True)``)."""
        return {
            **self.lines.state(),
            "last_step": self.last_step,
            "batch_size": self.batch_size,
            "history": [result.entry() for result in self.history],
            "call": None if self.call is None else self.call.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (or an older monitor's checkpoint): a resumed run measures the
        same lines on the same schedule."""
        self.lines.load(state)
        self.last_step = int(state.get("last_step", -1))
        self.batch_size = state.get("batch_size")
        self.history = [ShatteringResult.from_entry(entry) for entry in state.get("history") or []]
        if state.get("call") is not None:
            self.call = RecordedCall.from_state(state["call"])
