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

**Never a killed run.** Bad options fail when the measurer (or an adapter) is built, before any
training. A measurement that fails once training runs warns once per cause, is kept in the history
as a failed result (NaN everywhere, ``failed`` names the cause) and training goes on; the next due
step tries again. :meth:`~ShatteringMeasurer.measure`, the direct call, raises instead.

**Distributed.** Under ``torch.distributed`` (DDP, FSDP) every process calls the protocol at the same
steps: the lines are rank 0's, each process measures its share, and the statistics (torchmetrics states)
are summed across processes in one all-reduce, so every process gets the single-process result. Every
process runs the same number of probe passes, padding its share with a repeat of a line whose result it
drops (a sharded network gathers its parameters in every forward). Before any statistic is synced the
processes agree, by a reduced flag, whether any of them failed, so that none waits in a collective the
others left. (A failure inside a sharded forward on one process only, before its parameters are
gathered, cannot be rescued that way: the others are already in the gather.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.deprecations import check_keywords
from lightning_callbacks.distributed import any_process, broadcast_from_rank_zero, process_group, rank_share
from lightning_callbacks.options import ShatteringOptions, option_names
from lightning_callbacks.replay import CallRecorder, RecordedCall, call_of, embeddings_run
from lightning_callbacks.results import KERNEL, TOKEN_KERNEL, TOKEN_RANK, BlockReading, ShatteringResult

__all__ = [
    "ShatteringMeasurer",
    "MeasurementFailed",
    "Schedule",
    "early_steps",
    "line_pairs",
    "second_endpoint",
    "MIN_CHUNK",
]

# the fewest probe points per eval-mode forward pass by default: a batch of one must not make the probe run
# point by point (64 passes of one sample cost several times 8 passes of 8), and 8 stays a small memory budget
MIN_CHUNK = 8


def _metric_classes() -> dict[str, type]:
    """The torchmetrics classes of the statistics, imported on first use: importing torchmetrics imports
    transformers where it is installed, which a plain loop's import of the measurer should not."""
    from lightning_callbacks.metrics import (
        EffectiveRank,
        ForwardKernel,
        GradientCorrelation,
        SpectralSlope,
        StableRank,
    )

    return {
        "neighbor_corr": GradientCorrelation,
        "effective_rank": EffectiveRank,
        "stable_rank": StableRank,
        "spectral_slope": SpectralSlope,
        KERNEL: ForwardKernel,
    }


# the worse of two lines' statuses is the block's (and is what every process agrees on)
_STATUS_ORDER: tuple[F.Status, ...] = ("flat", "measured", "zero", "non-finite", "missing")


class MeasurementFailed(RuntimeError):
    """Another process's part of a measurement failed (that process's warning names the cause)."""


def early_steps(every_n_steps: int) -> list[int]:
    """The log-spaced steps measured before ``every_n_steps``: 0, 1, 2, 5, 10, 20, 50, 100, ..."""
    steps, decade = [0], 1
    while decade < every_n_steps:
        steps += [s for s in (decade, 2 * decade, 5 * decade) if s < every_n_steps]
        decade *= 10
    return steps


class Schedule:
    """The measured steps: every multiple of ``every_n_steps`` and, with ``log_spaced_start``, the log-spaced
    steps before it (:func:`early_steps`), where shattering changes most."""

    def __init__(self, every_n_steps: int = 1000, log_spaced_start: bool = True) -> None:
        self.every_n_steps = every_n_steps
        self._early = set(early_steps(every_n_steps)) if log_spaced_start else {0}

    def due(self, step: int) -> bool:
        """Whether ``step`` is a measured step."""
        return step % self.every_n_steps == 0 or step in self._early


def line_pairs(num_samples: int, num_lines: int) -> list[tuple[int, int]]:
    """Distinct sample pairs for ``num_lines`` probe lines: disjoint ``(0, 1), (2, 3), ...`` where the batch
    allows, else neighbouring ``(0, 1), (1, 2), ...``; fewer when the batch has fewer distinct pairs."""
    if num_samples >= 2 * num_lines:
        return [(2 * i, 2 * i + 1) for i in range(num_lines)]
    return [(i, i + 1) for i in range(min(num_lines, num_samples - 1))]


def second_endpoint(sample: torch.Tensor) -> torch.Tensor:
    """The other end of a line that has a single sample, at a typical distance between samples (never an
    epsilon away, which would measure a point, not a line):

    - token ids ``(T, ...)``: the same tokens, the second half first (``roll`` by ``T // 2``): another
      stretch of text at every position, with the same length and mask;
    - anything else (an image ``(C, H, W)``, features ``(D,)``): mirrored along its last axis (an image
      flipped left to right).
    """
    if sample.dim() == 0:
        raise ValueError("a line needs samples with at least one axis, got a scalar")
    if not (sample.is_floating_point() or sample.is_complex()):
        return sample.roll(sample.shape[0] // 2, dims=0)
    return sample.flip(-1)


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
        self._fixed_probe = None if self.options.probe is None else self.options.probe.detach().clone()
        self._endpoints: torch.Tensor | None = None  # (lines, 2, ...): each line's two samples
        self.batch_size: int | None = None
        self.last_step = -1
        self.history: list[ShatteringResult] = []
        self._recorder: CallRecorder | None = None
        self._init_buffers: list[tuple[nn.Module, str, torch.Tensor]] | None = None
        self._warned: set[str] = set()
        self._tally: _Tally | None = None
        self._unusable: str | None = None  # why the recorded call cannot be used (warned), if it cannot

    # ---- schedule ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is a step of the schedule that has not been measured yet."""
        return self.schedule.due(step) and step != self.last_step

    @property
    def ready(self) -> bool:
        """Whether it knows how to call the network and along which lines."""
        has_probe = self._fixed_probe is not None or self._endpoints is not None
        return has_probe and (self.options.forward_fn is not None or self.call is not None)

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
        buffers, self._init_buffers = self._init_buffers, None  # the init reading's, good for this step only
        if self._recorder is not None:
            self._unusable = self._safely(self._stop_watching)
        if not self.due(step):
            return None
        if not self.ready:
            return self._failed(step, self._unusable or self._not_run())
        return self._measure_safely(step, buffers)

    def end(self, step: int) -> ShatteringResult | None:
        """Training ended after ``step`` optimizer steps: with ``measure_at_end``, the trained network's reading
        (the init reading, if no optimizer step was ever taken); None when there is nothing to add."""
        buffers, self._init_buffers = self._init_buffers, None
        if self._recorder is not None:
            self._unusable = self._safely(self._stop_watching)
        if not self.options.measure_at_end or step == self.last_step or not (self.history or buffers is not None):
            return None
        if not self.ready:
            return self._failed(step, self._unusable or self._not_run())
        return self._measure_safely(step, buffers)

    def _not_run(self) -> str:
        cause = (
            f"the measured network ({type(F.unwrap_compiled(self.model)).__name__}) has not run in training; "
            "tell the monitor which one does (module=...), or pass probe= and forward_fn="
        )
        self._warn(cause)
        return cause

    def _stop_watching(self) -> None:
        """Use the call the watch recorded (rank 0's, on every process); keep watching while none was seen."""
        recorder = self._recorder
        if recorder is None:
            return
        seen = broadcast_from_rank_zero(recorder.call is not None)
        if not seen:
            return
        self._recorder = None
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
        if self._fixed_probe is None and self._endpoints is None:
            self.set_lines(call.inputs, broadcast=False)

    def _use_arguments(self, args: tuple, kwargs: dict) -> None:
        """The direct path (:meth:`measure` with the network's arguments): keep that call."""
        call = call_of(args, kwargs, keep=2 * self.options.num_lines)
        if call.discrete and self.options.forward_fn is None:
            # token ids: which embedding consumes them shows only in a run (one sample, measured invisibly)
            network = F.unwrap_compiled(self.model)
            with F.measurement_context(network, "eval"):
                call.embeddings_seen = embeddings_run(network, call)
            call.embedding = self.options.embedding or (call.embeddings_seen[0] if call.embeddings_seen else None)
        self.use_call(call)

    def set_lines(self, inputs: torch.Tensor, broadcast: bool = True) -> None:
        """Fix the lines between pairs of samples of ``inputs`` (rank 0's, on every process). With a single
        sample the line runs to :func:`second_endpoint` of it (warned once)."""
        if not (inputs.is_floating_point() or self.call is not None):
            raise TypeError(
                f"the lines run between inputs, but the batch holds {inputs.dtype} inputs and forward_fn is given: "
                "pass probe=<(n, ...) inputs ordered along a path>, or leave forward_fn out to probe the "
                "embedding's output"
            )
        if self.batch_size is None:
            self.batch_size = int(inputs.shape[0])
        num_lines = self.options.num_lines
        if inputs.shape[0] < 2:
            inputs = torch.stack([inputs[0], second_endpoint(inputs[0])])
            how = "the same tokens, the second half first" if not inputs.is_floating_point() else "it mirrored"
            self._warn(
                "the network saw a single sample before the first optimizer step: the probe line runs from it to "
                f"{how} (a typical distance between samples), fixed for the run; measuring 1 of the {num_lines} "
                "lines (more samples per step, or micro-batches before the step, give more lines)"
            )
        pairs = line_pairs(inputs.shape[0], num_lines)
        if len(pairs) < num_lines and inputs.shape[0] >= 2 and len(pairs) > 1:
            self._warn(
                f"the first training calls had {inputs.shape[0]} samples, enough for {len(pairs)} of the "
                f"{num_lines} probe lines; measuring {len(pairs)}"
            )
        endpoints = torch.stack([inputs[[a, b]] for a, b in pairs]).detach().cpu()
        self._endpoints = broadcast_from_rank_zero({"ends": endpoints})["ends"] if broadcast else endpoints

    def probes(self) -> list[torch.Tensor]:
        """The probes in use: the fixed one, or one line per stored pair of samples.

        For token-id inputs each line runs between the two samples' embedding outputs, taken with the
        embedding's current weights (cropped to the shorter sequence).
        """
        if self._fixed_probe is not None:
            return [self._fixed_probe]
        if self._endpoints is None:
            raise RuntimeError("the probe lines are built from the first call; no call has been seen yet")
        num_points = self.options.num_points
        if self.call is not None and self.call.discrete and self.options.forward_fn is None:
            lines, network = [], F.unwrap_compiled(self.model)
            for ends in self._endpoints:
                with F.measurement_context(network, "eval"):
                    embedded = self.call.embed(network, ends).double().cpu()
                length = min(embedded[0].shape[0], embedded[1].shape[0])
                lines.append(F.line_probe(embedded[0][:length], embedded[1][:length], num_points))
            return lines
        return [F.line_probe(ends[0].double(), ends[1].double(), num_points) for ends in self._endpoints]

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
        if (args or kwargs) and not self.ready:
            self._use_arguments(args, kwargs)
        if not self.ready:
            raise RuntimeError(
                "ShatteringMeasurer.measure() needs the arguments the network is called with the first time "
                "(measure(step, inputs) or measure(step, **batch)), or a probe= and forward_fn="
            )
        if buffers is not None:
            with F.buffers_swapped(buffers):
                return self.measure(step)
        measured = F.unwrap_compiled(self.model)
        param = next((p for p in measured.parameters() if p.is_floating_point()), None)
        device = param.device if param is not None else torch.device("cpu")
        rank, world = process_group()
        error: Exception | None = None
        try:  # this process's part: no collective but a sharded forward's own
            probes = self.probes()
            share, pads = rank_share(len(probes), rank, world)
            mine = [probes[i] for i in share]
            cast = [
                p.to(device=device, dtype=param.dtype if param is not None and p.is_floating_point() else p.dtype)
                for p in mine + [probes[0]] * pads
            ]
            lines = self._line_gradients(measured, cast)[: len(mine)]
            tally = self._tally_for(device, sync=world > 1)
            tally.tokens = self._token_options()
            for line in lines:
                tally.add(line)
        except Exception as caught:  # noqa: BLE001 - whatever failed, the processes must agree on it first
            error = caught
        if any_process(error is not None, device):
            if error is not None:
                raise error
            raise MeasurementFailed(f"another process's measurement at step {step} failed (its warning names why)")
        result = tally.result(step, lines, len(probes))
        self._remember(result)
        return result

    def _token_options(self) -> tuple[F.TokenLayout, torch.Tensor | None] | None:
        """How the tally reads the token kernel (the layout, and the recorded call's attention mask), or None
        where the option is off."""
        if not self.options.token_kernel:
            return None
        return self.options.token_layout, self.call.token_mask() if self.call is not None else None

    def _tally_for(self, device: torch.device, sync: bool) -> _Tally:
        """This measurement's tally: the measurer's, emptied, unless the device or the world changed."""
        if self._tally is None or not self._tally.fits(self.block_names, device, sync):
            self._tally = _Tally(self.block_names, device, sync)
        else:
            self._tally.start()
        return self._tally

    def _measure_safely(self, step: int, buffers: Any) -> ShatteringResult:
        try:
            return self.measure(step, buffers=buffers)
        except Exception as error:  # noqa: BLE001 - a monitor never ends a run: warn, keep a NaN reading, go on
            cause = f"{type(error).__name__}: {error}"
            if not isinstance(error, MeasurementFailed) or process_group()[0] == 0:
                self._warn(cause)
            return self._failed(step, cause)

    def _safely(self, action: Any) -> str | None:
        """Run ``action()``; on an exception, warn once with its cause and return the cause."""
        try:
            action()
        except Exception as error:  # noqa: BLE001 - see _measure_safely
            cause = f"{type(error).__name__}: {error}"
            self._warn(cause)
            return cause
        return None

    def _failed(self, step: int, cause: str) -> ShatteringResult:
        result = ShatteringResult.failure(step, self.block_names, cause)
        self._remember(result)
        return result

    def _warn(self, cause: str) -> None:
        if cause in self._warned:
            return
        self._warned.add(cause)
        warnings.warn(
            f"ShatteringMeasurer: {cause}. Training goes on: a failed measurement is logged as NaN and the next due "
            "step tries again (this warning is given once per cause)",
            stacklevel=3,
        )

    def _remember(self, result: ShatteringResult) -> None:
        """Append ``result`` to the history (replacing one of the same step); only the latest keeps gradients."""
        kept = [r.without_gradients() for r in self.history if r.step != result.step]
        self.history = kept + [result]
        self.last_step = result.step

    def _line_gradients(self, measured: nn.Module, probes: list[torch.Tensor]) -> list[F.InputGradients]:
        """Input and block gradients along each probe (this process's share, padded), with the block outputs
        and the network output at each probe's two endpoints."""
        if self.options.bn_mode == "batch":  # each line normalizes with its own statistics: one batch per line
            return [self._gradients(measured, probe, None, [0, probe.shape[0] - 1]) for probe in probes]
        # eval mode: lines are independent; run them together, in chunks of at most a training batch
        sizes = [p.shape[0] for p in probes]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        ends = [index for start, size in zip(starts, sizes) for index in (start, start + size - 1)]
        chunk = self.options.chunk_size or max(self.batch_size or 1, MIN_CHUNK)
        whole = self._gradients(measured, torch.cat(probes), chunk, ends)

        def split(tensor: torch.Tensor | None, parts: list[int]) -> list[Any]:
            return list(tensor.split(parts)) if tensor is not None else [None] * len(parts)

        inputs, outputs = split(whole.input, sizes), split(whole.output, sizes)
        finals = split(whole.final_activations, [2] * len(probes))
        blocks = {name: g.split(sizes) for name, g in whole.blocks.items()}
        activations = {name: a.split(2) for name, a in whole.activations.items()}
        return [
            F.InputGradients(
                input=inputs[i],
                blocks={name: parts[i] for name, parts in blocks.items()},
                output=outputs[i],
                unreached=whole.unreached,
                activations={name: parts[i] for name, parts in activations.items()},
                final_activations=finals[i],
            )
            for i in range(len(probes))
        ]

    def _gradients(
        self, measured: nn.Module, probe: torch.Tensor, chunk: int | None, keep: list[int]
    ) -> F.InputGradients:
        forward_fn = self.options.forward_fn or (self.call.forward_fn(measured) if self.call is not None else None)
        try:
            return F.input_gradients(
                measured,
                probe,
                readout=self.readout,
                bn_mode=self.options.bn_mode,
                blocks=self.block_names,
                chunk_size=chunk,
                forward_fn=forward_fn,
                keep=keep,
            )
        except (ValueError, TypeError) as error:
            if self.options.forward_fn is None:
                raise
            raise type(error)(f"forward_fn=...: {error}") from error

    # ---- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The lines, the recorded call, the schedule's position and the history, as tensors and plain values
        (a checkpoint loads with ``torch.load(..., weights_only=True)``)."""
        return {
            "endpoints": self._endpoints,
            "fixed_probe": self._fixed_probe,
            "last_step": self.last_step,
            "batch_size": self.batch_size,
            "history": [result.entry() for result in self.history],
            "call": None if self.call is None else self.call.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (or an older monitor's checkpoint): a resumed run measures the
        same lines on the same schedule."""
        self._endpoints = state.get("endpoints")
        if self._endpoints is not None and self._endpoints.dim() > 0 and state.get("history") is None:
            self._endpoints = self._endpoints.unsqueeze(0)  # a checkpoint of the one-line monitor: (2, ...)
        if state.get("fixed_probe") is not None and self._fixed_probe is None:
            self._fixed_probe = state["fixed_probe"]
        self.last_step = int(state.get("last_step", -1))
        self.batch_size = state.get("batch_size")
        self.history = [ShatteringResult.from_entry(entry) for entry in state.get("history") or []]
        if state.get("call") is not None:
            self.call = RecordedCall.from_state(state["call"])


class _Tally:
    """One measurement's statistics: each line's values kept as plain numbers while the lines are read, then
    added to torchmetrics states at once and summed across processes in one all-reduce when the result is
    read (two collectives a measurement, the other for the blocks' status). The metric objects live as long as
    the measurer (made once per device and world: building two dozen of them cost a fifth of a small net's
    measurement)."""

    def __init__(self, blocks: list[str], device: torch.device, sync: bool) -> None:
        classes = _metric_classes()

        def metric(cls: type) -> Any:
            # float64 states: Metric.to(device) puts a metric back to the default dtype, float32; synced by result()
            return cls(sync_on_compute=False).to(device).set_dtype(torch.float64)

        self.blocks, self.device, self.sync = blocks, device, sync
        # one metric per key a line's values are noted under: a statistic's name, ("corr", block), (KERNEL, block)
        self.metrics: dict[Any, Any] = {key: metric(cls) for key, cls in classes.items()}
        for name in blocks:
            self.metrics["corr", name] = metric(classes["neighbor_corr"])
            for key in (KERNEL, TOKEN_KERNEL, TOKEN_RANK):  # each a mean over the lines
                self.metrics[key, name] = metric(classes[KERNEL])
        self.tokens: tuple[F.TokenLayout, torch.Tensor | None] | None = None  # (layout, mask); None: off
        self.start()

    def fits(self, blocks: list[str], device: torch.device, sync: bool) -> bool:
        return (self.blocks, self.device, self.sync) == (blocks, device, sync)

    def start(self) -> None:
        """Begin a measurement: no values, every state back to its default."""
        self.worst = [0] * (len(self.blocks) + 2)  # input, output, blocks
        self.values: dict[Any, list[float]] = {}
        self.token_status: dict[str, str] = {}  # block -> why it has no token reading (the first line's cause)
        for metric in self.metrics.values():
            metric.reset()

    def _note(self, key: Any, value: float | torch.Tensor) -> None:
        self.values.setdefault(key, []).append(float(value))

    def add(self, line: F.InputGradients) -> None:
        """Add one line's readings (local)."""
        main = line.input if line.input is not None else next(iter(line.blocks.values()))
        status, corr = F.block_reading(main)  # the status and the neighbour correlation in one pass
        worst = self.worst
        worst[0] = max(worst[0], _STATUS_ORDER.index(status))
        worst[1] = max(worst[1], int(line.output is not None and not torch.isfinite(line.output).all()))
        singular = F.singular_values(main)  # one decomposition for both ranks
        self._note("neighbor_corr", corr)
        self._note("effective_rank", F.effective_rank(main, singular=singular))
        self._note("stable_rank", F.stable_rank(main, singular=singular))
        if status != "flat":  # a flat gradient has no spectrum: left out
            self._note("spectral_slope", F.spectral_slope(main))
        if line.final_activations is not None:
            self._note(KERNEL, F.endpoint_cosine(line.final_activations))
        for index, name in enumerate(self.blocks, start=2):
            block_status, corr = F.block_reading(line.blocks[name], reached=name not in line.unreached)
            worst[index] = max(worst[index], _STATUS_ORDER.index(block_status))
            self._note(("corr", name), corr)
            if name in line.activations:
                self._note((KERNEL, name), F.endpoint_cosine(line.activations[name]))
                if self.tokens is not None:
                    self._add_tokens(name, F.token_readings(line.activations[name], *self.tokens))

    def _add_tokens(self, name: str, reading: F.TokenReading) -> None:
        if reading.status == "measured":
            self._note((TOKEN_KERNEL, name), reading.kernel)
            self._note((TOKEN_RANK, name), reading.rank)
        else:
            self.token_status.setdefault(name, reading.status)

    def _fill(self) -> None:
        """Every metric's states from this process's values: one update each."""
        for key, values in self.values.items():
            self.metrics[key].add(torch.tensor(values, dtype=torch.float64, device=self.device))

    def _token_reading(self, name: str) -> tuple[float, float, str]:
        """A block's token kernel and rank (means over the lines of every process) and its status."""
        if self.tokens is None:
            return math.nan, math.nan, "off"
        kernel, _, count = self.metrics[TOKEN_KERNEL, name].mean_and_std()
        if not count:
            return math.nan, math.nan, self.token_status.get(name, "no token axis")
        return kernel, self.metrics[TOKEN_RANK, name].mean_and_std()[0], "measured"

    def result(self, step: int, lines: list[F.InputGradients], total: int) -> ShatteringResult:
        """The synced result (a collective under a process group)."""
        self._fill()
        worst = torch.tensor(self.worst, dtype=torch.int64, device=self.device)
        if self.sync:  # every process labels each block by the worst line of all processes
            torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
            from lightning_callbacks.metrics import sum_across_processes  # imported with the metrics (lazily)

            sum_across_processes(list(self.metrics.values()))  # the metrics in one order on every process
        statistics = {}
        for key in _metric_classes():
            mean, std, count = self.metrics[key].mean_and_std()
            if count:
                statistics[key] = (mean, std)
        corr = {name: self.metrics["corr", name].mean_and_std()[0] for name in self.blocks}
        kernel = {name: self.metrics[KERNEL, name].mean_and_std()[:2] for name in self.blocks}
        tokens = {name: self._token_reading(name) for name in self.blocks}
        # blocks in the order the forward pass ran them (this process's lines, else registration order)
        order = list(lines[0].blocks) if lines else self.blocks
        readings = []
        for name in order:
            status = _STATUS_ORDER[int(worst[2 + self.blocks.index(name)])]
            value = corr[name] if status in F.MEASURABLE else math.nan
            readings.append(BlockReading(name, value, status, *kernel[name], *tokens[name]))
        first = lines[0] if lines else None
        gradients = None
        if first is not None:
            gradients = first.input if first.input is not None else next(iter(first.blocks.values()), None)
        return ShatteringResult(
            step=step,
            statistics=statistics,
            input_status=_STATUS_ORDER[int(worst[0])],
            blocks=readings,
            lines=total,
            gradients=gradients,
            output_finite=not bool(worst[1]),
        )


def check_embedding(network: nn.Module, call: RecordedCall) -> None:
    """A token-id call needs an embedding to probe: refuse one without, naming what ran."""
    found = ", ".join(call.embeddings_seen) or "none"
    if call.embedding is None:
        raise TypeError(
            f"the probed input holds {call.inputs.dtype} values (token ids?) but no nn.Embedding ran in the "
            "network's forward; pass embedding=<the module that embeds them> or forward_fn=<callable(module, probe)>"
        )
    try:
        network.get_submodule(call.embedding)
    except AttributeError:
        raise ValueError(
            f"embedding={call.embedding!r}: no such module in {type(network).__name__}; the nn.Embedding modules "
            f"that ran: {found}"
        ) from None
