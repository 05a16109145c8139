"""``ShatteringMonitor``: measure gradient shattering inside any Lightning Trainer (a thin adapter over
:class:`~lightning_callbacks.measure.ShatteringMeasurer`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback as _LightningCallback
from lightning.pytorch import LightningModule as _LightningModule
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.figures import RunFigures, figure_sinks
from lightning_callbacks.measure import (
    ShatteringMeasurer,
    ShatteringResult,
    check_options,
    early_steps,
    line_pairs,
)
from lightning_callbacks.replay import CallRecorder, ForwardFn
from lightning_callbacks.report import ResultReport

try:  # one class serves both namespaces: each Trainer checks isinstance(callback, <its own> Callback)
    from pytorch_lightning import Callback as _PLCallback
    from pytorch_lightning import LightningModule as _PLModule
except ImportError:  # pytorch_lightning is optional: lightning.pytorch alone
    _PLCallback = _PLModule = None  # type: ignore[assignment,misc]

_BASES = tuple(c for c in (_LightningCallback, _PLCallback) if c is not None)
_MODULE_BASES = tuple(c for c in (_LightningModule, _PLModule) if c is not None)
_BASE_FORWARDS = {m.forward for m in _MODULE_BASES}

__all__ = ["ShatteringMonitor", "early_steps", "line_pairs"]


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

    Every block's reading carries a status (:class:`~lightning_callbacks.measure.BlockReading`): a
    block that ran but does not reach the output (*missing*), whose gradient is exactly zero
    (*zero*) or not finite (*non-finite*) logs NaN, with one warning per cause; only a *flat* or
    *measured* block gets a number. The measurement itself is
    :class:`~lightning_callbacks.measure.ShatteringMeasurer`'s, which this callback adapts (hooks,
    schedule, logging, checkpoint state); the figures are :mod:`lightning_callbacks.figures`'.

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
        # the measurer's options, refused here if bad, kept until setup() knows the network
        self._options = dict(
            every_n_steps=every_n_steps,
            log_spaced_start=log_spaced_start,
            num_lines=num_lines,
            num_points=num_points,
            probe=probe,
            layers=layers,
            bn_mode=bn_mode,
            readout=readout or F.random_projection_readout(),
            forward_fn=forward_fn,
            embedding=embedding,
            chunk_size=chunk_size,
        )
        check_options(**self._options)
        self.bn_mode = bn_mode
        self.every_n_steps = every_n_steps
        self.forward_fn = forward_fn
        self.log_figures = log_figures
        self.module = module
        self.prefix = prefix
        self.measure_at_end = measure_at_end
        self.measurer: ShatteringMeasurer | None = None
        self._restored: dict[str, Any] | None = None  # a checkpoint's state, loaded before setup()
        self._schedule = ShatteringMeasurer(
            nn.Identity(), every_n_steps=every_n_steps, log_spaced_start=log_spaced_start
        )
        self._recorder: CallRecorder | None = None
        self._pending: int | None = None
        self._pending_buffers: list[tuple[nn.Module, str, torch.Tensor]] = []
        self._model: nn.Module | None = None
        self._report = ResultReport(prefix, self.bn_mode, "ShatteringMonitor")
        self._figures = RunFigures()
        self.last_measurement: dict[str, float] = {}
        self.last_result: ShatteringResult | None = None

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
            return getattr(pl_module, owner)
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
        return list(self.measurer.layer_names) if self.measurer else []

    @property
    def history(self) -> list[dict[str, Any]]:
        """Every measurement so far: ``step``, ``stats`` (input-level (mean, std)), ``layers`` (block ->
        neighbour correlation) and ``status`` (block -> status, for the blocks without a reading)."""
        if self.measurer is not None:
            return self.measurer.history
        return list((self._restored or {}).get("history") or [])

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        model = self._resolve_module(pl_module)
        if self.measurer is not None and model is self._model:
            return  # a later stage (validate, test) of the same run: its lines and history stay
        self._model = model
        self.measurer = ShatteringMeasurer(model, **self._options)
        if self._restored is not None:
            self.measurer.load_state_dict(self._restored)

    # ---- schedule ------------------------------------------------------------------------
    def due(self, step: int) -> bool:
        """Whether ``step`` is a measured step of the schedule."""
        return self._schedule.due(step)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        measurer = self.measurer
        if measurer.call is None and self.forward_fn is None and self._recorder is None:
            # the network's first training call is recorded, to be replayed along the probes
            self._recorder = measurer.start_recording()
        if self.forward_fn is not None and not measurer.ready:
            measurer.set_lines(_batch_inputs(batch))
        if measurer.batch_size is None:
            measurer.batch_size = int(_batch_inputs(batch).shape[0])
        step = trainer.global_step
        if self.due(step) and measurer.due(step):
            if measurer.ready:
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
            try:
                self.measurer.finish_recording(recorder)
            except (RuntimeError, TypeError, ValueError) as error:
                raise type(error)(f"ShatteringMonitor: {error}") from None
        if self._pending is not None and self.measurer.ready:
            self._pending = None
            snapshot, self._pending_buffers = self._pending_buffers, []
            self.measure(trainer, buffers=snapshot)

    def probes(self) -> list[torch.Tensor]:
        """The probes in use (see :meth:`ShatteringMeasurer.probes`)."""
        return self.measurer.probes()

    def probe(self) -> torch.Tensor:
        """The first probe (the fixed one, or the first line)."""
        return self.probes()[0]

    # ---- measurement ---------------------------------------------------------------------
    def measure(self, trainer: Any, buffers: Any = None) -> dict[str, float]:
        """Measure now (this process's share of the lines), sync, log the statistics and figures; return them."""
        if self.measurer is None:
            raise RuntimeError("ShatteringMonitor.measure() needs setup() first (the Trainer calls it)")
        try:
            result = self.measurer.measure(trainer.global_step, buffers=buffers)
        except (ValueError, TypeError) as error:
            raise type(error)(f"ShatteringMonitor: {error}") from None
        logged, notes = self._report(result)
        for note in notes:
            rank_zero_warn(note)
        self._log(trainer, logged)
        if self.log_figures and trainer.is_global_zero:
            self._figures.measured(
                result.step,
                self.history,
                result.gradients,
                figure_sinks(trainer.loggers, self.prefix),
                self._png_dir(trainer),
            )
        self.last_result = result
        self.last_measurement = result.scalars(self.prefix)
        return self.last_measurement

    def _log(self, trainer: Any, logged: dict[str, float]) -> None:
        for logger in trainer.loggers:
            logger.log_metrics(logged, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in logged.items()})

    # ---- figures -------------------------------------------------------------------------
    def _png_dir(self, trainer: Any) -> Path:
        return _log_dir(trainer) / self.prefix

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        measurer = self.measurer
        if self.measure_at_end and measurer.history and measurer.ready and trainer.global_step != measurer.last_step:
            self.measure(trainer)
        self._write_final_figures(trainer)

    def _write_final_figures(self, trainer: Any) -> None:
        if self.log_figures and trainer.is_global_zero:
            sinks = figure_sinks(trainer.loggers, self.prefix)
            self._figures.ended(trainer.global_step, self.history, sinks, self._png_dir(trainer))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._write_final_figures(trainer)  # the figures of what was measured, even from a failed run

    # ---- checkpointing -------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # two monitors in one Trainer (other modules, probes or keys) keep separate checkpoint states
        module = self.module if isinstance(self.module, str) or self.module is None else type(self.module).__name__
        return self._generate_state_key(module=module, prefix=self.prefix, bn_mode=self.bn_mode)

    def state_dict(self) -> dict[str, Any]:
        return self.measurer.state_dict() if self.measurer is not None else dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
        if self.measurer is not None:
            self.measurer.load_state_dict(state_dict)
