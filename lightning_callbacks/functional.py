"""Gradient-shattering statistics as pure torch functions (no Lightning).

Balduzzi et al. (2017) measure how the gradient of a network's output w.r.t. its input
changes between nearby inputs: along a line of inputs, the gradients of a deep feedforward
ReLU net decorrelate like white noise ("shatter"); a ResNet's or an LL net's do not. This
module provides the probes (:func:`line_probe`), the gradients (:func:`input_gradients`)
and the statistics (:func:`autocorrelation`, :func:`neighbor_correlation`,
:func:`gradient_covariance`, :func:`effective_rank`, :func:`stable_rank`,
:func:`spectral_slope`, :func:`depth_profile`).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

__all__ = [
    "InputGradients",
    "DepthProfile",
    "line_probe",
    "random_projection_readout",
    "RandomProjectionReadout",
    "input_gradients",
    "check_bn_mode",
    "buffer_copies",
    "buffers_swapped",
    "resolve_layers",
    "gradient_statistics",
    "is_flat",
    "autocorrelation",
    "neighbor_correlation",
    "gradient_covariance",
    "effective_rank",
    "stable_rank",
    "spectral_slope",
    "depth_profile",
    "profile_from_correlations",
    "fit_decay",
    "auto_layers",
    "unwrap_compiled",
]

BNMode = Literal["eval", "batch"]
Readout = Callable[[torch.Tensor], torch.Tensor]
# gradients that differ by less than this many units of round-off of their dtype count as "all equal"
_CONSTANT_ULPS = 10_000.0


def line_probe(x0: torch.Tensor, x1: torch.Tensor, num_points: int = 256) -> torch.Tensor:
    """``num_points`` evenly spaced inputs on the segment from ``x0`` to ``x1`` (both included).

    The paper's probe is the 1-D grid of 256 points on [-2, 2]: ``line_probe(tensor([-2.]),
    tensor([2.]))``. For images, ``x0`` and ``x1`` are two samples of shape (C, H, W).

    Returns:
        A tensor of shape ``(num_points, *x0.shape)``, ordered along the path.
    """
    if x0.shape != x1.shape:
        raise ValueError(f"line_probe needs endpoints of one shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if num_points < 2:
        raise ValueError(f"num_points={num_points}: a line probe needs at least 2 points")
    if not (x0.is_floating_point() and x1.is_floating_point()):
        raise TypeError(
            f"line_probe interpolates between inputs and needs floating tensors, got {x0.dtype}; for integer "
            "inputs such as token ids, probe a layer's output instead (layers=['<embedding module>'])"
        )
    t = torch.linspace(0.0, 1.0, num_points, device=x0.device, dtype=x0.dtype).view(-1, *([1] * x0.dim()))
    return x0.unsqueeze(0) + t * (x1 - x0).unsqueeze(0)


class RandomProjectionReadout:
    """A class-agnostic scalar readout: the output projected on a fixed random unit vector.

    The vector depends only on ``seed`` and the output size (drawn from a private generator:
    the global RNG is never touched), so every call and every process uses the same one.
    A class rather than a closure so that it pickles (``ddp_spawn``, checkpoints).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self._cache: dict[tuple[int, torch.device, torch.dtype], torch.Tensor] = {}

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        flat = output.reshape(output.shape[0], -1)
        key = (flat.shape[1], flat.device, flat.dtype)
        if key not in self._cache:
            generator = torch.Generator().manual_seed(self.seed)
            u = torch.randn(flat.shape[1], generator=generator, dtype=torch.float64)
            self._cache[key] = (u / u.norm()).to(device=flat.device, dtype=flat.dtype)
        return flat @ self._cache[key]


def random_projection_readout(seed: int = 0) -> Readout:
    """The default readout: :class:`RandomProjectionReadout` with ``seed``."""
    return RandomProjectionReadout(seed)


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The original module behind ``torch.compile`` (its ``_orig_mod``), else ``model`` itself."""
    return getattr(model, "_orig_mod", model)


_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
_SKIPPED = (nn.Dropout, nn.Identity, nn.Flatten)


def _repeated_blocks(model: nn.Module) -> list[str]:
    """Names of the deepest repeated blocks: children of a container that holds >= 2 composite modules of one class.

    This is how timm and most zoos lay out depth (``stages.N.blocks.M``, ``layers.N.M``,
    ``blocks.N``, ``features.denseblockN.denselayerM``): a ``Sequential``/``ModuleList``/``ModuleDict``
    of identical blocks, possibly nested in stages. Where a block holds repeated blocks itself,
    the inner ones are kept.
    """
    found: list[str] = []
    for name, container in model.named_modules():
        if not isinstance(container, _CONTAINERS):
            continue
        children = [(child_name, child) for child_name, child in container.named_children() if any(child.children())]
        classes = [type(child) for _, child in children]
        if any(classes.count(cls) >= 2 and not issubclass(cls, _CONTAINERS) for cls in classes):
            prefix = f"{name}." if name else ""
            found += [f"{prefix}{child_name}" for child_name, _ in children if not isinstance(_, _CONTAINERS)]
    return [n for n in found if not any(other.startswith(f"{n}.") for other in found)]


def _top_level_blocks(model: nn.Module) -> list[str]:
    """Descend through single-child wrappers, then list the children, with containers opened up."""
    prefix = ""
    while True:
        children = [(n, c) for n, c in model.named_children() if not isinstance(c, _SKIPPED)]
        if len(children) != 1 or not any(children[0][1].children()):
            break
        name, model = children[0]
        prefix = f"{prefix}{name}."
    names: list[str] = []

    def visit(module: nn.Module, path: str) -> None:
        for name, child in module.named_children():
            full = f"{path}{name}"
            if isinstance(child, _CONTAINERS):
                visit(child, f"{full}.")
            elif not isinstance(child, _SKIPPED):
                names.append(full)

    visit(model, prefix)
    return names


def auto_layers(model: nn.Module) -> list[str]:
    """The blocks whose outputs make a per-depth profile of ``model`` (``layers="auto"``).

    - Repeated blocks (see :func:`_repeated_blocks`): ``stages.N.M`` of a CIFAR net,
      ``layerN.M`` of a timm ResNet, ``blocks.N`` of a ViT, ``stages.N.blocks.M`` of a ConvNeXt;
      plus the ``feature_info`` modules of a timm model that are not their stages (its stem).
    - Otherwise (no repeated blocks: an ``nn.Sequential`` of layers, a hand-written net), the
      children of the first level with more than one, through single-child wrappers, with
      ``Sequential``/``ModuleList`` opened up and dropout/identity/flatten left out.

    The order here is registration order; :func:`input_gradients` reports layers in the
    order the forward pass ran them.
    """
    model = unwrap_compiled(model)
    blocks = _repeated_blocks(model)
    if not blocks:
        return _top_level_blocks(model)
    extra = []
    for info in getattr(model, "feature_info", None) or []:
        name = info.get("module") if isinstance(info, dict) else None
        if name and name not in blocks and not any(b.startswith(f"{name}.") for b in blocks):
            try:
                model.get_submodule(name)
            except AttributeError:
                continue
            extra.append(name)
    return extra + blocks


@dataclass
class InputGradients:
    """Gradients of a scalar readout along a probe.

    Attributes:
        input: gradients w.r.t. the probe inputs, shape of the inputs (None for integer inputs).
        layers: gradients w.r.t. the outputs of the requested layers, in forward order.
        output: the readout values, shape (num_points,).
    """

    input: torch.Tensor | None
    layers: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None


def _use_batch_statistics(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
    """Forward pre-hook: load the incoming batch's statistics into an eval-mode norm layer's running buffers."""
    (h,) = args[:1]
    dims = [0, *range(2, h.dim())]
    with torch.no_grad():
        module.running_mean.copy_(h.mean(dims))
        module.running_var.copy_(h.var(dims, unbiased=False))


def check_bn_mode(bn_mode: str) -> BNMode:
    """Return ``bn_mode`` if it is ``"eval"`` or ``"batch"``; else raise a ``ValueError`` naming both."""
    if bn_mode not in ("eval", "batch"):
        raise ValueError(f"bn_mode={bn_mode!r}: use 'eval' (running statistics) or 'batch' (probe statistics)")
    return bn_mode  # type: ignore[return-value]


def resolve_layers(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The submodules of ``model`` named ``names`` (``get_submodule`` names); a ``ValueError`` names any unknown one."""
    modules = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"layer {name!r} is not a submodule of {type(model).__name__}: {error}") from None
    return modules


def buffer_copies(model: nn.Module) -> list[tuple[nn.Module, str, torch.Tensor]]:
    """Copies of every buffer of ``model`` (BN running statistics...), with the module and name they belong to."""
    return [
        (module, name, buffer.detach().clone())
        for module in model.modules()
        for name, buffer in module._buffers.items()
        if buffer is not None
    ]


@contextlib.contextmanager
def buffers_swapped(copies: Sequence[tuple[nn.Module, str, torch.Tensor]]) -> Iterator[None]:
    """Put ``copies`` (see :func:`buffer_copies`) in place of the buffers; the originals, never written to,
    are put back afterwards."""
    originals = [(module, name, module._buffers[name]) for module, name, _ in copies]
    try:
        for module, name, copy in copies:
            setattr(module, name, copy)
        yield
    finally:
        for module, name, original in originals:
            setattr(module, name, original)


@contextlib.contextmanager
def _measurement_context(model: nn.Module, bn_mode: BNMode) -> Iterator[None]:
    """Set modes for a measurement; restore every module's mode, buffer, ``requires_grad`` and the RNG afterwards.

    The buffers are the very tensors they were (never written to), so a training graph that saved
    them for its backward is untouched.
    """
    modes = {module: module.training for module in model.modules()}
    # every buffer is swapped for a copy while measuring, and the original put back: the measurement
    # never writes to a tensor training holds (a training graph may keep BN's running statistics for
    # its backward, whose version must not change; the monitor can measure between forward and backward)
    # no parameter gradient is wanted: a custom autograd.Function (e.g. timm_ll's CReLUConv2d) cannot
    # see that autograd.grad prunes them and would compute its weight gradient for nothing
    trainable = [p for p in model.parameters() if p.requires_grad]
    # fork_rng saves and restores the CPU RNG and that of every CUDA device already in use
    cuda_devices = range(torch.cuda.device_count()) if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    handles = []
    try:
        with torch.random.fork_rng(devices=cuda_devices), buffers_swapped(buffer_copies(model)):
            for param in trainable:
                param.requires_grad_(False)
            model.eval()
            if bn_mode == "batch":
                for module in model.modules():
                    if isinstance(module, nn.modules.batchnorm._BatchNorm):
                        if module.running_mean is None:  # no buffers to hold the statistics: normalize as in training
                            module.train()
                        else:
                            handles.append(module.register_forward_pre_hook(_use_batch_statistics))
            yield
    finally:
        for param in trainable:
            param.requires_grad_(True)
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training


def _first_tensor(value: object) -> torch.Tensor | None:
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else []
    return next((item for item in items if isinstance(item, torch.Tensor)), None)


def _with_first_tensor(value: object, tensor: torch.Tensor) -> object:
    """``value`` (a tuple or list) with its first tensor replaced; mappings are returned unchanged."""
    if not isinstance(value, (tuple, list)):
        return None
    items, done = [], False
    for item in value:
        if not done and isinstance(item, torch.Tensor):
            items.append(tensor)
            done = True
        else:
            items.append(item)
    return type(value)(items) if isinstance(value, list) else tuple(items)


def _per_sample_output(output: object, n: int) -> torch.Tensor:
    """The network's output as ``(n, ...)``: its first tensor, rows regrouped per sample if flattened.

    A language model's ``(n * T, vocab)`` log-probabilities (targets flattened with the batch)
    become ``(n, T * vocab)``.
    """
    tensor = output if isinstance(output, torch.Tensor) else _first_tensor(output)
    if tensor is None:
        raise ValueError(f"the network returned {type(output).__name__} with no tensor in it; pass forward_fn=...")
    if tensor.dim() > 0 and tensor.shape[0] != n and tensor.shape[0] % n == 0:
        return tensor.reshape(n, -1)
    return tensor


class _OutputCapture:
    """Forward hooks that keep the outputs of named layers, in the order the forward pass ran them."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name: str) -> Callable[..., torch.Tensor | None]:
        def hook(_module: nn.Module, _args: object, output: object) -> object:
            # a tuple/list/mapping output (an LSTM's (output, state), a ModelOutput): its first tensor
            tensor = output if isinstance(output, torch.Tensor) else _first_tensor(output)
            if tensor is None:
                raise ValueError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick another layer")
            replaced = None
            if torch.is_grad_enabled() and not tensor.requires_grad and tensor.is_floating_point():
                # nothing before this layer is differentiated (integer inputs, frozen parameters):
                # the gradient starts here
                tensor = tensor.detach().requires_grad_()
                replaced = tensor if isinstance(output, torch.Tensor) else _with_first_tensor(output, tensor)
            self.outputs[name] = tensor  # a layer run twice keeps its first place and its last output
            return replaced

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def input_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    *,
    readout: Readout | None = None,
    bn_mode: BNMode = "eval",
    layers: Sequence[str] | None = None,
    chunk_size: int | None = None,
    forward_fn: Callable[[nn.Module, torch.Tensor], object] | None = None,
) -> InputGradients:
    """Per-sample gradients of a scalar readout of ``model`` w.r.t. ``inputs`` (and layer outputs).

    With ``bn_mode="eval"`` every module is in eval mode, samples are independent, and one
    backward pass of the summed readout gives every per-sample gradient at once (the sum's
    gradient w.r.t. sample i is sample i's own gradient). ``bn_mode="batch"`` is the paper's
    setting: batch-norm layers normalize with the probe batch's statistics (BN over the
    grid), held constant in the backward pass, so the gradient of the summed readout is
    again each sample's gradient through the network the probe batch defines. (Differentiating
    through the statistics instead would make the summed readout of a BN net that is linear
    at init identically constant, sum_i (x_i - mean x) = 0, leaving only round-off as its
    gradient.) Running statistics are restored exactly afterwards.

    The measurement is invisible to training: parameters' ``.grad`` are never written
    (``torch.autograd.grad``), and every submodule's train/eval mode, every buffer and the
    CPU/CUDA RNG states are restored. Autocast is disabled inside, so a ``bf16-mixed`` run is
    measured in the parameters' precision (float32).

    Args:
        model: any module. A ``torch.compile``d one is measured through its original module, and
            compiled code inside (``model.compile()``, compiled submodules) runs eagerly: a
            measurement never triggers a recompilation.
        inputs: the probe, ``(n, ...)``, ordered along the path.
        readout: maps the model output ``(n, ...)`` to ``(n,)`` scalars; default
            :func:`random_projection_readout` (class-agnostic, seeded).
        bn_mode: ``"eval"`` (running statistics) or ``"batch"`` (probe-batch statistics).
        layers: names of submodules (``model.get_submodule`` names) whose output gradients
            are wanted too; their outputs must be tensors.
        chunk_size: with ``bn_mode="eval"``, run the probe in chunks of this many samples to
            bound memory (samples are independent, so the result is the same).
        forward_fn: ``forward_fn(model, probe)`` runs the network on the probe (default
            ``model(probe)``): for networks that take more arguments, or whose probed input is
            injected inside (see :mod:`lightning_callbacks.replay`). The output's first tensor is
            used; a ``(n * T, ...)`` output is regrouped as ``(n, ...)``.

    Returns:
        :class:`InputGradients` with detached tensors.

    Raises:
        ValueError: unknown ``bn_mode`` or layer name, or a layer whose output is not a tensor.
        TypeError: integer inputs and no ``layers`` (nothing differentiable to measure).
    """
    check_bn_mode(bn_mode)
    if chunk_size is not None and chunk_size < inputs.shape[0]:
        return _chunked_input_gradients(model, inputs, readout, bn_mode, layers, chunk_size, forward_fn)
    model = unwrap_compiled(model)
    layers = list(layers or [])
    modules = resolve_layers(model, layers)
    differentiable_input = inputs.is_floating_point() or inputs.is_complex()
    if not differentiable_input and not layers:
        raise TypeError(
            f"inputs of dtype {inputs.dtype} cannot be differentiated; for token ids pass "
            "layers=['<embedding module name>'] to measure the gradient at the embedding output"
        )
    readout = readout or random_projection_readout()
    capture = _OutputCapture(modules)
    try:
        with _measurement_context(model, bn_mode), torch.enable_grad(), _no_autocast(inputs.device), _eager():
            x = inputs.detach().clone().requires_grad_(differentiable_input)
            output = forward_fn(model, x) if forward_fn is not None else model(x)
            values = readout(_per_sample_output(output, inputs.shape[0]))
            if values.shape != (inputs.shape[0],):
                raise ValueError(
                    f"readout must return one scalar per sample, shape ({inputs.shape[0]},), got {tuple(values.shape)}"
                )
            targets = ([x] if differentiable_input else []) + list(capture.outputs.values())
            grads = torch.autograd.grad(values.sum(), targets, allow_unused=True)
    finally:
        capture.remove()
    missing = [n for n in layers if n not in capture.outputs]
    if missing:
        raise ValueError(f"layers {missing} did not run in the forward pass; check the names")
    input_grad = grads[0] if differentiable_input else None
    layer_grads = grads[1:] if differentiable_input else grads
    return InputGradients(
        input=None if input_grad is None else input_grad.detach(),
        layers={
            name: (torch.zeros_like(output) if g is None else g.detach())
            for (name, output), g in zip(capture.outputs.items(), layer_grads)
        },
        output=values.detach(),
    )


def _chunked_input_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    readout: Readout | None,
    bn_mode: BNMode,
    layers: Sequence[str] | None,
    chunk_size: int,
    forward_fn: Callable[[nn.Module, torch.Tensor], object] | None,
) -> InputGradients:
    """:func:`input_gradients` of ``inputs`` in chunks (eval mode: samples are independent), concatenated."""
    if bn_mode != "eval":
        raise ValueError("chunk_size needs bn_mode='eval': with batch statistics the probe must run as one batch")
    parts = [
        input_gradients(model, part, readout=readout, bn_mode=bn_mode, layers=layers, forward_fn=forward_fn)
        for part in inputs.split(chunk_size)
    ]
    return InputGradients(
        input=None if parts[0].input is None else torch.cat([p.input for p in parts]),
        layers={name: torch.cat([p.layers[name] for p in parts]) for name in parts[0].layers},
        output=torch.cat([p.output for p in parts]),
    )


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, enabled=False)


def _eager() -> contextlib.AbstractContextManager:
    """Compiled code runs eagerly inside: a probe (another batch size, eval mode, an input that needs a
    gradient) would otherwise recompile a network compiled in place (``model.compile()``) or a compiled
    submodule, a cost paid at every measurement. ``torch.compiler.set_stance`` is torch >= 2.6."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()


def _constant_tolerance(grads: torch.Tensor) -> float:
    """Centered-to-uncentered energy ratio below which gradients count as equal up to round-off."""
    return (_CONSTANT_ULPS * torch.finfo(grads.dtype if grads.is_floating_point() else torch.float64).eps) ** 2


def _as_matrix(grads: torch.Tensor) -> torch.Tensor:
    if grads.dim() == 0 or grads.shape[0] < 2:
        raise ValueError(f"need gradients at >= 2 points along the probe, shape (n, ...), got {tuple(grads.shape)}")
    return grads.reshape(grads.shape[0], -1).to(torch.float64)


def _centered(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(g, z, flat)``: gradients as float64 ``(n, D)``, centered along the probe, and whether they are
    equal up to round-off (centered energy at most :func:`_constant_tolerance` of the uncentered one)."""
    g, z, energy = _centered_energy(grads)
    return g, z, _is_flat(grads, g, z, energy)


def _centered_energy(grads: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = _as_matrix(grads)
    z = g - g.mean(dim=0, keepdim=True)
    flat_z = z.reshape(-1)
    return g, z, torch.dot(flat_z, flat_z)


def _is_flat(grads: torch.Tensor, g: torch.Tensor, z: torch.Tensor, energy: torch.Tensor) -> bool:
    # the uncentered energy is the centered one plus n |mean|^2: no second pass over the gradients
    mean = g[0] - z[0]
    uncentered = energy + g.shape[0] * torch.dot(mean, mean)
    return bool(energy <= _constant_tolerance(grads) * uncentered or energy == 0)


def is_flat(grads: torch.Tensor) -> bool:
    """Whether the gradients ``(n, ...)`` are equal at every probe point up to round-off (a linear net's are)."""
    return _centered(grads)[2]


def autocorrelation(grads: torch.Tensor, max_lag: int = 1) -> torch.Tensor:
    """Autocorrelation of gradients along the probe, lags 0..``max_lag``.

    ``z_i = g_i - mean_i g``; ``ACF(k) = sum_i <z_i, z_{i+k}> / sum_i <z_i, z_i>``. For 1-D
    inputs this is exactly the paper's ACF. If the centered energy is negligible against the
    uncentered one (below ``(1e4 * finfo(dtype).eps)^2`` of it: all gradients equal up to
    round-off, e.g. an LL net at init) every lag is 1.0, never NaN; non-finite gradients give NaN.

    Returns:
        float64 tensor of shape ``(max_lag + 1,)``; entry 0 is 1.
    """
    g, z, energy = _centered_energy(grads)
    n = g.shape[0]
    if not 0 <= max_lag < n:
        raise ValueError(f"max_lag={max_lag} must be in [0, {n - 1}] for {n} points")
    if not torch.isfinite(energy):  # a NaN or Inf gradient makes the energy non-finite: one check, no pass
        return torch.full((max_lag + 1,), math.nan, dtype=torch.float64)
    if _is_flat(grads, g, z, energy):
        return torch.ones(max_lag + 1, dtype=torch.float64)
    return torch.stack([torch.dot(z[: n - k].reshape(-1), z[k:].reshape(-1)) / energy for k in range(max_lag + 1)])


def neighbor_correlation(grads: torch.Tensor) -> torch.Tensor:
    """``ACF(1)``: correlation of gradients at neighbouring probe points (1 = smooth, 0 = white noise)."""
    return autocorrelation(grads, max_lag=1)[1]


def gradient_covariance(grads: torch.Tensor) -> torch.Tensor:
    """The paper's covariance image: ``|Z Z^T|`` of centered gradients, scaled to a maximum of 1.

    Returns:
        ``(n, n)`` float64 tensor in [0, 1] (all zeros if the gradients do not vary).
    """
    _, z, _ = _centered(grads)
    cov = (z @ z.T).abs()
    top = cov.max()
    return cov / top if top > 0 else cov


def _singular_values(matrix: torch.Tensor) -> torch.Tensor:
    if matrix.dim() < 2:
        raise ValueError(f"expected a matrix (n, ...), got shape {tuple(matrix.shape)}")
    flat = matrix.reshape(matrix.shape[0], -1).to(torch.float64)
    if not torch.isfinite(flat).all():
        return torch.full((min(flat.shape),), math.nan, dtype=torch.float64)
    return torch.linalg.svdvals(flat)


def effective_rank(matrix: torch.Tensor, eps: float | None = None) -> torch.Tensor:
    """Effective rank of Roy & Vetterli (2007): ``exp(H(p))``, ``p = s / sum(s)`` over singular values ``s``.

    ``matrix`` is ``(n, ...)``, flattened to ``(n, D)`` and not centered. Convention: singular
    values at or below ``eps * max(s)`` are treated as exact zeros (``0 log 0 = 0``), so
    round-off does not add rank. The default ``eps`` is numpy's ``matrix_rank`` tolerance,
    ``finfo(matrix.dtype).eps * max(n, D)``. A zero matrix has effective rank 0.
    """
    if eps is None:
        dtype = matrix.dtype if matrix.is_floating_point() else torch.float64
        eps = torch.finfo(dtype).eps * max(matrix.shape[0], matrix[0].numel())
    s = _singular_values(matrix)
    if torch.isnan(s).any():
        return torch.tensor(math.nan, dtype=torch.float64)
    if s.numel() == 0 or s.max() <= 0:
        return torch.tensor(0.0, dtype=torch.float64)
    s = s[s > eps * s.max()]
    p = s / s.sum()
    return torch.exp(-(p * p.log()).sum())


def stable_rank(matrix: torch.Tensor) -> torch.Tensor:
    """Stable rank ``||A||_F^2 / ||A||_2^2`` of the ``(n, D)`` matrix (0 for a zero matrix)."""
    s = _singular_values(matrix)
    if torch.isnan(s).any():
        return torch.tensor(math.nan, dtype=torch.float64)
    if s.numel() == 0 or s.max() == 0:
        return torch.tensor(0.0, dtype=torch.float64)
    return s.pow(2).sum() / s.max().pow(2)


def spectral_slope(grads: torch.Tensor) -> torch.Tensor:
    """Exponent ``beta`` of the power spectrum ``P(f) ~ f^-beta`` of the gradients along the probe.

    The centered gradients are Fourier-transformed along the path, the power is averaged
    over the remaining dimensions, and ``beta`` is the least-squares slope of ``-log P``
    against ``log f`` over the non-zero frequencies. White noise gives ~0, brown noise ~2;
    gradients constant up to round-off (see :func:`autocorrelation`) give NaN (no spectrum).
    """
    _, z, flat = _centered(grads)
    if flat:
        return torch.tensor(math.nan, dtype=torch.float64)
    power = torch.fft.rfft(z, dim=0).abs().pow(2).mean(dim=1)[1:]
    freqs = torch.arange(1, power.shape[0] + 1, dtype=torch.float64, device=power.device)
    keep = power > 0
    if keep.sum() < 2 or not torch.isfinite(power).all():
        return torch.tensor(math.nan, dtype=torch.float64)
    _, slope, _ = _fit_line(freqs[keep].log(), power[keep].log())
    return torch.tensor(-slope, dtype=torch.float64)


def gradient_statistics(grads: torch.Tensor) -> dict[str, float]:
    """Every statistic of one probe's gradients ``(n, ...)``: the one place the monitor and the CLI compute them.

    Returns:
        ``neighbor_corr``, ``effective_rank``, ``stable_rank`` and ``spectral_slope`` (NaN for
        a flat gradient, which has no spectrum; see :func:`spectral_slope`), as Python floats.
    """
    return {
        "neighbor_corr": neighbor_correlation(grads).item(),
        "effective_rank": effective_rank(grads).item(),
        "stable_rank": stable_rank(grads).item(),
        "spectral_slope": spectral_slope(grads).item(),
    }


@dataclass
class DepthProfile:
    """Neighbor correlation per layer, in forward order, and the better-fitting decay law.

    Attributes:
        layers: layer names; ``depths`` their 1-based positions.
        correlations: neighbor correlation (ACF(1)) at each layer.
        law: ``"exponential"`` (``c ~ exp(-rate * depth)``), ``"power"`` (``c ~ depth^-rate``)
            or ``None`` when fewer than 3 positive correlations allow no fit.
        rate: the fitted rate (exponential) or exponent (power law); ``r2``: its R^2 in log space.
    """

    layers: list[str]
    depths: list[int]
    correlations: list[float]
    law: str | None = None
    rate: float = math.nan
    r2: float = math.nan


def _fit_line(x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, float]:
    """Least squares y = a + b x (``torch.linalg.lstsq``); returns (a, b, R^2)."""
    design = torch.stack([torch.ones_like(x), x], dim=1)
    a, b = torch.linalg.lstsq(design, y.unsqueeze(1)).solution.flatten().tolist()
    ss_tot = (y - y.mean()).pow(2).sum()
    ss_res = (y - a - b * x).pow(2).sum()
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else torch.tensor(1.0, dtype=torch.float64)
    return a, b, float(r2)


def fit_decay(depths: Sequence[float], values: Sequence[float]) -> tuple[str | None, float, float]:
    """Fit ``c ~ exp(-rate * depth)`` and ``c ~ depth^-rate`` to the positive values; keep the higher R^2.

    Returns:
        ``(law, rate, r2)`` with law ``"exponential"`` or ``"power"``, or ``(None, nan, nan)``
        when fewer than 3 positive values allow no fit.
    """
    points = [(float(d), float(c)) for d, c in zip(depths, values) if c > 0 and math.isfinite(c)]
    if len(points) < 3:
        return None, math.nan, math.nan
    d = torch.tensor([p[0] for p in points], dtype=torch.float64)
    log_c = torch.tensor([math.log(p[1]) for p in points], dtype=torch.float64)
    if torch.allclose(log_c, log_c[0].expand_as(log_c)):
        return "exponential", 0.0, 1.0
    _, slope_exp, r2_exp = _fit_line(d, log_c)
    _, slope_pow, r2_pow = _fit_line(d.log(), log_c)
    if r2_exp >= r2_pow:
        return "exponential", -slope_exp, r2_exp
    return "power", -slope_pow, r2_pow


def profile_from_correlations(layers: Sequence[str], correlations: Sequence[float]) -> DepthProfile:
    """A :class:`DepthProfile` of given per-layer correlations (in forward order), with its fitted decay law."""
    depths = list(range(1, len(layers) + 1))
    law, rate, r2 = fit_decay(depths, correlations)
    return DepthProfile(layers=list(layers), depths=depths, correlations=list(correlations), law=law, rate=rate, r2=r2)


def depth_profile(layer_grads: Mapping[str, torch.Tensor]) -> DepthProfile:
    """Neighbor correlation at each layer (in the mapping's order, i.e. forward order) and its decay law.

    Both ``log c = a - rate * depth`` and ``log c = a - rate * log(depth)`` are fitted to the
    layers with positive correlation; the one with the higher R^2 is reported (:func:`fit_decay`).
    """
    names = list(layer_grads)
    return profile_from_correlations(names, [neighbor_correlation(layer_grads[n]).item() for n in names])
