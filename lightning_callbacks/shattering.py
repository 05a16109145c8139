"""``ShatteringMonitor``: measure gradient shattering inside any Lightning Trainer."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.metrics import EffectiveRank, GradientCorrelation, SpectralSlope, StableRank
from lightning_callbacks.plotting import (
    plot_covariance,
    plot_depth_profile,
    plot_gradient_traces,
    plot_training_summary,
)
from lightning_callbacks.replay import CallRecorder, ForwardFn, RecordedCall

try:  # one class serves both namespaces: each Trainer checks isinstance(callback, <its own> Callback)
    from lightning.pytorch import Callback as _LightningCallback
    from lightning.pytorch import LightningModule as _LightningModule
    from lightning.pytorch.utilities import rank_zero_warn
except ImportError:  # pragma: no cover - only pytorch_lightning installed
    _LightningCallback = _LightningModule = None  # type: ignore[assignment,misc]
    from pytorch_lightning.utilities import rank_zero_warn
try:
    from pytorch_lightning import Callback as _PLCallback
    from pytorch_lightning import LightningModule as _PLModule
except ImportError:  # pragma: no cover - only lightning installed
    _PLCallback = _PLModule = None  # type: ignore[assignment,misc]

_BASES = tuple(c for c in (_LightningCallback, _PLCallback) if c is not None)
_MODULE_BASES = tuple(c for c in (_LightningModule, _PLModule) if c is not None)
_BASE_FORWARDS = {m.forward for m in _MODULE_BASES}

__all__ = ["ShatteringMonitor", "early_steps"]

_INPUT_STATISTICS = {
    "neighbor_corr": GradientCorrelation,
    "effective_rank": EffectiveRank,
    "stable_rank": StableRank,
    "spectral_slope": SpectralSlope,
}


def _batch_inputs(batch: Any) -> torch.Tensor:
    """The batch's input tensor: the batch itself, its first tensor, or its 'input'-like entry."""
    if isinstance(batch, Mapping):
        for key in ("image", "images", "input", "inputs", "x", "pixel_values", "input_ids"):
            if isinstance(batch.get(key), torch.Tensor):
                return _batch_inputs(batch[key])
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, torch.Tensor):
                return _batch_inputs(item)
        raise ValueError("ShatteringMonitor found no tensor in the training batch; pass probe=<tensor (n, ...)>")
    if not isinstance(batch, torch.Tensor) or batch.dim() == 0 or batch.shape[0] < 2:
        raise ValueError(
            "ShatteringMonitor needs a first training batch of >= 2 samples to build its probe lines; "
            "pass probe=<tensor (n, ...)> or use a larger batch"
        )
    return batch


def line_pairs(num_samples: int, num_lines: int) -> list[tuple[int, int]]:
    """Distinct sample pairs for ``num_lines`` probe lines: disjoint ``(0, 1), (2, 3), ...`` where the batch
    allows, else neighbouring ``(0, 1), (1, 2), ...``; fewer when the batch has fewer distinct pairs."""
    if num_samples >= 2 * num_lines:
        return [(2 * i, 2 * i + 1) for i in range(num_lines)]
    return [(i, i + 1) for i in range(min(num_lines, num_samples - 1))]


def early_steps(every_n_steps: int) -> list[int]:
    """The log-spaced steps measured before ``every_n_steps``: 0, 1, 2, 5, 10, 20, 50, 100, ..."""
    steps, decade = [0], 1
    while decade < every_n_steps:
        steps += [s for s in (decade, 2 * decade, 5 * decade) if s < every_n_steps]
        decade *= 10
    return steps


def _broadcast_state(trainer: Any, state: dict[str, Any]) -> dict[str, Any]:
    """Rank 0's ``state`` on every process, sent as ``torch.save`` bytes.

    Handing the tensors themselves to the strategy's object broadcast made a spawned process abort at
    exit now and then (gloo, ``ddp_spawn``); plain bytes do not.
    """
    if int(getattr(trainer, "world_size", 1)) == 1:
        return state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    data = trainer.strategy.broadcast(buffer.getvalue(), src=0)
    return torch.load(io.BytesIO(data), weights_only=True)


def _takes_figures(logger: Any) -> bool:
    """Loggers the monitor sends figures to: TensorBoard (``add_figure``) and W&B (``log_image``)."""
    if type(logger).__name__ == "WandbLogger":
        return True
    return hasattr(getattr(logger, "experiment", None), "add_figure")


def _log_dir(trainer: Any) -> Path:
    """The first logger's folder, as ``trainer.log_dir`` has it, without its broadcast (this runs on rank 0 only)."""
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    return Path(folder)


class ShatteringMonitor(*_BASES):  # type: ignore[misc]
    """Log how shattered the model's input gradients are while it trains.

    At step 0 (initialization), at log-spaced steps until ``every_n_steps`` (1, 2, 5, 10, 20,
    50, ...: the early phase, where shattering changes most) and then every ``every_n_steps``
    optimizer steps, the monitor takes the gradient of a scalar readout of the network at
    every point of ``num_lines`` probe lines (``num_points`` inputs each, between distinct
    pairs of samples of the first training batch; fixed for the run and saved in checkpoints)
    and logs, through the Trainer's loggers at ``trainer.global_step``, the mean over the
    lines and its spread across them (``<key>_std``):

    - ``shattering/neighbor_corr``: autocorrelation at lag 1 (1 = smooth, 0 = white noise),
    - ``shattering/effective_rank`` and ``shattering/stable_rank`` of each line's gradient matrix,
    - ``shattering/spectral_slope``: 0 for white noise, 2 for brown noise (left out for a line
      whose gradient is flat, equal at every point as a linear net's is: it has no spectrum),
    - ``shattering/neighbor_corr/<block>``: the same at each block's output (a depth profile).

    The values are also copied into ``trainer.callback_metrics`` (so ``EarlyStopping`` and
    ``ModelCheckpoint`` can monitor them), and kept in :attr:`history`. Under DDP each process
    measures its share of the lines and the torchmetrics states (:mod:`lightning_callbacks.metrics`)
    are synced, so the logged values equal a single process's.

    **Which network.** ``module``, else the one child of the LightningModule that holds all of
    its parameters (``self.model``, ``self.net``, ``self.backbone``...), else the
    LightningModule itself if it defines ``forward``. **Which blocks.** ``layers="auto"``
    (:func:`~lightning_callbacks.functional.auto_layers`): a timm or zoo model's repeated blocks
    (``stages.N.M``, ``layerN.M``, ``blocks.N``, ``encoder.layers.N``...) and stem, else the
    top-level layers. **How it is called.** The network's first training call is recorded
    (:mod:`lightning_callbacks.replay`) and replayed with the probe in place of its input:
    masks, targets, keyword and non-tensor arguments come from the first sample, repeated along
    the probe. The lines run between samples of that input, as the network receives it. For
    token ids the lines run between two samples' *embedding outputs* (the first ``nn.Embedding``
    the forward runs, or ``embedding=``) and each probe point is injected as that module's
    output; the input-level statistics are those of the gradient w.r.t. the embeddings. The
    first measurement happens right after the first forward (before any update), once the call
    is known; ``forward_fn`` replaces the replay where it cannot serve.

    **Figures** (``log_figures``): gradient traces, the covariance image and the depth profile
    of each measurement, and a summary (neighbor correlation per block x step, and each
    statistic vs step with its spread), to TensorBoard/W&B loggers, and as PNGs under
    ``<log_dir>/shattering/``: ``<figure>.png`` (the latest, overwritten), ``<figure>_init.png``
    (step 0) and ``summary.png`` (written at the end of fit): a bounded number of files.

    The measurement never changes what training computes: no parameter ``.grad``, buffer,
    module mode or RNG state is left changed (see :func:`~lightning_callbacks.functional.input_gradients`).
    In eval mode it runs the probe in chunks of the training batch size, so it never holds
    more activations than a training step.

    Args:
        every_n_steps: measure when ``global_step`` is a multiple of this.
        num_lines: probe lines (between distinct sample pairs of the first batch).
        num_points: points on each line; the default 4 x 64 costs what one 256-point line does.
        log_spaced_start: also measure at 1, 2, 5, 10, 20, 50... before ``every_n_steps``.
        probe: one fixed probe ``(n, ...)`` ordered along a path, instead of the lines.
        layers: ``"auto"``, a list of submodule names of the measured network, or ``None``
            for the input only.
        bn_mode: ``"eval"`` (running statistics) or ``"batch"`` (the paper's probe
            statistics; each line is then its own batch).
        readout: callable mapping the output ``(n, ...)`` to ``(n,)``; default a seeded random
            unit projection (class-agnostic).
        log_figures: log figures and write the PNGs.
        module: the network to measure: an ``nn.Module`` or the name of an attribute of the
            LightningModule (see *Which network*).
        prefix: prefix of the logged keys.
        chunk_size: most probe points per forward pass in eval mode (default: the first
            training batch's size).
        forward_fn: ``forward_fn(module, probe) -> output`` runs the measured network on a probe
            instead of the recorded call (the lines then come from the batch's first tensor).
        embedding: for token-id inputs, the name of the embedding module whose output is probed.
        measure_at_end: also measure the trained network when fit ends (the schedule measures
            before a step, so the weights after the last step are otherwise never seen).
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        num_lines: int = 4,
        num_points: int = 64,
        log_spaced_start: bool = True,
        probe: torch.Tensor | None = None,
        layers: str | Sequence[str] | None = "auto",
        bn_mode: F.BNMode = "eval",
        readout: F.Readout | None = None,
        log_figures: bool = True,
        module: nn.Module | str | None = None,
        prefix: str = "shattering",
        chunk_size: int | None = None,
        forward_fn: ForwardFn | None = None,
        embedding: str | None = None,
        measure_at_end: bool = True,
    ) -> None:
        for name, value, least in (("every_n_steps", every_n_steps, 1), ("num_lines", num_lines, 1)):
            if not isinstance(value, int) or value < least:
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
        self.every_n_steps = every_n_steps
        self.num_lines = num_lines
        self.num_points = num_points
        self.log_spaced_start = log_spaced_start
        self.layers = layers
        self.bn_mode = F.check_bn_mode(bn_mode)
        self.readout = readout or F.random_projection_readout()
        self.log_figures = log_figures
        self.module = module
        self.prefix = prefix
        self.chunk_size = chunk_size
        self.forward_fn = forward_fn
        self.embedding = embedding
        self.measure_at_end = measure_at_end
        self._call: RecordedCall | None = None
        self._recorder: CallRecorder | None = None
        self._pending: int | None = None
        self._pending_buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
        self._fixed_probe = None if probe is None else probe.detach().clone()
        self._endpoints: torch.Tensor | None = None  # (lines, 2, ...): each line's two samples
        self._batch_size: int | None = None
        self._last_step = -1
        self._early = set(early_steps(every_n_steps)) if log_spaced_start else {0}
        self._model: nn.Module | None = None
        self._layer_names: list[str] = []
        self._warned: set[str] = set()
        self.history: list[dict[str, Any]] = []
        self.last_measurement: dict[str, float] = {}
        self._latest_grads: torch.Tensor | None = None
        self._overview: tuple[int, dict[str, Any]] | None = None  # (step, figures) of the latest overview

    # ---- configuration -------------------------------------------------------------------
    def _resolve_module(self, pl_module: nn.Module) -> nn.Module:
        if isinstance(self.module, nn.Module):
            return self.module
        if isinstance(self.module, str):
            found = getattr(pl_module, self.module, None)
            if not isinstance(found, nn.Module):
                raise ValueError(f"module={self.module!r}: {type(pl_module).__name__} has no such nn.Module attribute")
            return found
        owners = {name.split(".", 1)[0] for name, _ in pl_module.named_parameters()}
        if len(owners) == 1:
            (owner,) = owners
            child = getattr(pl_module, owner, None)
            if isinstance(child, nn.Module):  # all parameters in one child: the real network
                return child
        if type(pl_module).forward not in _BASE_FORWARDS:
            return pl_module
        raise ValueError(
            f"{type(pl_module).__name__} defines no forward and its parameters are not all in one child "
            f"(found {', '.join(sorted(owners)) or 'none'}): tell ShatteringMonitor which network to measure "
            "with module=<attribute name or nn.Module>"
        )

    @property
    def layer_names(self) -> list[str]:
        """The blocks profiled (``layers="auto"`` resolved)."""
        return list(self._layer_names)

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._model = self._resolve_module(pl_module)
        measured = F.unwrap_compiled(self._model)
        names = F.auto_layers(measured) if self.layers == "auto" else list(self.layers or [])
        self._layer_names = list(F.resolve_layers(measured, names))

    # ---- schedule ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is a measured step of the schedule."""
        return step % self.every_n_steps == 0 or step in self._early

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._call is None and self.forward_fn is None and self._recorder is None:
            # the network's first training call is recorded, to be replayed along the probes
            self._recorder = CallRecorder(F.unwrap_compiled(self._model), self.embedding)
        if self.forward_fn is not None and self._fixed_probe is None and self._endpoints is None:
            self._set_lines(trainer, _batch_inputs(batch))
        if self._batch_size is None:
            self._batch_size = int(_batch_inputs(batch).shape[0])
        step = trainer.global_step
        if self.due(step) and step != self._last_step:
            if self._ready():
                self._last_step = step
                self.measure(trainer)
            else:  # before the first call is recorded: measured right after the forward, before any update,
                self._pending = step  # with the buffers (BN running statistics) as they are now
                self._pending_buffers = F.buffer_copies(F.unwrap_compiled(self._model))

    def on_before_backward(self, trainer: Any, pl_module: Any, loss: Any) -> None:
        self._after_first_forward(trainer)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._after_first_forward(trainer)  # where no backward ran through Lightning (manual loss.backward())

    def _after_first_forward(self, trainer: Any) -> None:
        if self._recorder is not None:
            recorder, self._recorder = self._recorder, None
            recorder.remove()
            if recorder.call is None:
                raise RuntimeError(
                    f"ShatteringMonitor: the measured network ({type(recorder.network).__name__}) did not run in "
                    "the training step; tell the monitor which one does with module=..."
                )
            # every process replays rank 0's call and lines, so DDP agrees with a single process
            call = RecordedCall.from_state(_broadcast_state(trainer, recorder.call.state()))
            self._use_call(call)
            if self._fixed_probe is None:
                self._set_lines(trainer, call.inputs, broadcast=False)
        if self._pending is not None and self._ready():
            self._last_step, self._pending = self._pending, None
            snapshot, self._pending_buffers = self._pending_buffers, []
            with F.buffers_swapped(snapshot):
                self.measure(trainer)

    def _use_call(self, call: RecordedCall) -> None:
        if call.discrete:
            measured = F.unwrap_compiled(self._model)
            found = ", ".join(call.embeddings_seen) or "none"
            if call.embedding is None:
                raise TypeError(
                    f"ShatteringMonitor: the probed input holds {call.inputs.dtype} values (token ids?) but no "
                    "nn.Embedding ran in the network's forward; pass embedding=<the module that embeds them> or "
                    "forward_fn=<callable(module, probe)>"
                )
            try:
                measured.get_submodule(call.embedding)
            except AttributeError:
                raise ValueError(
                    f"ShatteringMonitor(embedding={call.embedding!r}): no such module in "
                    f"{type(measured).__name__}; the nn.Embedding modules that ran: {found}"
                ) from None
        self._call = call

    def _ready(self) -> bool:
        has_probe = self._fixed_probe is not None or self._endpoints is not None
        return has_probe and (self.forward_fn is not None or self._call is not None)

    def _set_lines(self, trainer: Any, inputs: torch.Tensor, broadcast: bool = True) -> None:
        if not (inputs.is_floating_point() or self._call is not None):
            raise TypeError(
                f"ShatteringMonitor probes lines between inputs, but the batch holds {inputs.dtype} inputs and "
                "forward_fn is given: pass probe=<(n, ...) inputs ordered along a path>, or leave forward_fn out "
                "to probe the embedding's output"
            )
        pairs = line_pairs(inputs.shape[0], self.num_lines)
        if len(pairs) < self.num_lines:
            rank_zero_warn(
                f"ShatteringMonitor: the first batch has {inputs.shape[0]} samples, enough for {len(pairs)} of the "
                f"{self.num_lines} probe lines; measuring {len(pairs)}"
            )
        endpoints = torch.stack([inputs[[a, b]] for a, b in pairs]).detach().cpu()
        # every process measures rank 0's lines, so DDP agrees with a single process
        self._endpoints = _broadcast_state(trainer, {"ends": endpoints})["ends"] if broadcast else endpoints

    def probes(self) -> list[torch.Tensor]:
        """The probes in use: the fixed one, or one line per stored pair of samples.

        For token-id inputs each line runs between the two samples' embedding outputs, taken with
        the embedding's current weights (cropped to the shorter sequence).
        """
        if self._fixed_probe is not None:
            return [self._fixed_probe]
        if self._endpoints is None:
            raise RuntimeError("the probe lines are built from the first training batch; no batch has been seen yet")
        if self._call is not None and self._call.discrete:
            lines = []
            for ends in self._endpoints:
                embedded = self._call.embed(F.unwrap_compiled(self._model), ends).double().cpu()
                length = min(embedded[0].shape[0], embedded[1].shape[0])
                lines.append(F.line_probe(embedded[0][:length], embedded[1][:length], self.num_points))
            return lines
        return [F.line_probe(ends[0].double(), ends[1].double(), self.num_points) for ends in self._endpoints]

    def probe(self) -> torch.Tensor:
        """The first probe (the fixed one, or the first line)."""
        return self.probes()[0]

    # ---- measurement ---------------------------------------------------------------------
    def _line_gradients(self, measured: nn.Module, probes: list[torch.Tensor]) -> list[F.InputGradients]:
        """Input and block gradients along each of this process's probes."""
        if not probes:
            return []
        if self.bn_mode == "batch":  # each line normalizes with its own statistics: one batch per line
            return [self._gradients(measured, probe, None) for probe in probes]
        # eval mode: lines are independent; run them together, in chunks of at most a training batch
        whole = self._gradients(measured, torch.cat(probes), self.chunk_size or self._batch_size)
        sizes = [p.shape[0] for p in probes]
        inputs = whole.input.split(sizes) if whole.input is not None else [None] * len(probes)
        outputs = whole.output.split(sizes) if whole.output is not None else [None] * len(probes)
        layers = {name: g.split(sizes) for name, g in whole.layers.items()}
        return [
            F.InputGradients(
                input=inputs[i], layers={name: parts[i] for name, parts in layers.items()}, output=outputs[i]
            )
            for i in range(len(probes))
        ]

    def _gradients(self, measured: nn.Module, probe: torch.Tensor, chunk: int | None) -> F.InputGradients:
        # the recorded call; before one is recorded (measure() called by hand), the plain module(probe)
        forward_fn = self.forward_fn or (self._call.forward_fn(measured) if self._call is not None else None)
        try:
            return F.input_gradients(
                measured,
                probe,
                readout=self.readout,
                bn_mode=self.bn_mode,
                layers=self._layer_names,
                chunk_size=chunk,
                forward_fn=forward_fn,
            )
        except (ValueError, TypeError) as error:
            if self.forward_fn is None:
                raise
            raise type(error)(f"ShatteringMonitor(forward_fn=...): {error}") from error

    def measure(self, trainer: Any) -> dict[str, float]:
        """Measure now (this process's share of the lines), sync, log the statistics and figures; return them."""
        if self._model is None:
            raise RuntimeError("ShatteringMonitor.measure() needs setup() first (the Trainer calls it)")
        measured = F.unwrap_compiled(self._model)
        param = next((p for p in measured.parameters() if p.is_floating_point()), None)
        device = param.device if param is not None else torch.device("cpu")
        probes = self.probes()
        rank, world = int(getattr(trainer, "global_rank", 0)), int(getattr(trainer, "world_size", 1))
        # each process measures its share of the lines and the metrics sync them; with fewer lines than
        # processes, every process measures them all instead (no process idles at the sync)
        split = len(probes) >= world > 1
        mine = [
            p.to(device=device, dtype=param.dtype if param is not None and p.is_floating_point() else p.dtype)
            for p in (probes[rank::world] if split else probes)
        ]
        lines = self._line_gradients(measured, mine)
        self._warn_if_the_network_diverges(trainer, lines)
        metrics = self._metrics(device, sync=split)
        for grads in lines:
            main = grads.input if grads.input is not None else next(iter(grads.layers.values()))
            for key, metric in metrics.items():
                if key == "spectral_slope" and F.is_flat(main):
                    continue  # a flat gradient has no spectrum: left out, not NaN
                metric.update(main if "/" not in key else grads.layers[key.split("/", 1)[1]])
        values = {key: metric.mean_and_std() for key, metric in metrics.items()}  # a collective when split
        stats = {}
        for key, (mean, std, count) in values.items():
            if not count:
                continue  # nothing to average (every line flat, for the spectral slope)
            stats[key] = mean
            if "/" not in key:
                stats[f"{key}_std"] = std
        logged = {f"{self.prefix}/{k}": v for k, v in stats.items()}
        self._log(trainer, logged)
        self._record(trainer.global_step, values, lines)
        if self.log_figures and trainer.is_global_zero:
            first = lines[0].input if lines[0].input is not None else next(iter(lines[0].layers.values()))
            self._log_figures(trainer, first)
        self.last_measurement = logged
        return logged

    def _metrics(self, device: torch.device, sync: bool) -> dict[str, Any]:
        metrics: dict[str, Any] = {key: cls(sync_on_compute=sync) for key, cls in _INPUT_STATISTICS.items()}
        metrics.update(
            {f"neighbor_corr/{name}": GradientCorrelation(sync_on_compute=sync) for name in self._layer_names}
        )
        return {key: metric.to(device) for key, metric in metrics.items()}

    def _record(self, step: int, values: dict[str, tuple[float, float, int]], lines: list[F.InputGradients]) -> None:
        # block order: the order the forward pass ran them (from this process's first line)
        order = list(lines[0].layers) if lines else self._layer_names
        entry = {
            "step": step,
            "stats": {k: v[:2] for k, v in values.items() if "/" not in k and math.isfinite(v[0])},
            "layers": {name: values[f"neighbor_corr/{name}"][0] for name in order},
        }
        self.history = [e for e in self.history if e["step"] != step] + [entry]

    def _warn_if_the_network_diverges(self, trainer: Any, lines: list[F.InputGradients]) -> None:
        """Name the cause when the network's own output on the probe is not finite (once a run): then no
        gradient statistic is, and the fault is the network's, not the measurement's."""
        if "output" in self._warned or all(g.output is None or torch.isfinite(g.output).all() for g in lines):
            return
        self._warned.add("output")
        hint = (
            "with bn_mode='eval' that is typical of a deep net without skips in its first steps, whose BN running "
            "statistics do not match its activations yet; bn_mode='batch' measures with the probe's own statistics"
            if self.bn_mode == "eval"
            else "its weights or activations have overflowed"
        )
        rank_zero_warn(
            f"ShatteringMonitor: the network's output on the probe (through the readout) is not finite at step "
            f"{trainer.global_step}; {hint}"
        )

    def _log(self, trainer: Any, metrics: dict[str, float]) -> None:
        bad = [k for k, v in metrics.items() if not math.isfinite(v) and k not in self._warned]
        if bad:
            # the input-level keys by name; the per-block ones counted (a deep net has a hundred)
            block_prefix = f"{self.prefix}/neighbor_corr/"
            named = sorted(k for k in bad if not k.startswith(block_prefix))
            blocks = [k.removeprefix(block_prefix) for k in bad if k.startswith(block_prefix)]
            if blocks:
                named.append(f"{block_prefix}<block> for {len(blocks)} blocks ({blocks[0]} ... {blocks[-1]})")
            rank_zero_warn(
                f"ShatteringMonitor: {', '.join(named)} not finite at step {trainer.global_step} (NaN/Inf "
                "gradients); non-finite values are not logged, and this warning is given once per key"
            )
            self._warned.update(bad)
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        for logger in trainer.loggers:
            logger.log_metrics(finite, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in finite.items()})

    # ---- figures -------------------------------------------------------------------------
    def _depth_profile(self) -> F.DepthProfile | None:
        layers = self.history[-1]["layers"] if self.history else {}
        finite = {name: c for name, c in layers.items() if math.isfinite(c)}
        return F.profile_from_correlations(list(finite), list(finite.values())) if len(finite) > 1 else None

    def _figures(self, grads: torch.Tensor | None, detail: bool, overview: bool = True) -> dict[str, Any]:
        """The figures of the latest measurement: with ``overview`` the depth profile and summary, with
        ``detail`` the gradient traces and covariance image of the first line."""
        figures: dict[str, Any] = {}
        if detail and grads is not None:
            figures.update(gradient_traces=plot_gradient_traces(grads), covariance=plot_covariance(grads))
        profile = self._depth_profile() if overview else None
        if profile is not None:
            figures["depth_profile"] = plot_depth_profile(profile)
        if overview and self.history:
            figures["summary"] = plot_training_summary(self.history)
        return figures

    def _log_figures(self, trainer: Any, grads: torch.Tensor) -> None:
        # Figures are drawn sparingly, since rendering costs more than the measurement on small models:
        # TensorBoard/W&B get the depth profile and the summary at every measurement; the first line's
        # gradient traces and covariance image at init and at the end; PNGs are written at init and at the
        # end of fit (on_train_end), from the latest measurement, so a run leaves a bounded set of files.
        self._latest_grads = grads.detach().cpu()
        step = trainer.global_step
        loggers = [logger for logger in trainer.loggers if _takes_figures(logger)]
        if step != 0 and not loggers:
            return
        figures = self._figures(self._latest_grads, detail=step == 0)
        self._overview = (step, {k: v for k, v in figures.items() if k in ("depth_profile", "summary")})
        self._send_to_loggers(loggers, figures, step)
        if step == 0:
            self._write_pngs(trainer, {name: fig for name, fig in figures.items() if name != "summary"}, "_init")

    def _write_pngs(self, trainer: Any, figures: dict[str, Any], suffix: str = "") -> None:
        root = _log_dir(trainer) / self.prefix
        root.mkdir(parents=True, exist_ok=True)
        for name, fig in figures.items():
            fig.savefig(root / f"{name}{suffix}.png", dpi=100)

    def _send_to_loggers(self, loggers: list[Any], figures: dict[str, Any], step: int) -> None:
        for logger in loggers:
            if type(logger).__name__ == "WandbLogger":
                for name, fig in figures.items():
                    logger.log_image(key=f"{self.prefix}/{name}", images=[fig], step=step)
            else:  # TensorBoard
                for name, fig in figures.items():
                    logger.experiment.add_figure(f"{self.prefix}/{name}", fig, global_step=step, close=False)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.measure_at_end and self.history and self._ready() and trainer.global_step != self._last_step:
            self._last_step = trainer.global_step
            self.measure(trainer)
        self._write_final_figures(trainer)

    def _write_final_figures(self, trainer: Any) -> None:
        if not (self.log_figures and trainer.is_global_zero and self.history):
            return
        # the overview drawn for the loggers at this step's measurement is reused, not drawn again
        drawn = self._overview[1] if self._overview and self._overview[0] == trainer.global_step else {}
        figures = self._figures(self._latest_grads, detail=True, overview=not drawn) | drawn
        self._write_pngs(trainer, figures)
        loggers = [logger for logger in trainer.loggers if _takes_figures(logger)]
        detail = {name: figures[name] for name in ("gradient_traces", "covariance") if name in figures}
        self._send_to_loggers(loggers, detail, trainer.global_step)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._write_final_figures(trainer)  # the figures of what was measured, even from a failed run

    # ---- checkpointing -------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # two monitors in one Trainer (other modules, probes or keys) keep separate checkpoint states
        module = self.module if isinstance(self.module, str) or self.module is None else type(self.module).__name__
        return self._generate_state_key(module=module, prefix=self.prefix, bn_mode=self.bn_mode)

    def state_dict(self) -> dict[str, Any]:
        return {
            "endpoints": self._endpoints,
            "fixed_probe": self._fixed_probe,
            "last_step": self._last_step,
            "batch_size": self._batch_size,
            "history": self.history,
            "call": None if self._call is None else self._call.state(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._endpoints = state_dict.get("endpoints")
        if self._endpoints is not None and self._endpoints.dim() > 0 and state_dict.get("history") is None:
            self._endpoints = self._endpoints.unsqueeze(0)  # a checkpoint of the one-line monitor: (2, ...)
        if state_dict.get("fixed_probe") is not None and self._fixed_probe is None:
            self._fixed_probe = state_dict["fixed_probe"]
        self._last_step = int(state_dict.get("last_step", -1))
        self._batch_size = state_dict.get("batch_size")
        self.history = list(state_dict.get("history") or [])
        if state_dict.get("call") is not None:
            self._call = RecordedCall.from_state(state_dict["call"])
