"""The gradient engine: input (and block-output) gradients of a readout along a probe, invisible to training."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from lightning_callbacks.functional.blocks import resolve_blocks, unwrap_compiled
from lightning_callbacks.functional.outputs import describe_output, first_tensor, per_sample_output, with_first_tensor
from lightning_callbacks.functional.probes import RandomProjectionReadout, Readout, random_projection_readout

__all__ = [
    "BNMode",
    "InputGradients",
    "input_gradients",
    "check_bn_mode",
    "buffer_copies",
    "buffers_swapped",
    "measurement_context",
]

BNMode = Literal["eval", "batch"]


@dataclass
class InputGradients:
    """Gradients of a scalar readout along a probe.

    Attributes:
        input: gradients w.r.t. the probe inputs, shape of the inputs (None for integer inputs).
        blocks: gradients w.r.t. the outputs of the requested blocks, in forward order.
        output: the readout values, shape (num_points,).
        unreached: the blocks that ran but whose output does not reach the readout (an unused
            branch, an auxiliary head): their entry in ``blocks`` is zeros of the output's shape,
            which is no measurement (see :func:`~lightning_callbacks.functional.gradient_status`).
        activations: the requested blocks' outputs at the ``keep`` points (the forward signal), in
            the order of ``keep``; empty without ``keep``.
        final_activations: the measured network output (what the readout reads) at the ``keep`` points.
    """

    input: torch.Tensor | None
    blocks: dict[str, torch.Tensor] = field(default_factory=dict)
    output: torch.Tensor | None = None
    unreached: frozenset[str] = frozenset()
    activations: dict[str, torch.Tensor] = field(default_factory=dict)
    final_activations: torch.Tensor | None = None


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
def measurement_context(model: nn.Module, bn_mode: BNMode) -> Iterator[None]:
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


class _OutputCapture:
    """Forward hooks that keep the outputs of named layers, in the order the forward pass ran them."""

    def __init__(self, modules: Mapping[str, nn.Module]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = [module.register_forward_hook(self._hook(name)) for name, module in modules.items()]

    def _hook(self, name: str) -> Callable[..., torch.Tensor | None]:
        def hook(_module: nn.Module, _args: object, output: object) -> object:
            # a tuple/list/mapping output (an LSTM's (output, state), a ModelOutput): its first tensor
            tensor = output if isinstance(output, torch.Tensor) else first_tensor(output)
            if tensor is None:
                raise ValueError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick another layer")
            replaced = None
            if torch.is_grad_enabled() and not tensor.requires_grad and tensor.is_floating_point():
                # nothing before this layer is differentiated (integer inputs, frozen parameters):
                # the gradient starts here
                tensor = tensor.detach().requires_grad_()
                replaced = tensor if isinstance(output, torch.Tensor) else with_first_tensor(output, tensor)
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
    blocks: Sequence[str] | None = None,
    chunk_size: int | None = None,
    forward_fn: Callable[[nn.Module, torch.Tensor], object] | None = None,
    keep: Sequence[int] | None = None,
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
        blocks: names of submodules (``model.get_submodule`` names) whose output gradients
            are wanted too; their outputs must be tensors.
        chunk_size: with ``bn_mode="eval"``, run the probe in chunks of this many samples to
            bound memory (samples are independent, so the result is the same).
        forward_fn: ``forward_fn(model, probe)`` runs the network on the probe (default
            ``model(probe)``): for networks that take more arguments, or whose probed input is
            injected inside (see :mod:`lightning_callbacks.replay`). The output's first tensor is
            used; a ``(n * T, ...)`` output is regrouped as ``(n, ...)``.
        keep: indices of probe points (ascending) whose layer outputs and network output are kept
            as well (the forward signal, e.g. a line's two endpoints for the forward kernel): the
            same pass, so it costs an index and a copy of those rows.

    Returns:
        :class:`InputGradients` with detached tensors.

    Raises:
        ValueError: unknown ``bn_mode`` or layer name, or a layer whose output is not a tensor.
        TypeError: integer inputs and no ``blocks`` (nothing differentiable to measure).
    """
    check_bn_mode(bn_mode)
    keep = sorted(set(keep or []))
    if keep and not 0 <= keep[0] <= keep[-1] < inputs.shape[0]:
        raise ValueError(f"keep={keep}: indices of probe points, 0 <= i < {inputs.shape[0]}")
    if chunk_size is not None and chunk_size < inputs.shape[0]:
        return _chunked_input_gradients(model, inputs, readout, bn_mode, blocks, chunk_size, forward_fn, keep)
    model = unwrap_compiled(model)
    blocks = list(blocks or [])
    modules = resolve_blocks(model, blocks)
    differentiable_input = inputs.is_floating_point() or inputs.is_complex()
    if not differentiable_input and not blocks:
        raise TypeError(
            f"inputs of dtype {inputs.dtype} cannot be differentiated; for token ids pass "
            "blocks=['<embedding module name>'] to measure the gradient at the embedding output"
        )
    readout = readout or random_projection_readout()
    capture = _OutputCapture(modules)
    try:
        with measurement_context(model, bn_mode), torch.enable_grad(), _no_autocast(inputs.device), _eager():
            x = inputs.detach().clone().requires_grad_(differentiable_input)
            output = forward_fn(model, x) if forward_fn is not None else model(x)
            values, measured_output = _read_out(readout, output, inputs.shape[0])
            n = inputs.shape[0]
            # only outputs with one row per point (not a sequence-first (T, n, ...) one) have per-point rows
            kept = {name: out[keep].detach() for name, out in capture.outputs.items() if keep and out.shape[0] == n}
            final = measured_output[keep].detach() if keep and _rows(measured_output) == n else None
            targets = ([x] if differentiable_input else []) + list(capture.outputs.values())
            grads = torch.autograd.grad(values.sum(), targets, allow_unused=True)
    finally:
        capture.remove()
    missing = [n for n in blocks if n not in capture.outputs]
    if missing:
        raise ValueError(f"blocks {missing} did not run in the forward pass; check the names")
    input_grad = grads[0] if differentiable_input else None
    layer_grads = grads[1:] if differentiable_input else grads
    pairs = list(zip(capture.outputs.items(), layer_grads))
    return InputGradients(
        input=None if input_grad is None else input_grad.detach(),
        # zeros keep the shapes (chunks concatenate, lines split) and ``unreached`` says they are no reading
        blocks={name: (torch.zeros_like(output) if g is None else g.detach()) for (name, output), g in pairs},
        output=values.detach(),
        unreached=frozenset(name for (name, _), g in pairs if g is None),
        activations=kept,
        final_activations=final,
    )


def _rows(value: object) -> int | None:
    return value.shape[0] if isinstance(value, torch.Tensor) and value.dim() > 0 else None


def _read_out(readout: Readout, output: object, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The readout of the network's output on ``n`` probe points: one scalar per point.

    The readout gets the measured part of the output (:func:`per_sample_output`: ``logits``, else the
    first per-sample tensor; never a scalar loss). Where the output holds no per-sample tensor, a
    readout of the caller's own gets the whole output; the default one cannot, and says what was found.
    """
    measured = per_sample_output(output, n)
    if measured is None:
        if isinstance(readout, RandomProjectionReadout):
            raise ValueError(
                f"the network returned {describe_output(output)}: no floating tensor with one row per probe point "
                f"({n}) to measure; pass readout=<callable(output) -> (n,) scalars> that reads it, or "
                "forward_fn=<callable(module, probe) -> per-sample output>"
            )
        measured = output
    values = readout(measured)
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        shape = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"readout must return one scalar per sample, shape ({n},), got {shape}")
    return values, measured


def _chunked_input_gradients(
    model: nn.Module,
    inputs: torch.Tensor,
    readout: Readout | None,
    bn_mode: BNMode,
    blocks: Sequence[str] | None,
    chunk_size: int,
    forward_fn: Callable[[nn.Module, torch.Tensor], object] | None,
    keep: Sequence[int],
) -> InputGradients:
    """:func:`input_gradients` of ``inputs`` in chunks (eval mode: samples are independent), concatenated."""
    if bn_mode != "eval":
        raise ValueError("chunk_size needs bn_mode='eval': with batch statistics the probe must run as one batch")
    parts = []
    for start in range(0, inputs.shape[0], chunk_size):
        part = inputs[start : start + chunk_size]
        local = [i - start for i in keep if start <= i < start + part.shape[0]]
        parts.append(
            input_gradients(
                model, part, readout=readout, bn_mode=bn_mode, blocks=blocks, forward_fn=forward_fn, keep=local
            )
        )
    kept = [p for p in parts if p.activations or p.final_activations is not None]
    finals = [p.final_activations for p in kept]
    return InputGradients(
        input=None if parts[0].input is None else torch.cat([p.input for p in parts]),
        blocks={name: torch.cat([p.blocks[name] for p in parts]) for name in parts[0].blocks},
        output=torch.cat([p.output for p in parts]),
        unreached=frozenset().union(*(p.unreached for p in parts)),
        activations={
            name: torch.cat([p.activations[name] for p in kept])
            for name in parts[0].blocks
            if kept and all(name in p.activations for p in kept)
        },
        final_activations=torch.cat(finals) if finals and all(f is not None for f in finals) else None,
    )


def _no_autocast(device: torch.device) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type=device.type, enabled=False)


def _eager() -> contextlib.AbstractContextManager:
    """Compiled code runs eagerly inside: a probe (another batch size, eval mode, an input that needs a
    gradient) would otherwise recompile a network compiled in place (``model.compile()``) or a compiled
    submodule, a cost paid at every measurement. ``torch.compiler.set_stance`` is torch >= 2.6."""
    set_stance = getattr(torch.compiler, "set_stance", None)
    return set_stance("force_eager") if set_stance is not None else contextlib.nullcontext()
