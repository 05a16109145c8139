"""The framework-free shattering measurer: a model and options in, a typed result out.

:class:`ShatteringMeasurer` holds everything a measurement needs across a run: the network, the
probe lines (fixed at the first call it sees, saved in its ``state_dict``), how the network is
called (a :class:`~lightning_callbacks.replay.RecordedCall`), the schedule and the history. It
imports no training framework: the Lightning callback (:mod:`lightning_callbacks.shattering`),
the Hugging Face callback (:mod:`lightning_callbacks.hf`) and a plain PyTorch loop all use it::

    measurer = ShatteringMeasurer(model)
    for step, batch in enumerate(loader):
        if measurer.due(step):
            print(measurer.measure(step, **batch).scalars())  # the arguments the model is called with
        ...  # the training step, untouched

Under ``torch.distributed`` (DDP, FSDP) every process calls :meth:`~ShatteringMeasurer.measure`
at the same steps: the lines are rank 0's, each process measures its share, and the statistics
are synced (torchmetrics), so every process gets the single-process result. Every process runs
the same number of probe passes, padding its share with a repeat of a line whose result it
drops: a sharded network gathers its parameters in every forward, and a process that stopped
early would leave the others waiting.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.replay import CallRecorder, ForwardFn, RecordedCall, call_of, embeddings_run

__all__ = [
    "ShatteringMeasurer",
    "ShatteringResult",
    "BlockReading",
    "Schedule",
    "early_steps",
    "line_pairs",
    "rank_share",
]


def _metric_classes() -> dict[str, type]:
    """The torchmetrics classes of the input-level statistics, imported on first use: importing torchmetrics
    imports transformers where it is installed, which a plain loop's import of the measurer should not."""
    from lightning_callbacks.metrics import EffectiveRank, GradientCorrelation, SpectralSlope, StableRank

    return {
        "neighbor_corr": GradientCorrelation,
        "effective_rank": EffectiveRank,
        "stable_rank": StableRank,
        "spectral_slope": SpectralSlope,
    }


# the worse of two lines' statuses is the block's (and is what every process agrees on)
_STATUS_ORDER: tuple[F.Status, ...] = ("flat", "measured", "zero", "non-finite", "missing")


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


def rank_share(num_lines: int, rank: int, world: int) -> tuple[list[int], int]:
    """The lines process ``rank`` of ``world`` measures (round robin), and how many padding passes it adds so
    that every process runs as many probe passes as the busiest one (a sharded forward is collective)."""
    share = list(range(rank, num_lines, world))
    return share, -(-num_lines // world) - len(share)


def _distributed() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def broadcast_from_rank_zero(state: Any) -> Any:
    """Rank 0's ``state`` on every process (itself without a process group), sent as ``torch.save`` bytes:
    handing tensors to an object broadcast made a spawned gloo process abort at exit now and then."""
    if _distributed()[1] == 1:
        return state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = [buffer.getvalue()]
    torch.distributed.broadcast_object_list(payload, src=0)
    return torch.load(io.BytesIO(payload[0]), weights_only=True)


@dataclass(frozen=True)
class BlockReading:
    """One block's reading: its neighbour correlation (NaN unless ``status`` is ``"measured"`` or ``"flat"``)
    and what its gradients allowed (see :func:`~lightning_callbacks.functional.gradient_status`)."""

    name: str
    neighbor_corr: float
    status: F.Status


@dataclass
class ShatteringResult:
    """What one measurement found (identical on every process).

    Attributes:
        step: the training step it was taken at.
        statistics: input-level ``neighbor_corr``, ``effective_rank``, ``stable_rank`` and
            ``spectral_slope`` as ``(mean, sample std)`` across the lines (the spectral slope is
            left out where every line is flat: no spectrum); for token ids, of the gradient w.r.t.
            the embeddings.
        input_status: the worst status among the lines' input-level gradients.
        blocks: the per-block readings, in the order the forward pass ran the blocks.
        lines: how many lines were measured (all processes together).
        gradients: the first line's input-level gradients ``(points, ...)`` for figures (rank 0's line).
        output_finite: whether the network's output (through the readout) was finite at every point.
    """

    step: int
    statistics: dict[str, tuple[float, float]]
    input_status: F.Status
    blocks: list[BlockReading] = field(default_factory=list)
    lines: int = 0
    gradients: torch.Tensor | None = None
    output_finite: bool = True

    def scalars(self, prefix: str = "shattering") -> dict[str, float]:
        """The logged keys: ``<prefix>/<statistic>`` and ``<prefix>/<statistic>_std``, and
        ``<prefix>/neighbor_corr/<block>`` for every block (NaN for one with no reading)."""
        out: dict[str, float] = {}
        for key, (mean, std) in self.statistics.items():
            out[f"{prefix}/{key}"] = mean
            out[f"{prefix}/{key}_std"] = std
        out.update({f"{prefix}/neighbor_corr/{b.name}": b.neighbor_corr for b in self.blocks})
        return out

    def profile(self) -> F.DepthProfile | None:
        """The depth profile of the blocks that have a reading (None with fewer than two)."""
        read = [b for b in self.blocks if b.status in F.MEASURABLE and math.isfinite(b.neighbor_corr)]
        if len(read) < 2:
            return None
        return F.profile_from_correlations([b.name for b in read], [b.neighbor_corr for b in read])

    def history_entry(self) -> dict[str, Any]:
        """The entry kept in :attr:`ShatteringMeasurer.history` (plain values: it goes into checkpoints and
        JSON): ``step``, ``stats`` (finite input-level statistics as (mean, std)), ``layers`` (block ->
        correlation) and ``status`` (block -> status, for the blocks without a reading)."""
        return {
            "step": self.step,
            "stats": {k: v for k, v in self.statistics.items() if math.isfinite(v[0])},
            "layers": {b.name: b.neighbor_corr for b in self.blocks},
            "status": {b.name: b.status for b in self.blocks if b.status not in F.MEASURABLE},
        }


class ShatteringMeasurer:
    """Measures how shattered a network's input gradients are, in any training loop (see the module docstring).

    At each measurement it takes the gradient of a scalar readout of the network at every point of
    ``num_lines`` probe lines (``num_points`` inputs each, between distinct pairs of samples of the
    first call it sees), and at the output of each block, and returns a :class:`ShatteringResult`.
    It never changes what training computes: no parameter ``.grad``, buffer, module mode or RNG
    state is left changed (see :func:`~lightning_callbacks.functional.input_gradients`).

    Args:
        model: the network to measure (a ``torch.compile``d one is measured through its original).
        every_n_steps: :meth:`due` at every multiple of this step.
        log_spaced_start: also due at 1, 2, 5, 10, 20, 50... before ``every_n_steps``.
        num_lines: probe lines (between distinct sample pairs of the first call's input).
        num_points: points on each line.
        probe: one fixed probe ``(n, ...)`` ordered along a path, instead of the lines.
        layers: ``"auto"`` (:func:`~lightning_callbacks.functional.auto_layers`), a list of submodule
            names, or ``None`` for the input only.
        bn_mode: ``"eval"`` (running statistics) or ``"batch"`` (each line is its own batch).
        readout: callable mapping the output ``(n, ...)`` to ``(n,)``; default a seeded random unit
            projection of the ``logits`` or first per-sample tensor (never a scalar loss).
        forward_fn: ``forward_fn(model, probe) -> output`` instead of replaying the recorded call.
        embedding: for token-id inputs, the embedding module whose output is probed (default: the
            first ``nn.Embedding`` the forward runs).
        chunk_size: most probe points per forward pass in eval mode (default: the first call's batch size).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        every_n_steps: int = 1000,
        log_spaced_start: bool = True,
        num_lines: int = 4,
        num_points: int = 64,
        probe: torch.Tensor | None = None,
        layers: str | Sequence[str] | None = "auto",
        bn_mode: F.BNMode = "eval",
        readout: F.Readout | None = None,
        forward_fn: ForwardFn | None = None,
        embedding: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        check_options(
            every_n_steps=every_n_steps,
            num_lines=num_lines,
            num_points=num_points,
            probe=probe,
            layers=layers,
            readout=readout,
            forward_fn=forward_fn,
            embedding=embedding,
            chunk_size=chunk_size,
        )
        if not isinstance(model, nn.Module):
            raise TypeError(f"ShatteringMeasurer measures an nn.Module, got {type(model).__name__}")
        self.model = model
        self.every_n_steps = every_n_steps
        self.num_lines = num_lines
        self.num_points = num_points
        self.bn_mode = F.check_bn_mode(bn_mode)
        self.readout = readout or F.random_projection_readout()
        self.forward_fn = forward_fn
        self.embedding = embedding
        self.chunk_size = chunk_size
        self.schedule = Schedule(every_n_steps, log_spaced_start)
        measured = F.unwrap_compiled(model)
        names = F.auto_layers(measured) if layers == "auto" else list(layers or [])
        self.layer_names: list[str] = list(F.resolve_layers(measured, names))
        self.call: RecordedCall | None = None
        self._fixed_probe = None if probe is None else probe.detach().clone()
        self._endpoints: torch.Tensor | None = None  # (lines, 2, ...): each line's two samples
        self.batch_size: int | None = None
        self.last_step = -1
        self.history: list[dict[str, Any]] = []

    # ---- schedule ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is a step of the schedule that has not been measured yet."""
        return self.schedule.due(step) and step != self.last_step

    # ---- how the network is called -------------------------------------------------------
    @property
    def ready(self) -> bool:
        """Whether it knows how to call the network and along which lines (after the first call it saw)."""
        has_probe = self._fixed_probe is not None or self._endpoints is not None
        return has_probe and (self.forward_fn is not None or self.call is not None)

    def record(self, *args: Any, **kwargs: Any) -> None:
        """Keep the network's call with these arguments (the first time only): the lines run between the
        samples of its input, and every measurement replays it with the probe in the input's place."""
        if self.ready:
            return
        call = call_of(args, kwargs)
        if call.discrete and self.forward_fn is None:
            # token ids: which embedding consumes them shows only in a run (one sample, measured invisibly)
            network = F.unwrap_compiled(self.model)
            with F.measurement_context(network, "eval"):
                call.embeddings_seen = embeddings_run(network, call)
            call.embedding = self.embedding or (call.embeddings_seen[0] if call.embeddings_seen else None)
        self.use_call(call)

    def start_recording(self) -> CallRecorder:
        """Hooks that record the network's next call (for adapters that do not see its arguments);
        hand the recorder to :meth:`finish_recording` once that call has run."""
        return CallRecorder(F.unwrap_compiled(self.model), self.embedding)

    def finish_recording(self, recorder: CallRecorder) -> None:
        """Use the call ``recorder`` saw (rank 0's, on every process)."""
        recorder.remove()
        if recorder.call is None:
            raise RuntimeError(
                f"the measured network ({type(recorder.network).__name__}) did not run in the training step; "
                "tell the monitor which one does (module=...)"
            )
        self.use_call(recorder.call)

    def use_call(self, call: RecordedCall) -> None:
        """Replay ``call`` (rank 0's, on every process) and, without a fixed probe, run the lines between the
        samples of its input."""
        call = RecordedCall.from_state(broadcast_from_rank_zero(call.state()))
        if call.discrete and self.forward_fn is None:
            check_embedding(F.unwrap_compiled(self.model), call)
        self.call = call
        if self.batch_size is None:
            self.batch_size = int(call.inputs.shape[0])
        if self._fixed_probe is None and self._endpoints is None:
            self.set_lines(call.inputs, broadcast=False)

    def set_lines(self, inputs: torch.Tensor, broadcast: bool = True) -> None:
        """Fix the lines between pairs of samples of ``inputs`` (rank 0's, on every process)."""
        if not (inputs.is_floating_point() or self.call is not None):
            raise TypeError(
                f"the lines run between inputs, but the batch holds {inputs.dtype} inputs and forward_fn is given: "
                "pass probe=<(n, ...) inputs ordered along a path>, or leave forward_fn out to probe the "
                "embedding's output"
            )
        if self.batch_size is None:
            self.batch_size = int(inputs.shape[0])
        pairs = line_pairs(inputs.shape[0], self.num_lines)
        if len(pairs) < self.num_lines:
            import warnings

            warnings.warn(
                f"the first batch has {inputs.shape[0]} samples, enough for {len(pairs)} of the {self.num_lines} "
                f"probe lines; measuring {len(pairs)}",
                stacklevel=2,
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
        if self.call is not None and self.call.discrete and self.forward_fn is None:
            lines, network = [], F.unwrap_compiled(self.model)
            for ends in self._endpoints:
                with F.measurement_context(network, "eval"):
                    embedded = self.call.embed(network, ends).double().cpu()
                length = min(embedded[0].shape[0], embedded[1].shape[0])
                lines.append(F.line_probe(embedded[0][:length], embedded[1][:length], self.num_points))
            return lines
        return [F.line_probe(ends[0].double(), ends[1].double(), self.num_points) for ends in self._endpoints]

    # ---- measurement ---------------------------------------------------------------------
    def measure(
        self,
        step: int,
        *args: Any,
        buffers: Sequence[tuple[nn.Module, str, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> ShatteringResult:
        """Measure now; every process of a process group must call it at the same step.

        Args:
            step: the training step (optimizer steps taken so far).
            *args, **kwargs: the arguments the network is called with in training; needed until a call is
                known (the first call's; later ones are ignored).
            buffers: measure with these buffer copies (:func:`~lightning_callbacks.functional.buffer_copies`)
                in place, e.g. the BN statistics from before a training forward that has since run.
        """
        if (args or kwargs) and not self.ready:
            if self.forward_fn is not None and self._fixed_probe is None and self._endpoints is None:
                self.set_lines(call_of(args, kwargs).inputs)
            else:
                self.record(*args, **kwargs)
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
        probes = self.probes()
        rank, world = _distributed()
        share, pads = rank_share(len(probes), rank, world)
        mine = [probes[i] for i in share]
        padded = mine + [probes[0]] * pads
        cast = [
            p.to(device=device, dtype=param.dtype if param is not None and p.is_floating_point() else p.dtype)
            for p in padded
        ]
        lines = self._line_gradients(measured, cast)[: len(mine)]
        result = self._summarize(step, lines, device, world > 1, len(probes))
        self.last_step = step
        self.history = [e for e in self.history if e["step"] != step] + [result.history_entry()]
        return result

    def _line_gradients(self, measured: nn.Module, probes: list[torch.Tensor]) -> list[F.InputGradients]:
        """Input and block gradients along each probe (this process's share, padded)."""
        if self.bn_mode == "batch":  # each line normalizes with its own statistics: one batch per line
            return [self._gradients(measured, probe, None) for probe in probes]
        # eval mode: lines are independent; run them together, in chunks of at most a training batch
        whole = self._gradients(measured, torch.cat(probes), self.chunk_size or self.batch_size)
        sizes = [p.shape[0] for p in probes]
        inputs = whole.input.split(sizes) if whole.input is not None else [None] * len(probes)
        outputs = whole.output.split(sizes) if whole.output is not None else [None] * len(probes)
        layers = {name: g.split(sizes) for name, g in whole.layers.items()}
        return [
            F.InputGradients(
                input=inputs[i],
                layers={name: parts[i] for name, parts in layers.items()},
                output=outputs[i],
                unreached=whole.unreached,
            )
            for i in range(len(probes))
        ]

    def _gradients(self, measured: nn.Module, probe: torch.Tensor, chunk: int | None) -> F.InputGradients:
        forward_fn = self.forward_fn or (self.call.forward_fn(measured) if self.call is not None else None)
        try:
            return F.input_gradients(
                measured,
                probe,
                readout=self.readout,
                bn_mode=self.bn_mode,
                layers=self.layer_names,
                chunk_size=chunk,
                forward_fn=forward_fn,
            )
        except (ValueError, TypeError) as error:
            if self.forward_fn is None:
                raise
            raise type(error)(f"forward_fn=...: {error}") from error

    def _summarize(
        self, step: int, lines: list[F.InputGradients], device: torch.device, sync: bool, total: int
    ) -> ShatteringResult:
        classes = _metric_classes()

        def metric(cls: type) -> Any:
            # float64 states: Metric.to(device) puts a metric back to the default dtype, float32
            return cls(sync_on_compute=sync).to(device).set_dtype(torch.float64)

        metrics = {key: metric(cls) for key, cls in classes.items()}
        blocks = {name: metric(classes["neighbor_corr"]) for name in self.layer_names}
        worst = torch.zeros(len(self.layer_names) + 2, dtype=torch.int64, device=device)  # input, output, blocks
        for grads in lines:
            main = grads.input if grads.input is not None else next(iter(grads.layers.values()))
            status = F.gradient_status(main)
            worst[0] = max(int(worst[0]), _STATUS_ORDER.index(status))
            worst[1] = max(int(worst[1]), int(grads.output is not None and not torch.isfinite(grads.output).all()))
            for key, metric in metrics.items():
                if key == "spectral_slope" and status == "flat":
                    continue  # a flat gradient has no spectrum: left out, not NaN
                metric.update(main)
            for index, name in enumerate(self.layer_names, start=2):
                block_status, corr = F.block_reading(grads.layers[name], reached=name not in grads.unreached)
                worst[index] = max(int(worst[index]), _STATUS_ORDER.index(block_status))
                blocks[name].add(corr)
        if sync:  # every process labels each block by the worst line of all processes
            torch.distributed.all_reduce(worst, op=torch.distributed.ReduceOp.MAX)
        statistics = {}
        for key, metric in metrics.items():
            mean, std, count = metric.mean_and_std()  # a collective when synced: every process calls it
            if count:
                statistics[key] = (mean, std)
        # blocks in the order the forward pass ran them (this process's lines, else registration order)
        order = list(lines[0].layers) if lines else self.layer_names
        readings = []
        for name in order:
            mean = blocks[name].mean_and_std()[0]
            status = _STATUS_ORDER[int(worst[2 + self.layer_names.index(name)])]
            readings.append(BlockReading(name, mean if status in F.MEASURABLE else math.nan, status))
        first = lines[0] if lines else None
        return ShatteringResult(
            step=step,
            statistics=statistics,
            input_status=_STATUS_ORDER[int(worst[0])],
            blocks=readings,
            lines=total,
            gradients=None
            if first is None
            else (first.input if first.input is not None else next(iter(first.layers.values()), None)),
            output_finite=not bool(worst[1]),
        )

    # ---- checkpointing -------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The lines, the recorded call, the schedule's position and the history (tensors and plain values)."""
        return {
            "endpoints": self._endpoints,
            "fixed_probe": self._fixed_probe,
            "last_step": self.last_step,
            "batch_size": self.batch_size,
            "history": self.history,
            "call": None if self.call is None else self.call.state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved: a resumed run measures the same lines on the same schedule."""
        self._endpoints = state.get("endpoints")
        if self._endpoints is not None and self._endpoints.dim() > 0 and state.get("history") is None:
            self._endpoints = self._endpoints.unsqueeze(0)  # a checkpoint of the one-line monitor: (2, ...)
        if state.get("fixed_probe") is not None and self._fixed_probe is None:
            self._fixed_probe = state["fixed_probe"]
        self.last_step = int(state.get("last_step", -1))
        self.batch_size = state.get("batch_size")
        self.history = list(state.get("history") or [])
        if state.get("call") is not None:
            self.call = RecordedCall.from_state(state["call"])


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


def check_options(**options: Any) -> None:
    """Refuse bad measurer options (as :class:`ShatteringMeasurer` takes them; others are ignored) with an
    error that names the option and the fix. Every adapter calls it when it is built, before it knows
    the network."""
    every_n_steps, num_lines = options.get("every_n_steps", 1000), options.get("num_lines", 4)
    num_points, chunk_size, probe = options.get("num_points", 64), options.get("chunk_size"), options.get("probe")
    layers, readout, forward_fn = options.get("layers", "auto"), options.get("readout"), options.get("forward_fn")
    embedding = options.get("embedding")
    for name, value in (("every_n_steps", every_n_steps), ("num_lines", num_lines)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}={value!r}: use a positive integer")
    if not isinstance(num_points, int) or num_points < 2:
        raise ValueError(f"num_points={num_points!r}: a probe line needs at least 2 points")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size={chunk_size!r}: use a positive integer, or None for the batch size")
    if probe is not None and (not isinstance(probe, torch.Tensor) or probe.dim() < 1 or probe.shape[0] < 2):
        raise ValueError("probe must be a tensor (n, ...) of n >= 2 inputs ordered along a path")
    if isinstance(layers, str) and layers != "auto":
        raise ValueError(f"layers={layers!r}: use 'auto', a list of submodule names, or None")
    if readout is not None and not callable(readout):
        raise TypeError("readout must be a callable mapping outputs (n, ...) to scalars (n,)")
    if forward_fn is not None and not callable(forward_fn):
        raise TypeError(f"forward_fn must be a callable(module, probe) -> output, got {type(forward_fn).__name__}")
    if embedding is not None and not isinstance(embedding, str):
        raise TypeError(f"embedding must be the name of a submodule, got {type(embedding).__name__}")
    F.check_bn_mode(options.get("bn_mode", "eval"))
