"""``ShatteringMonitor``: measure gradient shattering inside any Lightning Trainer (a thin adapter over
:class:`~lightning_callbacks.measure.ShatteringMeasurer`, as Lightning's ``ThroughputMonitor`` is over
Fabric's ``Throughput``: the hooks translate the Trainer's events, the measurer owns the protocol)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback as _LightningCallback
from lightning.pytorch import LightningModule as _LightningModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_callbacks.deprecations import check_keywords
from lightning_callbacks.measure import ShatteringMeasurer
from lightning_callbacks.options import OPTION_DEFAULTS, ShatteringOptions, option_names
from lightning_callbacks.plotting.runs import figure_sinks
from lightning_callbacks.publish import Publisher
from lightning_callbacks.results import ShatteringResult

try:  # one class serves both namespaces: each Trainer checks isinstance(callback, <its own> Callback)
    from pytorch_lightning import Callback as _PLCallback
    from pytorch_lightning import LightningModule as _PLModule
except ImportError:  # pytorch_lightning is optional: lightning.pytorch alone
    _PLCallback = _PLModule = None  # type: ignore[assignment,misc]

_BASES = tuple(c for c in (_LightningCallback, _PLCallback) if c is not None)
_MODULE_BASES = tuple(c for c in (_LightningModule, _PLModule) if c is not None)
_BASE_FORWARDS = {m.forward for m in _MODULE_BASES}

__all__ = ["ShatteringMonitor"]


def _log_dir(trainer: Any) -> Path:
    """The first logger's folder, as ``trainer.log_dir`` has it, without its broadcast (this runs on rank 0 only)."""
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    return Path(folder)


class ShatteringMonitor(*_BASES):  # type: ignore[misc]
    """Log how shattered the model's input gradients are, and its forward kernel, while it trains.

    At step 0 (initialization, before the first update), at log-spaced steps until
    ``every_n_steps`` (1, 2, 5, 10, 20, 50, ...: the early phase, where shattering changes most),
    then every ``every_n_steps`` optimizer steps and once more at the end, the monitor takes the
    gradient of a scalar readout of the network at every point of ``num_lines`` probe lines
    (``num_points`` inputs each, between distinct pairs of samples the network was called with
    before the first optimizer step; fixed for the run and saved in checkpoints) and logs, through
    the Trainer's loggers at ``trainer.global_step``, the mean over the lines and its spread
    across them (``<key>_std``):

    - ``shattering/neighbor_corr``: autocorrelation at lag 1 (1 = smooth, 0 = white noise),
    - ``shattering/effective_rank`` and ``shattering/stable_rank`` of each line's gradient matrix,
    - ``shattering/spectral_slope``: 0 for white noise, 2 for brown noise (left out for a line
      whose gradient is flat, equal at every point as a linear net's is: it has no spectrum),
    - ``shattering/neighbor_corr/<block>``: the same at each block's output (a depth profile),
    - ``shattering/kernel`` and ``shattering/kernel/<block>``: the forward kernel, the cosine of the
      network's (a block's) outputs at each line's two endpoints (the "C map": 1 = the two inputs
      mapped to one direction), with its spread ``shattering/kernel_std[/<block>]``.

    The values are also copied into ``trainer.callback_metrics`` (so ``EarlyStopping`` and
    ``ModelCheckpoint`` can monitor them) and kept as typed results in :attr:`history`. Under DDP
    and FSDP each process measures its share of the lines and the torchmetrics states
    (:mod:`lightning_callbacks.metrics`) are synced, so the logged values equal a single process's.

    **Which network.** ``module``, else the one child of the LightningModule that holds all of
    its parameters (``self.model``, ``self.net``, ``self.backbone``...), else the
    LightningModule itself if it defines ``forward``. **Which blocks, how it is called, when,
    and what happens when a measurement fails:** see
    :class:`~lightning_callbacks.measure.ShatteringMeasurer`, which owns the protocol: the
    network's first training call is recorded and replayed along the lines (token ids are probed
    at their embedding's output); a batch of one still gets a line; a failed measurement warns
    once, logs NaN and training goes on.

    **Figures** (``log_figures``): the depth profile (with the forward kernel) at every
    measurement, gradient traces and the covariance image at init and at the end, and at the end
    a summary (neighbor correlation per block x step, and each statistic vs step with its
    spread), to TensorBoard/W&B loggers, and as PNGs under
    ``<log_dir>/shattering/``: ``<figure>.png`` (the latest), ``<figure>_init.png`` (step 0) and
    ``summary.png`` (at the end of fit): a bounded number of files.

    The measurement never changes what training computes: no parameter ``.grad``, buffer,
    module mode or RNG state is left changed.

    Args:
        module: the network to measure: an ``nn.Module`` or the name of an attribute of the
            LightningModule (see *Which network*).
        **options: the options of :class:`~lightning_callbacks.options.ShatteringOptions`
            (``every_n_steps``, ``num_lines``, ``num_points``, ``blocks``, ``bn_mode``, ``probe``,
            ``readout``, ``forward_fn``, ``embedding``, ``chunk_size``, ``log_spaced_start``,
            ``measure_at_end``, ``log_figures``, ``prefix``), refused at once if bad.
    """

    def __init__(self, module: nn.Module | str | None = None, **options: Any) -> None:
        # LightningCLI reads this get() as an accepted option: a config's old `layers:` is renamed below, with a warning
        options["layers"] = options.get("layers", "auto")
        check_keywords(options, option_names(), type(self).__name__, defaults=OPTION_DEFAULTS)  # in place
        self.options = ShatteringOptions(**options)
        self.module = module
        self.measurer: ShatteringMeasurer | None = None
        self._restored: dict[str, Any] | None = None  # a checkpoint's state, loaded before setup()
        self._model: nn.Module | None = None
        self._publisher = Publisher(self.options, "ShatteringMonitor")

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
    def history(self) -> list[ShatteringResult]:
        """Every measurement so far, as typed results (see :class:`~lightning_callbacks.results.ShatteringResult`)."""
        if self.measurer is not None:
            return self.measurer.history
        return [ShatteringResult.from_entry(e) for e in (self._restored or {}).get("history") or []]

    @property
    def last_measurement(self) -> dict[str, float]:
        """The latest measurement's logged keys and values (empty before the first)."""
        history = self.history
        return history[-1].scalars(self.options.prefix) if history else {}

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        model = self._resolve_module(pl_module)
        if self.measurer is not None and model is self._model:
            return  # a later stage (validate, test) of the same run: its lines and history stay
        self._model = model
        self.measurer = ShatteringMeasurer(model, self.options)
        if self._restored is not None:
            self.measurer.load_state_dict(self._restored)

    # ---- the Trainer's events, translated ------------------------------------------------
    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self.measurer.watch()

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        self._publish(trainer, self.measurer.before_optimizer_step(trainer.global_step))

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self._publish(trainer, self.measurer.end(trainer.global_step))
        self._write_final_figures(trainer)
        line = self._publisher.verdict_line(self.history)
        if line is not None:
            rank_zero_info(line)  # Lightning's console log, on the main process

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self._write_final_figures(trainer)  # the figures of what was measured, even from a failed run

    # ---- the results, onto the Trainer's loggers -----------------------------------------
    def _publish(self, trainer: Any, result: ShatteringResult | None) -> None:
        def log(logged: dict[str, float]) -> None:
            for logger in trainer.loggers:
                logger.log_metrics(logged, step=trainer.global_step)
            trainer.callback_metrics.update({k: torch.tensor(v) for k, v in logged.items()})

        self._publisher.measured(result, self.history, log=log, warn=rank_zero_warn, **self._figure_places(trainer))

    def _figure_places(self, trainer: Any) -> dict[str, Any]:
        return dict(
            main_process=trainer.is_global_zero,
            sinks=lambda: figure_sinks(trainer.loggers, self.options.prefix),
            png_dir=_log_dir(trainer) / self.options.prefix,
        )

    def _write_final_figures(self, trainer: Any) -> None:
        self._publisher.ended(trainer.global_step, self.history, **self._figure_places(trainer))

    # ---- checkpointing -------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # two monitors in one Trainer (other modules, probes or keys) keep separate checkpoint states
        module = self.module if isinstance(self.module, str) or self.module is None else type(self.module).__name__
        return self._generate_state_key(module=module, prefix=self.options.prefix, bn_mode=self.options.bn_mode)

    def state_dict(self) -> dict[str, Any]:
        return self.measurer.state_dict() if self.measurer is not None else dict(self._restored or {})

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = dict(state_dict)
        if self.measurer is not None:
            self.measurer.load_state_dict(state_dict)
