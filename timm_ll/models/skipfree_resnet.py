"""Skip-free variants of timm's ResNet: ``ll_resnet{18,34,50,101}`` and ``plain_resnet{18,34,50,101}``.

Built on timm's own :class:`timm.models.ResNet` (stages, widths, stem, head, feature info,
``forward_intermediates``, grad checkpointing, ``create_model`` kwargs) with blocks whose
shortcut is removed. This module's name keeps them apart from timm's ``resnet`` listings
(``timm.list_models(module="skipfree_resnet")``).

- ``plain_resnet*``: ReLU, He init, timm's stem with its 3x3/2 max-pool: ResNet minus skips.
- ``ll_resnet*``: CReLU and looks-linear init. Every conv after the stem sees twice the
  channels (filter counts are kept, as in the CIFAR families). The stem's max-pool is
  replaced by a 3x3/2 **average** pool (``count_include_pad=False``): averaging is linear, so
  the net stays exactly affine at init, whereas a max over ``[relu(z), relu(-z)]`` would
  break the cancellation. It keeps the max-pool's geometry (output size, stride, receptive
  field), so feature maps and ``feature_info`` reductions are unchanged.
"""

from collections.abc import Callable
from typing import Any

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import ResNet, build_model_with_cfg, generate_default_cfgs, register_model
from torch import nn

from timm_ll.init import init_looks_linear_, looks_linear_
from timm_ll.layers import CReLU, CReLUConv2d
from timm_ll.models._checkpoint import check_pretrained_file, checkpoint_filter_fn

__all__ = ["SkipFreeResNet", "SkipFreeBasicBlock", "SkipFreeBottleneck"]


def crelu_layer(inplace: bool = False) -> CReLU:
    """CReLU under timm's ``act_layer(inplace=...)`` calling convention.

    timm's ResNet builds activations as ``act_layer(inplace=True)``; CReLU writes a new tensor
    of twice the size, so there is nothing to do in place and the flag is not used.
    """
    return CReLU(dim=1)


def _conv_type(act_mult: int) -> type[nn.Conv2d]:
    """Convs fed by a CReLU (act_mult 2) keep the CReLU's input for backward, not its 2x output (timm_ll.layers)."""
    return CReLUConv2d if act_mult == 2 else nn.Conv2d


def _refuse_unsupported(**options: object) -> None:
    """timm's block options that the skip-free blocks do not implement must not be silently ignored."""
    given = sorted(name for name, value in options.items() if value is not None)
    if given:
        raise ValueError(
            f"skip-free ResNet blocks do not support {', '.join(given)} (drop_path needs a shortcut); leave them unset"
        )


class SkipFreeBasicBlock(nn.Module):
    """timm's BasicBlock (conv3x3-norm-act, conv3x3-norm-act) without the shortcut.

    ``act_mult`` is 2 when the activation is a CReLU: every conv then sees twice the channels
    its predecessor produced, the block's input included. ``downsample`` (built by timm's
    ``make_blocks`` for the shortcut) is accepted and dropped: there is no shortcut.
    """

    expansion = 1

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        reduce_first: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        drop_block: Callable[[], nn.Module] | None = None,
        drop_path: nn.Module | None = None,
        aa_layer: Callable[..., nn.Module] | None = None,
        attn_layer: Callable[..., nn.Module] | None = None,
        act_mult: int = 1,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _refuse_unsupported(aa_layer=aa_layer, attn_layer=attn_layer, drop_path=drop_path)
        if cardinality != 1 or base_width != 64:
            raise ValueError("SkipFreeBasicBlock supports cardinality=1 and base_width=64, like timm's BasicBlock")
        dd = {"device": device, "dtype": dtype}
        conv = _conv_type(act_mult)
        first_planes = planes // reduce_first
        first_dilation = first_dilation or dilation
        self.conv1 = conv(
            inplanes * act_mult,
            first_planes,
            3,
            stride=stride,
            padding=first_dilation,
            dilation=first_dilation,
            bias=False,
            **dd,
        )
        self.bn1 = norm_layer(first_planes, **dd)
        self.drop_block = drop_block() if drop_block is not None else nn.Identity()
        self.act1 = act_layer(inplace=True)
        self.conv2 = conv(first_planes * act_mult, planes, 3, padding=dilation, dilation=dilation, bias=False, **dd)
        self.bn2 = norm_layer(planes, **dd)
        self.act2 = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.drop_block(self.bn1(self.conv1(x))))
        return self.act2(self.bn2(self.conv2(x)))


class SkipFreeBottleneck(nn.Module):
    """timm's Bottleneck (1x1, 3x3, 1x1, each conv-norm-act) without the shortcut."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        cardinality: int = 1,
        base_width: int = 64,
        reduce_first: int = 1,
        dilation: int = 1,
        first_dilation: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        drop_block: Callable[[], nn.Module] | None = None,
        drop_path: nn.Module | None = None,
        aa_layer: Callable[..., nn.Module] | None = None,
        attn_layer: Callable[..., nn.Module] | None = None,
        act_mult: int = 1,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        _refuse_unsupported(aa_layer=aa_layer, attn_layer=attn_layer, drop_path=drop_path)
        if cardinality != 1:
            raise ValueError("looks-linear init needs groups=1 convs; use cardinality=1")
        dd = {"device": device, "dtype": dtype}
        conv = _conv_type(act_mult)
        width = int(planes * (base_width / 64)) * cardinality
        first_planes = width // reduce_first
        outplanes = planes * self.expansion
        first_dilation = first_dilation or dilation
        self.conv1 = conv(inplanes * act_mult, first_planes, 1, bias=False, **dd)
        self.bn1 = norm_layer(first_planes, **dd)
        self.act1 = act_layer(inplace=True)
        self.conv2 = conv(
            first_planes * act_mult,
            width,
            3,
            stride=stride,
            padding=first_dilation,
            dilation=first_dilation,
            bias=False,
            **dd,
        )
        self.bn2 = norm_layer(width, **dd)
        self.drop_block = drop_block() if drop_block is not None else nn.Identity()
        self.act2 = act_layer(inplace=True)
        self.conv3 = conv(width * act_mult, outplanes, 1, bias=False, **dd)
        self.bn3 = norm_layer(outplanes, **dd)
        self.act3 = act_layer(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.drop_block(self.bn2(self.conv2(x))))
        return self.act3(self.bn3(self.conv3(x)))


class SkipFreeResNet(ResNet):
    """timm's ResNet with skip-free blocks; ``looks_linear=True`` makes it the LL variant.

    Accepts every argument of :class:`timm.models.ResNet` except those that only make sense
    with a shortcut (``avg_down``, ``down_kernel_size``, ``zero_init_last`` are fixed).
    """

    def __init__(
        self, block: type[nn.Module], layers: tuple[int, ...], looks_linear: bool = False, **kwargs: Any
    ) -> None:
        for arg in ("act_layer", "zero_init_last", "avg_down", "down_kernel_size"):
            if arg in kwargs:
                raise TypeError(f"SkipFreeResNet fixes {arg!r} (no shortcut / LL activation); do not pass it")
        mult = 2 if looks_linear else 1
        block_args = dict(kwargs.pop("block_args", None) or {}, act_mult=mult)
        act_layer = crelu_layer if looks_linear else nn.ReLU
        # decided before timm's __init__, which calls init_weights: the LL init then runs once, there
        self.looks_linear = looks_linear
        super().__init__(
            block=block, layers=layers, act_layer=act_layer, block_args=block_args, zero_init_last=False, **kwargs
        )
        if looks_linear:
            # timm's ResNet sizes the head and feature_info by filter counts; a CReLU doubles what each stage
            # emits, and a max over [relu(z), relu(-z)] would break the exact cancellation (see the docstring)
            self.maxpool = nn.AvgPool2d(kernel_size=3, stride=2, padding=1, count_include_pad=False)
            for info in self.feature_info:
                info["num_chs"] *= mult
            self.num_features *= mult
            self.reset_classifier(self.num_classes)

    @torch.jit.ignore
    def init_weights(self, zero_init_last: bool = False) -> None:
        """He init (timm's) for the ReLU variant; orthogonal stem + looks-linear everywhere else for LL."""
        if self.looks_linear:
            init_looks_linear_(self, mirrored=lambda layer: layer is not self.conv1)
        else:
            super().init_weights(zero_init_last=False)

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """timm's reset, plus a looks-linear classifier for the LL variant (it stays affine at init)."""
        super().reset_classifier(num_classes, global_pool)
        if self.looks_linear and isinstance(self.fc, nn.Linear):
            looks_linear_(self.fc)


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 1000,
        "input_size": (3, 224, 224),
        "pool_size": (7, 7),
        "crop_pct": 0.875,
        "interpolation": "bilinear",
        "mean": IMAGENET_DEFAULT_MEAN,
        "std": IMAGENET_DEFAULT_STD,
        "first_conv": "conv1",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:1702.08591",
        **kwargs,
    }


ARCHS = {
    18: (SkipFreeBasicBlock, (2, 2, 2, 2)),
    34: (SkipFreeBasicBlock, (3, 4, 6, 3)),
    50: (SkipFreeBottleneck, (3, 4, 6, 3)),
    101: (SkipFreeBottleneck, (3, 4, 23, 3)),
}
default_cfgs = generate_default_cfgs({f"{p}_resnet{d}": _cfg() for p in ("ll", "plain") for d in ARCHS})


def _create(variant: str, depth: int, looks_linear: bool, pretrained: bool, kwargs: dict[str, Any]) -> ResNet:
    check_pretrained_file(pretrained, kwargs)
    block, layers = ARCHS[depth]
    model_args = dict(block=block, layers=layers, looks_linear=looks_linear)
    return build_model_with_cfg(
        SkipFreeResNet, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **dict(model_args, **kwargs)
    )


@register_model
def ll_resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Looks-linear skip-free ResNet-18 (CReLU, mirrored orthogonal init, avg-pool stem)."""
    return _create("ll_resnet18", 18, True, pretrained, kwargs)


@register_model
def ll_resnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Looks-linear skip-free ResNet-34."""
    return _create("ll_resnet34", 34, True, pretrained, kwargs)


@register_model
def ll_resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Looks-linear skip-free ResNet-50 (bottleneck blocks)."""
    return _create("ll_resnet50", 50, True, pretrained, kwargs)


@register_model
def ll_resnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """Looks-linear skip-free ResNet-101."""
    return _create("ll_resnet101", 101, True, pretrained, kwargs)


@register_model
def plain_resnet18(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-18 without shortcuts (ReLU, He init): the skip-free baseline."""
    return _create("plain_resnet18", 18, False, pretrained, kwargs)


@register_model
def plain_resnet34(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-34 without shortcuts."""
    return _create("plain_resnet34", 34, False, pretrained, kwargs)


@register_model
def plain_resnet50(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-50 without shortcuts."""
    return _create("plain_resnet50", 50, False, pretrained, kwargs)


@register_model
def plain_resnet101(pretrained: bool = False, **kwargs: Any) -> ResNet:
    """ResNet-101 without shortcuts."""
    return _create("plain_resnet101", 101, False, pretrained, kwargs)
