"""``ShatteringMonitor``: measure gradient shattering inside any Lightning Trainer."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.plotting import plot_covariance, plot_depth_profile, plot_gradient_traces

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

__all__ = ["ShatteringMonitor"]


def _first_two_samples(batch: Any) -> torch.Tensor:
    """Two samples of the batch's input tensor: the batch itself, its first tensor, or its 'input'-like entry."""
    if isinstance(batch, Mapping):
        for key in ("image", "images", "input", "inputs", "x", "pixel_values", "input_ids"):
            if isinstance(batch.get(key), torch.Tensor):
                return _first_two_samples(batch[key])
        batch = list(batch.values())
    if isinstance(batch, (list, tuple)):
        for item in batch:
            if isinstance(item, torch.Tensor):
                return _first_two_samples(item)
        raise ValueError("ShatteringMonitor found no tensor in the training batch; pass probe=<tensor (n, ...)>")
    if not isinstance(batch, torch.Tensor) or batch.dim() == 0 or batch.shape[0] < 2:
        raise ValueError(
            "ShatteringMonitor needs a first training batch of >= 2 samples to build its probe; "
            "pass probe=<tensor (n, ...)> or use a larger batch"
        )
    return batch[:2].detach().clone()


def _log_dir(trainer: Any) -> Path:
    """The first logger's folder, as ``trainer.log_dir`` has it, without its broadcast (this runs on rank 0 only)."""
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = getattr(logger, "log_dir", None) or getattr(logger, "save_dir", None) or trainer.default_root_dir
    return Path(folder)


class ShatteringMonitor(*_BASES):  # type: ignore[misc]
    """Log how shattered the model's input gradients are while it trains.

    Every ``every_n_steps`` optimizer steps (and at step 0, i.e. at initialization) the
    monitor takes the gradient of a scalar readout of the model at every point of a probe
    (default: ``num_points`` inputs on the line between two samples of the first training
    batch, fixed for the run and saved in checkpoints) and logs, through the Trainer's
    loggers at ``trainer.global_step``:

    - ``shattering/neighbor_corr``: autocorrelation at lag 1 (1 = smooth, 0 = white noise),
    - ``shattering/effective_rank`` and ``shattering/stable_rank`` of the gradient matrix,
    - ``shattering/spectral_slope``: 0 for white noise, 2 for brown noise (omitted when the
      gradient is flat, equal at every probe point as a linear net's is: it has no spectrum),
    - ``shattering/neighbor_corr/<layer>``: the same at each layer's output, in forward order,

    and copies them into ``trainer.callback_metrics`` (so ``EarlyStopping``/``ModelCheckpoint``
    can monitor them). With ``log_figures`` it sends gradient traces, the covariance image
    and the depth profile to TensorBoard or W&B loggers, and writes them as PNGs under
    ``<log_dir>/shattering/``: ``<figure>.png`` (the latest measurement, overwritten) and
    ``<figure>_init.png`` (step 0), so a long run leaves a bounded number of files.

    The measurement never changes what training computes: no parameter ``.grad``, buffer,
    module mode or RNG state is left changed (see :func:`~lightning_callbacks.functional.input_gradients`).

    Args:
        every_n_steps: measure when ``global_step`` is a multiple of this (sparse by default).
        num_points: points on the default line probe.
        probe: a fixed probe ``(n, ...)`` ordered along a path, instead of the default line.
        layers: ``"auto"`` (top-level blocks, ``nn.Sequential`` opened up), a list of
            submodule names of the measured module, or ``None`` for the input only.
        bn_mode: ``"eval"`` (running statistics) or ``"batch"`` (the paper's probe statistics).
        readout: callable mapping the output ``(n, ...)`` to ``(n,)``; default a seeded random
            unit projection (class-agnostic).
        log_figures: log figures (TensorBoard/W&B) or write PNGs.
        module: the network to measure: an ``nn.Module`` or the name of an attribute of the
            LightningModule. Default: the LightningModule itself if it defines ``forward``,
            else its ``model`` or ``net`` attribute.
        prefix: prefix of the logged keys.
    """

    def __init__(
        self,
        every_n_steps: int = 1000,
        num_points: int = 256,
        probe: torch.Tensor | None = None,
        layers: str | Sequence[str] | None = "auto",
        bn_mode: F.BNMode = "eval",
        readout: F.Readout | None = None,
        log_figures: bool = True,
        module: nn.Module | str | None = None,
        prefix: str = "shattering",
    ) -> None:
        if not isinstance(every_n_steps, int) or every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps!r}: use a positive integer")
        if not isinstance(num_points, int) or num_points < 2:
            raise ValueError(f"num_points={num_points!r}: a probe needs at least 2 points")
        if probe is not None and (not isinstance(probe, torch.Tensor) or probe.dim() < 1 or probe.shape[0] < 2):
            raise ValueError("probe must be a tensor (n, ...) of n >= 2 inputs ordered along a path")
        if isinstance(layers, str) and layers != "auto":
            raise ValueError(f"layers={layers!r}: use 'auto', a list of submodule names, or None")
        if readout is not None and not callable(readout):
            raise TypeError("readout must be a callable mapping outputs (n, ...) to scalars (n,)")
        self.every_n_steps = every_n_steps
        self.num_points = num_points
        self.layers = layers
        self.bn_mode = F.check_bn_mode(bn_mode)
        self.readout = readout or F.random_projection_readout()
        self.log_figures = log_figures
        self.module = module
        self.prefix = prefix
        self._fixed_probe = None if probe is None else probe.detach().clone()
        self._endpoints: torch.Tensor | None = None
        self._last_step = -1
        self._model: nn.Module | None = None
        self._layer_names: list[str] = []
        self.last_measurement: dict[str, float] = {}
        self._warned: set[str] = set()

    # ---- configuration -------------------------------------------------------------------
    def _resolve_module(self, pl_module: nn.Module) -> nn.Module:
        if isinstance(self.module, nn.Module):
            return self.module
        if isinstance(self.module, str):
            found = getattr(pl_module, self.module, None)
            if not isinstance(found, nn.Module):
                raise ValueError(f"module={self.module!r}: {type(pl_module).__name__} has no such nn.Module attribute")
            return found
        if type(pl_module).forward not in _BASE_FORWARDS:
            return pl_module
        for name in ("model", "net"):
            if isinstance(getattr(pl_module, name, None), nn.Module):
                return getattr(pl_module, name)
        raise ValueError(
            f"{type(pl_module).__name__} defines no forward and has no 'model'/'net' attribute: "
            "tell ShatteringMonitor which network to measure with module=<attribute name or nn.Module>"
        )

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        self._model = self._resolve_module(pl_module)
        measured = F.unwrap_compiled(self._model)
        if self.layers == "auto":
            self._layer_names = F.auto_layers(measured)
        else:
            self._layer_names = list(F.resolve_layers(measured, self.layers or []))

    # ---- schedule ------------------------------------------------------------------------
    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._fixed_probe is None and self._endpoints is None:
            samples = _first_two_samples(batch)
            if not samples.is_floating_point():
                raise TypeError(
                    f"ShatteringMonitor probes the line between two inputs, but the batch holds {samples.dtype} "
                    "inputs (token ids?). Pass probe=<(n, ...) tensor of inputs ordered along a path> and "
                    "layers=['<embedding module name>'] to measure the gradient at the embedding output"
                )
            # every process measures rank 0's probe, so DDP agrees with a single process
            self._endpoints = trainer.strategy.broadcast(samples.cpu(), src=0)
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._last_step:
            self._last_step = step
            self.measure(trainer)

    def probe(self) -> torch.Tensor:
        """The probe in use: the fixed one, or the line between the two stored endpoints."""
        if self._fixed_probe is not None:
            return self._fixed_probe
        if self._endpoints is None:
            raise RuntimeError("the probe is built from the first training batch; no batch has been seen yet")
        return F.line_probe(self._endpoints[0].double(), self._endpoints[1].double(), self.num_points)

    # ---- measurement ---------------------------------------------------------------------
    def measure(self, trainer: Any) -> dict[str, float]:
        """Measure now, log the statistics (and figures) and return them."""
        if self._model is None:
            raise RuntimeError("ShatteringMonitor.measure() needs setup() first (the Trainer calls it)")
        measured = F.unwrap_compiled(self._model)
        param = next((p for p in measured.parameters() if p.is_floating_point()), None)
        device = param.device if param is not None else torch.device("cpu")
        probe = self.probe().to(device)
        if probe.is_floating_point():
            probe = probe.to(param.dtype if param is not None else torch.float32)
        grads = F.input_gradients(measured, probe, readout=self.readout, bn_mode=self.bn_mode, layers=self._layer_names)
        main = grads.input if grads.input is not None else next(iter(grads.layers.values()))
        stats = F.gradient_statistics(main)
        if F.is_flat(main):  # a flat gradient (a linear net's) has no spectrum: the slope is omitted, not NaN
            del stats["spectral_slope"]
        profile = F.depth_profile(grads.layers) if grads.layers else None
        if profile is not None:
            stats.update({f"neighbor_corr/{n}": c for n, c in zip(profile.layers, profile.correlations)})
        metrics = {f"{self.prefix}/{k}": v for k, v in stats.items()}
        self._log(trainer, metrics)
        if self.log_figures and trainer.is_global_zero:
            self._log_figures(trainer, main, profile)
        self.last_measurement = metrics
        return metrics

    def _log(self, trainer: Any, metrics: dict[str, float]) -> None:
        bad = sorted(k for k, v in metrics.items() if not math.isfinite(v) and k not in self._warned)
        if bad:
            rank_zero_warn(
                f"ShatteringMonitor: {', '.join(bad)} not finite at step {trainer.global_step} (NaN/Inf gradients); "
                "non-finite values are not logged, and this warning is given once per key"
            )
            self._warned.update(bad)
        finite = {k: v for k, v in metrics.items() if math.isfinite(v)}
        for logger in trainer.loggers:
            logger.log_metrics(finite, step=trainer.global_step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in finite.items()})

    def _log_figures(self, trainer: Any, grads: torch.Tensor, profile: F.DepthProfile | None) -> None:
        # plotting builds bare matplotlib Figures: no pyplot, no backend switch in the user's process
        step = trainer.global_step
        figures = {"gradient_traces": plot_gradient_traces(grads), "covariance": plot_covariance(grads)}
        if profile is not None and len(profile.layers) > 1:
            figures["depth_profile"] = plot_depth_profile(profile)
        for logger in trainer.loggers:
            experiment = getattr(logger, "experiment", None)
            if hasattr(experiment, "add_figure"):  # TensorBoard
                for name, fig in figures.items():
                    experiment.add_figure(f"{self.prefix}/{name}", fig, global_step=step, close=False)
            elif type(logger).__name__ == "WandbLogger":
                for name, fig in figures.items():
                    logger.log_image(key=f"{self.prefix}/{name}", images=[fig], step=step)
        # PNGs beside the logs, a bounded set: the latest measurement, overwritten, and the one at init
        root = _log_dir(trainer) / self.prefix
        root.mkdir(parents=True, exist_ok=True)
        for name, fig in figures.items():
            fig.savefig(root / f"{name}.png", dpi=100)
            if step == 0:
                fig.savefig(root / f"{name}_init.png", dpi=100)

    # ---- checkpointing -------------------------------------------------------------------
    @property
    def state_key(self) -> str:
        # two monitors in one Trainer (other modules, probes or keys) keep separate checkpoint states
        module = self.module if isinstance(self.module, str) or self.module is None else type(self.module).__name__
        return self._generate_state_key(module=module, prefix=self.prefix, bn_mode=self.bn_mode)

    def state_dict(self) -> dict[str, Any]:
        return {"endpoints": self._endpoints, "fixed_probe": self._fixed_probe, "last_step": self._last_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._endpoints = state_dict.get("endpoints")
        if state_dict.get("fixed_probe") is not None and self._fixed_probe is None:
            self._fixed_probe = state_dict["fixed_probe"]
        self._last_step = int(state_dict.get("last_step", -1))
