"""The seven CIFAR families, registered in timm: Balduzzi et al. (2017)'s four and three at equal cost.

All seven are one :class:`CifarNet` built from parts as timm builds its nets (a ``block``, an
``act_layer``, a weight init, ``looks_linear``): 32x32 input, a 3x3 stem conv, three stages
of 16/32/64 filters with ``n`` blocks of two 3x3 convs each, global average pooling and a
linear classifier (depth = 6n + 2 weight layers). ``FAMILIES`` holds each family's parts:

================ =============== ============= =====================================================
family           act_layer       block         init
================ =============== ============= =====================================================
``ll_plain``     CReLU           plain         looks-linear (mirrored orthogonal), Balduzzi et al.
``crelu_plain``  CReLU           plain         He (the paper's "CReLU w/o LL")
``plain``        ReLU            plain         He
``cifar_resnet`` ReLU            basic (A)     He, as He et al. (2016) for CIFAR
``ll_slim``      CReLU           plain         looks-linear, at ``plain``'s parameters and FLOPs
``tat_plain``    TAT leaky ReLU  plain         orthogonal, ``plain``'s widths (Zhang et al. 2022)
``tat_slim``     CReLU           plain         mirrored with TAT's ratio, ``ll_slim``'s widths
================ =============== ============= =====================================================

Normalization sits before the activation (conv -> norm -> act), so at init, in eval mode,
a norm layer is affine and an LL net stays exactly affine in its input. For the skip-free
families this *is* the pre-activation net (BN -> act -> conv) layer for layer: both are a bare
stem conv, then BN -> CReLU -> conv repeated, then BN -> CReLU -> pool -> linear; they differ
only in where the block boundaries fall. We keep the boundary after the activation because
that is what timm's ``features_only`` / ``forward_intermediates`` and the ShatteringMonitor
observe: each block hands on a CReLU output (the pre-activation block would hand on a raw conv
output, and its first and last blocks would differ from the rest). For ``cifar_resnet``,
post-activation is He et al.'s 2016 CIFAR ResNet, the baseline of the paper.

Filter counts are kept: a CReLU net has the same 16/32/64 pre-activation channels as the
ReLU nets, so every conv after a CReLU sees twice the input channels and the LL/CReLU
families have ~2x the parameters and conv FLOPs of ``plain`` (see docs/MODELS.md).

``ll_slim`` is the equal-compute looks-linear family: pre-activation widths 11/23/45, near
1/sqrt(2) of 16/32/64, so that a conv reading a CReLU output (2x the channels) costs what the
ReLU net's conv costs. Its parameter count and conv FLOPs are within 1.3% of ``plain`` and
``cifar_resnet`` at every registered depth from 20 up (``tests/test_models.py`` checks 5%).
Of the width triples inside 5% (12/22/45, 12/22/46, 11/22/46, ...), 11/23/45 is the closest on
both counts, and its training step on this project's CPU is as fast as the others'.

Tailored rectifiers (TAT: Zhang, Botev, Martens 2022, "Deep Learning without Shortcuts"). A
skip-free net of Leaky ReLUs ``sqrt(2 / (1 + a^2)) leaky_relu(x; a)`` and orthogonal weights has,
at init, a kernel ``C_net`` that is the activation's local C map composed over its ``depth - 1``
activations; TAT picks the slope ``a`` so that ``C_net(0) = eta`` (``timm_ll.tat_slope``; eta = 0.9
by default, ``eta=`` through ``timm.create_model``). ``tat_plain`` is that net at ``plain``'s widths
(a step costs what a ``plain``/ResNet step costs). ``tat_slim`` is the CReLU net at ``ll_slim``'s
widths whose mirrored weights ``[s W0, -s a W0]`` make it, at init, exactly such a Leaky-ReLU net
(``a = 1`` would be looks-linear). The slope follows the model's depth (``depth=`` recomputes it;
``reset_classifier`` and ``init_weights`` keep it): ``model.slope``.

How batch norm departs from the theory: TAT's C maps assume each layer's inputs have unit
variance per unit and that the kernel between two examples is carried layer to layer by the
weights and activations alone. Train-mode batch norm keeps the first (it rescales every channel
to unit variance, which the normalized activation already preserves) but breaks the second: it
subtracts each channel's mean over the batch, which moves every pair of examples' cosine towards
0 at every layer, so the composed kernel of a BN net is not ``C_net`` and ``eta`` is only the
kernel of its eval-mode (affine-BN) twin at init. TAT's published results are norm-free;
``norm_layer=""`` gives that net.
"""

from collections.abc import Callable
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from timm.layers import create_classifier, get_device_dtype, get_norm_layer
from timm.models import build_model_with_cfg, checkpoint_seq, generate_default_cfgs, register_model
from timm.models._features import feature_take_indices
from torch import nn

from timm_ll.deprecations import warn_moved
from timm_ll.init import NORM_TYPES, OrthogonalKind, init_layer_looks_linear_, max_reachable_eta, tat_slope
from timm_ll.layers import CReLU, CReLUConv2d, TATLeakyReLU
from timm_ll.models._checkpoint import check_pretrained_file, checkpoint_filter_fn

__all__ = [
    "CifarNet",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "valid_depths",
    "FAMILIES",
    "REGISTERED_DEPTHS",
    "SLIM_WIDTHS",
    "PlainBlock",
    "BasicBlock",
    "SHALLOW_ETA",
    "TAT_ETA",
]

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
STAGE_WIDTHS = (16, 32, 64)
# ll_slim: ~STAGE_WIDTHS / sqrt(2), so that CReLU's doubled channels cost what ReLU's do
SLIM_WIDTHS = (11, 23, 45)

# TAT's target C_net(0) (Zhang et al. 2022's default)
TAT_ETA = 0.9
# depth 8's 7 activations reach at most C_net(0) = 0.809: eta="auto" gives it this instead of TAT_ETA
SHALLOW_ETA = 0.8

WeightInit = Literal["he", "orthogonal"]
# the activation layers a CifarNet takes by name (a class or any callable returning a module works too)
ACT_LAYERS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "crelu": CReLU, "tat_leaky_relu": TATLeakyReLU}


def valid_depths(limit: int = 200) -> list[int]:
    """Depths a CifarNet can have (6n + 2, n >= 1) up to ``limit``."""
    return list(range(8, limit + 1, 6))


def _check_depth(depth: int) -> int:
    if not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        shown = ", ".join(map(str, valid_depths(56)))
        raise ValueError(
            f"depth={depth!r} is not a CIFAR depth: it must be 6n+2 with n >= 1 "
            f"(valid: {shown}, ..., 110, ..., 200, ...)"
        )
    return (depth - 2) // 6


class CifarUnit(nn.Module):
    """conv -> norm -> activation, the unit every family is built of."""

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[[], nn.Module] | None = nn.ReLU,
        conv_layer: type[nn.Conv2d] = nn.Conv2d,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        dd = {"device": device, "dtype": dtype}
        self.conv = conv_layer(in_chs, out_chs, 3, stride=stride, padding=1, bias=norm_layer is None, **dd)
        self.bn = norm_layer(out_chs, **dd) if norm_layer is not None else nn.Identity()
        self.act = act_layer() if act_layer is not None else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class PlainBlock(nn.Module):
    """Two conv-norm-act units and no shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act_mult: int, **unit_args: Any) -> None:
        super().__init__()
        self.unit1 = CifarUnit(in_chs, out_chs, stride, **unit_args)
        self.unit2 = CifarUnit(out_chs * act_mult, out_chs, 1, **unit_args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit2(self.unit1(x))


class BasicBlock(nn.Module):
    """He et al. (2016) CIFAR block: conv-norm-act, conv-norm, + identity shortcut (option A), act."""

    def __init__(self, in_chs: int, out_chs: int, stride: int, act_mult: int, **unit_args: Any) -> None:
        super().__init__()
        if act_mult != 1:
            raise ValueError("the residual block is the He et al. baseline and takes a ReLU act_layer, not a CReLU")
        act_layer = unit_args.pop("act_layer")
        self.unit1 = CifarUnit(in_chs, out_chs, stride, act_layer=act_layer, **unit_args)
        self.unit2 = CifarUnit(out_chs, out_chs, 1, act_layer=None, **unit_args)
        self.act = act_layer()
        self.stride = stride
        self.pad_chs = out_chs - in_chs

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        # option A of He et al.: subsample and zero-pad the new channels; parameter-free
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.pad_chs > 0:
            x = F.pad(x, (0, 0, 0, 0, 0, self.pad_chs))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.unit2(self.unit1(x)) + self.shortcut(x))


BLOCKS: dict[str, type[nn.Module]] = {"plain": PlainBlock, "basic": BasicBlock}


_OLD_ACTIVATIONS = {"relu": "relu", "crelu": "crelu", "leaky_relu": "tat_leaky_relu"}


def _from_deprecated_spellings(
    deprecated: dict[str, Any], block: Any, act_layer: Any, looks_linear: bool, weight_init: str
) -> tuple[Any, Any, bool, str]:
    """Map the string flags CifarNet took before it was built from parts (``activation=``, ``residual=``,
    ``init=``) onto ``act_layer``, ``block``, ``looks_linear`` and ``weight_init``, with a warning."""
    unknown = sorted(set(deprecated) - {"activation", "residual", "init"})
    if unknown:
        import difflib
        import inspect

        valid = [p for p in inspect.signature(CifarNet).parameters if p != "deprecated"]
        hints = [
            f"{name!r}: did you mean {close[0]!r}?"
            for name in unknown
            if (close := difflib.get_close_matches(name, valid, 1))
        ]
        raise TypeError(
            f"CifarNet got unexpected keyword arguments {unknown}" + ("; " + "; ".join(hints) if hints else "")
        )
    if "activation" in deprecated:
        activation = deprecated["activation"]
        warn_moved("CifarNet(activation=...)", "CifarNet(act_layer=...)", stacklevel=4)
        if activation not in _OLD_ACTIVATIONS:
            raise ValueError(f"activation={activation!r}: use 'relu', 'crelu' or 'leaky_relu'")
        act_layer = _OLD_ACTIVATIONS[activation]
    if "residual" in deprecated:
        warn_moved("CifarNet(residual=...)", "CifarNet(block='basic')", stacklevel=4)
        block = "basic" if deprecated["residual"] else block
    if "init" in deprecated:
        init = deprecated["init"]
        warn_moved("CifarNet(init=...)", "CifarNet(looks_linear=True) or CifarNet(weight_init=...)", stacklevel=4)
        if init not in ("he", "looks_linear", "orthogonal"):
            raise ValueError(f"init={init!r}: use 'he', 'looks_linear' or 'orthogonal'")
        looks_linear = looks_linear or init == "looks_linear"
        weight_init = "he" if init == "looks_linear" else init
    return block, act_layer, looks_linear, weight_init


def _resolve(kind: str, value: Any, table: dict[str, Any]) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return table[value]
    except KeyError:
        raise ValueError(f"{kind}={value!r}: use one of {', '.join(map(repr, table))} (or a class)") from None


def _is_tailored(act_layer: Any) -> bool:
    return isinstance(act_layer, type) and issubclass(act_layer, TATLeakyReLU)


class CifarNet(nn.Module):
    """One CIFAR network built from parts, for all seven families (see the module docstring).

    Configured as timm's ResNet is: a ``block``, an ``act_layer``, a weight init, and
    ``looks_linear`` spelled as in :class:`timm_ll.SkipFreeResNet`.

    Args:
        depth: number of weight layers, 6n + 2 (20, 32, 44, 56, 110, 200, ...).
        block: ``PlainBlock`` / ``"plain"`` (two conv-norm-act units, no shortcut) or ``BasicBlock`` /
            ``"basic"`` (He et al.'s identity shortcut, option A; takes a ReLU).
        act_layer: the activation: a class or ``"relu"``, ``"crelu"`` (:class:`~timm_ll.CReLU`, whose
            ``channel_multiplier`` doubles what the next conv sees) or ``"tat_leaky_relu"``
            (:class:`~timm_ll.TATLeakyReLU`, its slope set by ``eta``). None: CReLU for a looks-linear net,
            else ReLU.
        looks_linear: mirrored orthogonal weights ``[W0, -alpha W0]`` after every CReLU (Balduzzi et al.;
            ``alpha`` is 1, or TAT's slope with ``eta``), so the net is exactly affine at init. Takes a CReLU.
        weight_init: the init of a net that is not looks-linear: ``"he"`` (Kaiming normal, fan_out) or
            ``"orthogonal"`` (variance-preserving orthogonal, TAT's init).
        num_classes: classifier outputs; 0 removes the classifier.
        in_chans: input channels.
        global_pool: timm pooling type (``"avg"``, ``"max"``, ``"avgmax"``, ``"catavgmax"``, ``""``).
        drop_rate: dropout before the classifier.
        norm_layer: normalization class (called as ``norm_layer(channels)``) or timm norm name,
            or None / ``""`` for a normalization-free net (convs then get a zero-initialized
            bias). ``timm.create_model`` drops None-valued kwargs, so pass ``norm_layer=""``
            there (timm's own convention for "no norm").
        widths: filters of the three stages.
        eta: TAT's target kernel ``C_net(0)`` (``timm_ll.tat_slope``), which sets a tailored activation's
            slope or a looks-linear net's mirror ratio; ``"auto"`` is TAT's 0.9, or ``SHALLOW_ETA`` (0.8)
            at depth 8, whose 7 activations cannot reach 0.9. None keeps the LL ratio 1.
        orthogonal: the orthogonal construction of looks-linear and orthogonal init: ``"flattened"``
            or ``"delta"`` (an orthogonal centre tap, Xiao et al. 2018: what DKS/TAT use, and what keeps a
            norm-free net's activation scale at depth 200, where zero padding drains the flattened one's).
        activation, residual, init: deprecated spellings of ``act_layer``, ``block`` and
            ``looks_linear``/``weight_init`` (warn, then work as before).
    """

    def __init__(
        self,
        depth: int = 56,
        block: type[nn.Module] | str = PlainBlock,
        act_layer: Callable[..., nn.Module] | str | None = None,
        looks_linear: bool = False,
        weight_init: WeightInit = "he",
        num_classes: int = 10,
        in_chans: int = 3,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        norm_layer: Callable[..., nn.Module] | str | None = nn.BatchNorm2d,
        widths: tuple[int, int, int] = STAGE_WIDTHS,
        eta: float | Literal["auto"] | None = None,
        orthogonal: OrthogonalKind = "flattened",
        device=None,
        dtype=None,
        **deprecated: Any,
    ) -> None:
        super().__init__()
        block, act_layer, looks_linear, weight_init = _from_deprecated_spellings(
            deprecated, block, act_layer, looks_linear, weight_init
        )
        blocks_per_stage = _check_depth(depth)
        block = _resolve("block", block, BLOCKS)
        act_layer = _resolve("act_layer", act_layer, ACT_LAYERS) or (CReLU if looks_linear else nn.ReLU)
        act_mult = getattr(act_layer, "channel_multiplier", 1)
        if block is BasicBlock and act_layer is not nn.ReLU:
            raise ValueError("the residual block is the He et al. baseline and takes a ReLU act_layer")
        if weight_init not in ("he", "orthogonal"):
            raise ValueError(f"weight_init={weight_init!r}: use 'he' or 'orthogonal' (or looks_linear=True)")
        if looks_linear and act_mult != 2:
            raise ValueError("looks_linear=True needs a CReLU act_layer (mirrored weights cancel only a CReLU)")
        if looks_linear and weight_init != "he":
            raise ValueError("looks_linear=True is its own init (mirrored orthogonal): drop weight_init")
        eta = self._resolve_eta(eta, depth, act_layer, looks_linear)
        # TAT's slope for this depth (depth - 1 activations: the stem and every conv before the classifier);
        # for a CReLU net it is the mirror ratio, 1.0 (looks-linear) without eta
        try:
            self.slope: float | None = tat_slope(depth - 1, eta) if eta is not None else None
        except ValueError as error:
            raise ValueError(f"depth={depth} (its {depth - 1} activations): {error}") from None
        if looks_linear and self.slope is None:
            self.slope = 1.0
        if _is_tailored(act_layer):
            act_layer = partial(act_layer, self.slope)
        elif act_layer is nn.ReLU:
            act_layer = partial(nn.ReLU, inplace=True)
        if isinstance(norm_layer, str) and norm_layer.strip().lower() == "none":
            norm_layer = None
        norm_layer = get_norm_layer(norm_layer)
        dd = {"device": device, "dtype": dtype}
        self.depth = depth
        self.eta = eta
        self.orthogonal = orthogonal
        self.num_classes = num_classes
        self.in_chans = in_chans
        self.drop_rate = drop_rate
        self.looks_linear = looks_linear
        self.weight_init = weight_init
        self.grad_checkpointing = False
        # every conv after the stem consumes a CReLU output: CReLUConv2d keeps the CReLU's input for
        # backward instead of the 2x-channel concatenation (see timm_ll.layers)
        conv_layer = CReLUConv2d if act_mult == 2 else nn.Conv2d
        unit_args = dict(norm_layer=norm_layer, act_layer=act_layer, conv_layer=conv_layer, **dd)

        self.stem = CifarUnit(in_chans, widths[0], 1, **dict(unit_args, conv_layer=nn.Conv2d))
        self.feature_info = [dict(num_chs=widths[0] * act_mult, reduction=1, module="stem")]
        stages, in_chs, reduction = [], widths[0] * act_mult, 1
        for stage_idx, width in enumerate(widths):
            stride = 1 if stage_idx == 0 else 2
            reduction *= stride
            blocks = []
            for block_idx in range(blocks_per_stage):
                blocks.append(block(in_chs, width, stride if block_idx == 0 else 1, act_mult, **unit_args))
                in_chs = width * act_mult
            stages.append(nn.Sequential(*blocks))
            self.feature_info.append(dict(num_chs=in_chs, reduction=reduction, module=f"stages.{stage_idx}"))
        self.stages = nn.Sequential(*stages)

        self.num_features = in_chs
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        self.init_weights()

    @staticmethod
    def _resolve_eta(eta: Any, depth: int, act_layer: Any, looks_linear: bool) -> float | None:
        tailored = _is_tailored(act_layer)
        if tailored and eta is None:
            raise ValueError(
                "a TATLeakyReLU act_layer is TAT's tailored rectifier: give eta= (TAT's is 0.9, or 'auto')"
            )
        if eta is not None and not (tailored or looks_linear):
            raise ValueError(
                f"eta={eta!r} sets a TAT slope: it applies to a TATLeakyReLU act_layer or looks_linear=True; "
                "drop eta for this family"
            )
        if eta == "auto":
            return TAT_ETA if TAT_ETA < max_reachable_eta(depth - 1) else SHALLOW_ETA
        return eta

    @torch.jit.ignore
    def init_weights(self) -> None:
        """(Re-)initialize every weight, layer by layer with :meth:`init_layer`."""
        for module in self.modules():
            self.init_layer(module)

    @torch.jit.ignore
    def init_layer(self, module: nn.Module) -> None:
        """Initialize one layer the model's way (the one place that choice is made).

        Looks-linear: mirrored orthogonal for every conv/linear after a CReLU (all but the stem's conv,
        which sees the raw input and gets a plain orthogonal init). Orthogonal: every conv/linear.
        He: Kaiming normal (fan_out) convolutions, the classifier left at its default. Norm layers
        are reset (weight 1, bias 0), so that at init, in eval mode, they are affine.
        """
        if self.looks_linear or self.weight_init == "orthogonal":
            mirrored = self.looks_linear and module is not self.stem.conv
            init_layer_looks_linear_(module, mirrored, alpha=self.slope if mirrored else 1.0, kind=self.orthogonal)
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORM_TYPES):
            module.reset_parameters()

    @torch.jit.ignore
    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        return dict(stem=r"^stem", blocks=r"^stages\.(\d+)" if coarse else r"^stages\.(\d+)\.(\d+)")

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    @torch.jit.ignore
    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """Replace the classifier, initialized the model's way (an LL net stays affine at init)."""
        dd = get_device_dtype(self)
        self.num_classes = num_classes
        if global_pool is None:
            global_pool = self.global_pool.pool_type
        self.global_pool, self.fc = create_classifier(self.num_features, num_classes, pool_type=global_pool, **dd)
        self.head_hidden_size = self.num_features * self.global_pool.feat_mult()
        # ('catavgmax' too: it keeps the CReLU layout)
        self.init_layer(self.fc)
        self.global_pool.train(self.training)
        self.fc.train(self.training)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """timm's intermediate-feature API: index 0 is the stem, 1-3 the stages."""
        assert output_fmt == "NCHW", "Output shape must be NCHW."
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        intermediates = []
        x = self.stem(x)
        if 0 in take_indices:
            intermediates.append(x)
        stages = self.stages if not stop_early else self.stages[:max_index]
        for idx, stage in enumerate(stages, start=1):
            if self.grad_checkpointing and not torch.jit.is_scripting():
                x = checkpoint_seq(stage, x)
            else:
                x = stage(x)
            if idx in take_indices:
                intermediates.append(x)
        if intermediates_only:
            return intermediates
        return x, intermediates

    def prune_intermediate_layers(
        self, indices: int | list[int] = 1, prune_norm: bool = False, prune_head: bool = True
    ) -> list[int]:
        """Drop the stages after the last wanted intermediate (and the head if ``prune_head``)."""
        take_indices, max_index = feature_take_indices(len(self.stages) + 1, indices)
        self.stages = self.stages[:max_index]
        if prune_head:
            self.num_features = self.feature_info[max_index]["num_chs"]
            self.reset_classifier(0, "")
        return take_indices

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        if self.grad_checkpointing and not torch.jit.is_scripting():
            x = checkpoint_seq(self.stages, x, flatten=True)
        else:
            x = self.stages(x)
        return x

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.global_pool(x)
        if self.drop_rate:
            x = F.dropout(x, p=float(self.drop_rate), training=self.training)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# name prefix -> CifarNet arguments of the family
FAMILIES: dict[str, dict[str, Any]] = {
    "ll_plain": dict(looks_linear=True),
    "crelu_plain": dict(act_layer="crelu"),
    "plain": dict(),
    "cifar_resnet": dict(block="basic"),
    "ll_slim": dict(looks_linear=True, widths=SLIM_WIDTHS),
    # TAT's own init: delta-orthogonal convs (see CifarNet's ``orthogonal``)
    "tat_plain": dict(act_layer="tat_leaky_relu", weight_init="orthogonal", eta="auto", orthogonal="delta"),
    "tat_slim": dict(looks_linear=True, widths=SLIM_WIDTHS, eta="auto", orthogonal="delta"),
}
# 8 (one block per stage) is the tiny member: quick checks and smoke tests
REGISTERED_DEPTHS = (8, 20, 32, 44, 56, 110, 200)


def _create_cifar_net(variant: str, pretrained: bool = False, **kwargs: Any) -> CifarNet:
    check_pretrained_file(pretrained, kwargs)
    return build_model_with_cfg(
        CifarNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(out_indices=(0, 1, 2, 3), flatten_sequential=True),
        **kwargs,
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "url": "",
        "num_classes": 10,
        "input_size": (3, 32, 32),
        "pool_size": (8, 8),
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": CIFAR10_MEAN,
        "std": CIFAR10_STD,
        "first_conv": "stem.conv",
        "classifier": "fc",
        "license": "apache-2.0",
        "paper_ids": "arXiv:1702.08591",
        "paper_name": "The Shattered Gradients Problem: If resnets are the answer, then what is the question?",
        **kwargs,
    }


default_cfgs = generate_default_cfgs({f"{family}{depth}": _cfg() for family in FAMILIES for depth in REGISTERED_DEPTHS})


def _entry(family: str, depth: int, pretrained: bool, kwargs: dict[str, Any]) -> CifarNet:
    model_args = dict(FAMILIES[family], depth=depth)
    return _create_cifar_net(f"{family}{depth}", pretrained, **dict(model_args, **kwargs))


@register_model
def ll_plain8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 8 layers (one block per stage: for quick checks)."""
    return _entry("ll_plain", 8, pretrained, kwargs)


@register_model
def ll_plain20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 20 layers (Balduzzi et al. 2017)."""
    return _entry("ll_plain", 20, pretrained, kwargs)


@register_model
def ll_plain32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 32 layers."""
    return _entry("ll_plain", 32, pretrained, kwargs)


@register_model
def ll_plain44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 44 layers."""
    return _entry("ll_plain", 44, pretrained, kwargs)


@register_model
def ll_plain56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 56 layers."""
    return _entry("ll_plain", 56, pretrained, kwargs)


@register_model
def ll_plain110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 110 layers."""
    return _entry("ll_plain", 110, pretrained, kwargs)


@register_model
def ll_plain200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net, 200 layers."""
    return _entry("ll_plain", 200, pretrained, kwargs)


@register_model
def crelu_plain8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 8 layers."""
    return _entry("crelu_plain", 8, pretrained, kwargs)


@register_model
def crelu_plain20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init (the paper's "CReLU w/o LL"), 20 layers."""
    return _entry("crelu_plain", 20, pretrained, kwargs)


@register_model
def crelu_plain32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 32 layers."""
    return _entry("crelu_plain", 32, pretrained, kwargs)


@register_model
def crelu_plain44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 44 layers."""
    return _entry("crelu_plain", 44, pretrained, kwargs)


@register_model
def crelu_plain56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 56 layers."""
    return _entry("crelu_plain", 56, pretrained, kwargs)


@register_model
def crelu_plain110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 110 layers."""
    return _entry("crelu_plain", 110, pretrained, kwargs)


@register_model
def crelu_plain200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with He init, 200 layers."""
    return _entry("crelu_plain", 200, pretrained, kwargs)


@register_model
def plain8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 8 layers."""
    return _entry("plain", 8, pretrained, kwargs)


@register_model
def plain20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init (He et al. 2016's "plain" net), 20 layers."""
    return _entry("plain", 20, pretrained, kwargs)


@register_model
def plain32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 32 layers."""
    return _entry("plain", 32, pretrained, kwargs)


@register_model
def plain44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 44 layers."""
    return _entry("plain", 44, pretrained, kwargs)


@register_model
def plain56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 56 layers."""
    return _entry("plain", 56, pretrained, kwargs)


@register_model
def plain110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 110 layers."""
    return _entry("plain", 110, pretrained, kwargs)


@register_model
def plain200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free ReLU net with He init, 200 layers."""
    return _entry("plain", 200, pretrained, kwargs)


@register_model
def cifar_resnet8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """CIFAR ResNet-8 (one block per stage)."""
    return _entry("cifar_resnet", 8, pretrained, kwargs)


@register_model
def cifar_resnet20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """He et al. (2016) CIFAR ResNet-20 (identity shortcuts, option A)."""
    return _entry("cifar_resnet", 20, pretrained, kwargs)


@register_model
def cifar_resnet32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """He et al. (2016) CIFAR ResNet-32."""
    return _entry("cifar_resnet", 32, pretrained, kwargs)


@register_model
def cifar_resnet44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """He et al. (2016) CIFAR ResNet-44."""
    return _entry("cifar_resnet", 44, pretrained, kwargs)


@register_model
def cifar_resnet56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """He et al. (2016) CIFAR ResNet-56."""
    return _entry("cifar_resnet", 56, pretrained, kwargs)


@register_model
def cifar_resnet110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """He et al. (2016) CIFAR ResNet-110."""
    return _entry("cifar_resnet", 110, pretrained, kwargs)


@register_model
def cifar_resnet200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """CIFAR ResNet-200 (same recipe as He et al.'s 20-110)."""
    return _entry("cifar_resnet", 200, pretrained, kwargs)


@register_model
def ll_slim8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear net at ``plain8``'s parameters and FLOPs, 8 layers (one block per stage: quick checks)."""
    return _entry("ll_slim", 8, pretrained, kwargs)


@register_model
def ll_slim20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain20``'s parameters and FLOPs, 20 layers."""
    return _entry("ll_slim", 20, pretrained, kwargs)


@register_model
def ll_slim32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain32``'s parameters and FLOPs, 32 layers."""
    return _entry("ll_slim", 32, pretrained, kwargs)


@register_model
def ll_slim44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain44``'s parameters and FLOPs, 44 layers."""
    return _entry("ll_slim", 44, pretrained, kwargs)


@register_model
def ll_slim56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain56``'s parameters and FLOPs, 56 layers."""
    return _entry("ll_slim", 56, pretrained, kwargs)


@register_model
def ll_slim110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain110``'s parameters and FLOPs, 110 layers."""
    return _entry("ll_slim", 110, pretrained, kwargs)


@register_model
def ll_slim200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Looks-linear skip-free CReLU net at ``plain200``'s parameters and FLOPs, 200 layers."""
    return _entry("ll_slim", 200, pretrained, kwargs)


@register_model
def tat_plain8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain8``'s widths, 8 layers (quick checks).

    Its 7 activations reach at most ``C_net(0) = 0.809``, so its default eta is ``SHALLOW_ETA`` (0.8), not 0.9.
    """
    return _entry("tat_plain", 8, pretrained, kwargs)


@register_model
def tat_plain20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain20``'s widths (slope for depth 20 at eta 0.9), 20 layers."""
    return _entry("tat_plain", 20, pretrained, kwargs)


@register_model
def tat_plain32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain32``'s widths (slope for depth 32 at eta 0.9), 32 layers."""
    return _entry("tat_plain", 32, pretrained, kwargs)


@register_model
def tat_plain44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain44``'s widths (slope for depth 44 at eta 0.9), 44 layers."""
    return _entry("tat_plain", 44, pretrained, kwargs)


@register_model
def tat_plain56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain56``'s widths (slope for depth 56 at eta 0.9), 56 layers."""
    return _entry("tat_plain", 56, pretrained, kwargs)


@register_model
def tat_plain110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain110``'s widths (slope for depth 110 at eta 0.9), 110 layers."""
    return _entry("tat_plain", 110, pretrained, kwargs)


@register_model
def tat_plain200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free TAT Leaky-ReLU net at ``plain200``'s widths (slope for depth 200 at eta 0.9), 200 layers."""
    return _entry("tat_plain", 200, pretrained, kwargs)


@register_model
def tat_slim8(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim8``'s widths, 8 layers (quick checks).

    Its 7 activations reach at most ``C_net(0) = 0.809``, so its default eta is ``SHALLOW_ETA`` (0.8), not 0.9.
    """
    return _entry("tat_slim", 8, pretrained, kwargs)


@register_model
def tat_slim20(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim20``'s widths (``plain20``'s cost), 20 layers."""
    return _entry("tat_slim", 20, pretrained, kwargs)


@register_model
def tat_slim32(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim32``'s widths (``plain32``'s cost), 32 layers."""
    return _entry("tat_slim", 32, pretrained, kwargs)


@register_model
def tat_slim44(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim44``'s widths (``plain44``'s cost), 44 layers."""
    return _entry("tat_slim", 44, pretrained, kwargs)


@register_model
def tat_slim56(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim56``'s widths (``plain56``'s cost), 56 layers."""
    return _entry("tat_slim", 56, pretrained, kwargs)


@register_model
def tat_slim110(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim110``'s widths (``plain110``'s cost), 110 layers."""
    return _entry("tat_slim", 110, pretrained, kwargs)


@register_model
def tat_slim200(pretrained: bool = False, **kwargs: Any) -> CifarNet:
    """Skip-free CReLU net with TAT's mirror ratio at ``ll_slim200``'s widths (``plain200``'s cost), 200 layers."""
    return _entry("tat_slim", 200, pretrained, kwargs)
