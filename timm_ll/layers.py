"""Building blocks of looks-linear networks.

The concatenated ReLU of Shang et al. (2016), used by Balduzzi et al. (2017) to build
networks that are exactly linear at initialization, and the convolution that consumes it.

Memory. A CReLU doubles the channels, and the convolution after it keeps its input for the
weight gradient: kept naively, an LL unit (conv -> norm -> CReLU -> conv) holds the norm's
input (C channels) plus the concatenation (2C), 1.5x a ReLU unit's C + C. Yet the
concatenation is a cheap, exact function of the CReLU's input ``z``. So a :class:`CReLU`
keeps ``z`` (C) for its own backward, and the :class:`CReLUConv2d` (and 1d/3d) it feeds keeps
that same ``z`` instead of the concatenation and recomputes ``[relu(z), relu(-z)]`` in its
backward: C + C, like a ReLU unit.

The pair in the model's structure. The two are two modules, not one, on purpose: the CReLU
ends a block and the convolution starts the next, and the CReLU's output (2C channels) is
what timm's ``forward_intermediates``, ``features_only`` and the ShatteringMonitor observe and
differentiate; a single module taking ``z`` would move every block boundary. What joins them
is visible: the CReLU's ``recompute`` attribute (in its repr; :func:`set_crelu_recompute` sets
it on a whole model) and the consuming layer's class. The convolution finds ``z`` through
autograd's own record of the CReLU (its output's ``grad_fn``, which holds a weak reference
to ``z``), not through a global switch or an attribute on the tensor, so two threads or two
models never see each other's choice.

Why a custom ``autograd.Function`` and not torch's selective activation checkpointing: SAC
recomputes the ops of one checkpointed region, and the region would have to span the block
boundary above. The Function keeps every module, output and ``state_dict`` key as it is, and
the convolution's forward is the very ``F.conv*d`` call of ``nn.Conv*d`` (bitwise-equal
outputs). Its backward calls ``aten.convolution_backward``, the kernel autograd's own
convolution backward uses.

The convolution takes the recomputing path only while ``z`` is alive anyway (the CReLU's
backward keeps it) and the CReLU output was not modified in place; otherwise (no grad,
``torch.compile`` -- whose partitioner makes the same recompute choice itself --, TorchScript,
fx tracing, activation checkpointing, saved-tensor hooks that move ``z`` away) it is a plain
convolution.

Cost. The forward writes ``relu(z)`` and then ``relu(-z) = relu(z) - z`` (two passes, not three);
the backward masks the two gradient halves with one kernel each (``threshold_backward``, the
kernel of ``torch.relu``'s own backward, and ``hardtanh_backward`` for ``z < 0``), with no ``-z``
temporary. Both equal ``torch.cat((relu(z), relu(-z)))`` and its autograd gradient for every
finite ``z`` (at +-inf and NaN, where training has already diverged, they may differ).
"""

from __future__ import annotations

import contextlib
import contextvars
import weakref
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

from timm_ll.deprecations import warn_moved
from timm_ll.init import tat_gain

__all__ = [
    "CReLU",
    "crelu",
    "CReLUConv1d",
    "CReLUConv2d",
    "CReLUConv3d",
    "crelu_conv_type",
    "crelu_recompute",
    "set_crelu_recompute",
    "TATLeakyReLU",
]

# the deprecated crelu_recompute() only: a context-local override (None: each CReLU's own attribute rules)
_DEPRECATED_OVERRIDE: contextvars.ContextVar[bool | None] = contextvars.ContextVar("crelu_recompute", default=None)


def crelu_recompute(enabled: bool) -> contextlib.AbstractContextManager[None]:
    """Deprecated: use ``CReLU(recompute=...)`` or :func:`set_crelu_recompute` on the model.

    A context manager that overrides every CReLU's ``recompute`` within its block (in this thread
    or task only).
    """
    warn_moved("timm_ll.crelu_recompute(enabled)", "timm_ll.set_crelu_recompute(model, enabled)", stacklevel=3)
    return _overriding_recompute(bool(enabled))


@contextlib.contextmanager
def _overriding_recompute(enabled: bool) -> Iterator[None]:
    token = _DEPRECATED_OVERRIDE.set(enabled)
    try:
        yield
    finally:
        _DEPRECATED_OVERRIDE.reset(token)


def set_crelu_recompute(model: nn.Module, enabled: bool) -> nn.Module:
    """Set ``recompute`` on every :class:`CReLU` of ``model`` and return ``model``.

    On (the default), a CReLU keeps its input for backward and the next convolution recomputes
    the concatenation from it; off, the CReLU keeps its output (2C channels, shared with the next
    layer): what this package did before, kept to measure the saving (``benchmarks/models.py``)
    and to rule it out when debugging. Numerics are the same either way.
    """
    found = [module for module in model.modules() if isinstance(module, CReLU)]
    if not found:
        raise ValueError(f"{type(model).__name__} has no CReLU module: there is no recomputation to turn on or off")
    for module in found:
        module.recompute = bool(enabled)
    return model


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    """Channels-last for a 4-d channels-last tensor (what the next conv wants on GPUs), else contiguous."""
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


def _crelu_values(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``cat([relu(x), relu(-x)], dim)`` written straight into one buffer (channels-last kept).

    Two passes: ``relu(-x) = relu(x) - x`` exactly for finite ``x`` (``x - x`` is an exact 0 for
    ``x > 0``, ``0 - x`` an exact ``-x`` otherwise).
    """
    shape = list(x.shape)
    shape[dim] *= 2
    out = torch.empty(shape, dtype=x.dtype, device=x.device, memory_format=_memory_format(x))
    pos, neg = out.chunk(2, dim=dim)
    torch.clamp_min(x, 0, out=pos)
    torch.sub(pos, x, out=neg)
    return out


class _CReLUFunction(torch.autograd.Function):
    """CReLU whose backward keeps only its input ``x`` (C channels), which the next conv shares.

    With ``recompute`` off it keeps its output instead (2C, shared with the next layer, which
    keeps that output anyway): the sign of ``x`` is read back from the halves. With it on, its
    graph node holds a weak reference to ``x`` (``source``) and the output's version when made
    (``made_at``): how a following :class:`CReLUConv2d` finds ``x``.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int, recompute: bool) -> torch.Tensor:  # type: ignore[override]
        out = _crelu_values(x, dim)
        ctx.dim, ctx.kept_output = dim, not recompute
        ctx.save_for_backward(out if ctx.kept_output else x)
        # a channel CReLU only: a following conv may recompute it from x
        ctx.source = weakref.ref(x) if recompute and dim in (1, 1 - x.dim()) else None
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (kept,) = ctx.saved_tensors
        grad_pos, grad_neg = grad_out.chunk(2, dim=ctx.dim)
        # d relu(x)/dx = [x > 0]; d relu(-x)/dx = -[x < 0]; both 0 at x == 0, as torch.relu
        if ctx.kept_output:
            pos, neg = kept.chunk(2, dim=ctx.dim)  # x > 0 iff relu(x) > 0, x < 0 iff relu(-x) > 0
            grad_x = torch.ops.aten.threshold_backward(grad_pos, pos, 0)
            return grad_x.sub_(torch.ops.aten.threshold_backward(grad_neg, neg, 0)), None, None
        grad_x = torch.ops.aten.threshold_backward(grad_pos, kept, 0)
        # grad where -inf < x < 0, else 0: the negative half's mask without a -x temporary
        return grad_x.sub_(torch.ops.aten.hardtanh_backward(grad_neg, kept, float("-inf"), 0.0)), None, None


def crelu(x: torch.Tensor, dim: int = 1, recompute: bool = True) -> torch.Tensor:
    """Concatenated ReLU: ``cat([relu(x), relu(-x)], dim)``; the output has twice ``x``'s size on ``dim``.

    ``recompute``: keep ``x`` for backward (C channels), so that a following ``CReLUConv*d`` shares
    it and recomputes the concatenation; False keeps the output (2C) instead.
    """
    if torch.jit.is_scripting():
        return torch.cat((F.relu(x), F.relu(-x)), dim=dim)
    if torch.compiler.is_compiling() or torch.jit.is_tracing():  # plain ops for a compiler or an exporter
        return torch.cat((F.relu(x), F.relu(-x)), dim=dim)
    if not x.requires_grad or not torch.is_grad_enabled():  # inference: the two-pass kernel, nothing kept
        return _crelu_values(x, dim)
    override = _DEPRECATED_OVERRIDE.get()
    out = _CReLUFunction.apply(x, dim, recompute if override is None else override)
    out.grad_fn.made_at = out._version  # an in-place change after this is seen by the next conv
    return out


torch.fx.wrap("crelu")  # plain torch.fx tracing records one call instead of failing on the autograd.Function


@register_notrace_module  # a leaf for timm's fx feature extraction
class CReLU(nn.Module):
    """Concatenated ReLU module: ``cat([relu(x), relu(-x)], dim)``.

    Doubles the channel count. A layer consuming it sees ``[relu(z), relu(-z)]``; with
    mirrored weights ``[W0, -W0]`` (see :func:`timm_ll.looks_linear_`) it computes
    ``W0 z`` exactly, which is what makes a looks-linear net linear at initialization.

    Args:
        dim: dimension to concatenate on (1 = channels for NCHW and (N, C) inputs).
        recompute: keep only the input for backward and let the ``CReLUConv*d`` that consumes the
            output recompute the concatenation from it (the module docstring); False keeps the output.
    """

    # the output has twice the input's channels: model builders size the next layer by this
    channel_multiplier = 2

    def __init__(self, dim: int = 1, recompute: bool = True) -> None:
        super().__init__()
        self.dim = dim
        self.recompute = recompute

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crelu(x, self.dim, self.recompute)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, recompute={self.recompute}"


class TATLeakyReLU(nn.Module):
    """TAT's normalized Leaky ReLU (Zhang et al. 2022): ``gain * leaky_relu(x; negative_slope)``.

    ``gain = sqrt(2 / (1 + negative_slope^2))`` keeps ``E[phi(x)^2] = 1`` for ``x ~ N(0, 1)``, so a
    net of variance-preserving weights keeps its activations' scale at any depth. Pick the slope
    for a depth with :func:`timm_ll.tat_slope`.

    Args:
        negative_slope: the slope for negative inputs, in ``[0, 1]`` (1 is the identity).
    """

    def __init__(self, negative_slope: float) -> None:
        super().__init__()
        if not 0.0 <= negative_slope <= 1.0:
            raise ValueError(f"negative_slope={negative_slope!r}: a tailored rectifier's slope lies in [0, 1]")
        self.negative_slope = float(negative_slope)
        self.gain = tat_gain(self.negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope).mul(self.gain)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope:.4f}, gain={self.gain:.4f}"


class _ConvOfCReLU(torch.autograd.Function):
    """A convolution of a CReLU output ``h`` that keeps the CReLU's input ``z`` for backward, not ``h``."""

    @staticmethod
    def forward(ctx, h, z, weight, bias, conv, stride, padding, dilation, groups):  # type: ignore[override]
        out = conv(h, weight, bias, stride, padding, dilation, groups)  # nn.Conv*d's own call: same output
        ctx.save_for_backward(z, weight)
        ctx.conv_args = (stride, padding, dilation, groups)
        ctx.dtypes = (h.dtype, weight.dtype, None if bias is None else bias.dtype, out.dtype)
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):  # type: ignore[override]
        z, weight = ctx.saved_tensors
        stride, padding, dilation, groups = ctx.conv_args
        h_dtype, weight_dtype, bias_dtype, compute_dtype = ctx.dtypes
        # under autocast the forward ran in compute_dtype (e.g. bf16): so does the recompute. The input
        # gradient needs only h's shape: without a weight gradient (a measurement of input gradients, a frozen
        # layer) nothing is recomputed
        if ctx.needs_input_grad[2]:
            h = _crelu_values(z, 1).to(compute_dtype)
        else:
            shape = (z.shape[0], 2 * z.shape[1], *z.shape[2:])
            h = torch.empty(shape, dtype=compute_dtype, device=z.device, memory_format=_memory_format(z))
        grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_out.to(compute_dtype),
            h,
            weight.to(compute_dtype),
            None if bias_dtype is None else [weight.shape[0]],
            stride,
            padding,
            dilation,
            False,
            [0] * len(stride),
            groups,
            [ctx.needs_input_grad[0], ctx.needs_input_grad[2], bias_dtype is not None and ctx.needs_input_grad[3]],
        )
        return (
            None if grad_input is None else grad_input.to(h_dtype),
            None,
            None if grad_weight is None else grad_weight.to(weight_dtype),
            None if grad_bias is None else grad_bias.to(bias_dtype),
            None,
            None,
            None,
            None,
            None,
        )


_FUNCTIONAL = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _crelu_source(h: torch.Tensor) -> torch.Tensor | None:
    """The live CReLU input that ``h`` was computed from, if ``h`` is an unmodified CReLU output."""
    node = h.grad_fn
    if type(node) is not _CReLUFunction._backward_cls:  # made by something else, or a view of a CReLU output
        return None
    source = node.source
    z = source() if source is not None else None
    return z if z is not None and h._version == node.made_at else None


def _conv_after_crelu(conv: nn.modules.conv._ConvNd, x: torch.Tensor) -> torch.Tensor:
    z = _crelu_source(x) if isinstance(x, torch.Tensor) and torch.is_grad_enabled() else None
    if z is None or conv.padding_mode != "zeros" or isinstance(conv.padding, str) or torch.compiler.is_compiling():
        return conv._conv_forward(x, conv.weight, conv.bias)
    functional = _FUNCTIONAL[len(conv.stride)]
    return _ConvOfCReLU.apply(
        x, z, conv.weight, conv.bias, functional, conv.stride, conv.padding, conv.dilation, conv.groups
    )


class _ConvAfterCReLU:
    """The forward of the ``CReLUConv*d`` classes (a mixin, listed before ``nn.Conv*d``)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():
            return self._conv_forward(input, self.weight, self.bias)
        return _conv_after_crelu(self, input)


@register_notrace_module
class CReLUConv1d(_ConvAfterCReLU, nn.Conv1d):
    """``nn.Conv1d`` that, fed a CReLU output, keeps the CReLU's input for backward (see the module docstring)."""


@register_notrace_module
class CReLUConv2d(_ConvAfterCReLU, nn.Conv2d):
    """``nn.Conv2d`` that, fed a CReLU output, keeps the CReLU's input for backward (see the module docstring).

    Same parameters, ``state_dict`` keys and forward output as ``nn.Conv2d``; any other input
    is convolved exactly as ``nn.Conv2d`` does.
    """


@register_notrace_module
class CReLUConv3d(_ConvAfterCReLU, nn.Conv3d):
    """``nn.Conv3d`` that, fed a CReLU output, keeps the CReLU's input for backward (see the module docstring)."""


_CRELU_CONV = {nn.Conv1d: CReLUConv1d, nn.Conv2d: CReLUConv2d, nn.Conv3d: CReLUConv3d}


def crelu_conv_type(conv_type: type[nn.Module]) -> type[nn.Module]:
    """The memory-saving CReLU-consuming class for ``nn.Conv1d/2d/3d`` (itself for any other layer type)."""
    return _CRELU_CONV.get(conv_type, conv_type)
