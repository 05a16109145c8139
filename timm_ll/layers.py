"""Building blocks of looks-linear networks.

The concatenated ReLU of Shang et al. (2016), used by Balduzzi et al. (2017) to build
networks that are exactly linear at initialization.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_module
from torch import nn

__all__ = ["CReLU", "crelu"]


class _CReLUFunction(torch.autograd.Function):
    """CReLU whose backward keeps only its output.

    ``torch.cat([relu(x), relu(-x)])`` built from primitives keeps both ReLU outputs for
    backward *and* the concatenated copy the next layer keeps: 2x the activation memory.
    The sign of ``x`` can be read back from the output (``x > 0`` iff the positive half
    is > 0, ``x < 0`` iff the negative half is > 0), and the next conv/linear layer keeps
    that same output tensor anyway, so saving it costs no extra memory at all.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dim: int) -> torch.Tensor:  # type: ignore[override]
        # write both halves straight into one buffer: no temporaries for -x and the two relus
        shape = list(x.shape)
        shape[dim] *= 2
        # keep a channels-last input channels-last (what the next conv wants on GPUs)
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        out = torch.empty(
            shape,
            dtype=x.dtype,
            device=x.device,
            memory_format=torch.channels_last if channels_last else torch.contiguous_format,
        )
        pos, neg = out.chunk(2, dim=dim)
        torch.clamp_min(x, 0, out=pos)
        torch.clamp_max(x, 0, out=neg)
        neg.neg_()
        ctx.dim = dim
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):  # type: ignore[override]
        (out,) = ctx.saved_tensors
        pos, neg = out.chunk(2, dim=ctx.dim)
        grad_pos, grad_neg = grad_out.chunk(2, dim=ctx.dim)
        # d relu(x)/dx = [x > 0]; d relu(-x)/dx = -[x < 0]; both 0 at x == 0, as torch.relu.
        # threshold_backward is the kernel torch.relu's own backward uses; subtract in place.
        grad_x = torch.ops.aten.threshold_backward(grad_pos, pos, 0)
        return grad_x.sub_(torch.ops.aten.threshold_backward(grad_neg, neg, 0)), None


def crelu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Concatenated ReLU: ``cat([relu(x), relu(-x)], dim)``; the output has twice ``x``'s size on ``dim``."""
    if torch.jit.is_scripting():
        return torch.cat((F.relu(x), F.relu(-x)), dim=dim)
    if not x.requires_grad or not torch.is_grad_enabled():
        return torch.cat((F.relu(x), F.relu(-x)), dim=dim)
    return _CReLUFunction.apply(x, dim)


torch.fx.wrap("crelu")  # plain torch.fx tracing records one call instead of failing on the autograd.Function


@register_notrace_module  # a leaf for timm's fx feature extraction
class CReLU(nn.Module):
    """Concatenated ReLU module: ``cat([relu(x), relu(-x)], dim)``.

    Doubles the channel count. A layer consuming it sees ``[relu(z), relu(-z)]``; with
    mirrored weights ``[W0, -W0]`` (see :func:`timm_ll.looks_linear_`) it computes
    ``W0 z`` exactly, which is what makes a looks-linear net linear at initialization.

    Args:
        dim: dimension to concatenate on (1 = channels for NCHW and (N, C) inputs).
    """

    def __init__(self, dim: int = 1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return crelu(x, self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"
