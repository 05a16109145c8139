"""``make_looks_linear``: turn a skip-free ReLU network into its CReLU + looks-linear counterpart.

The network is traced with ``torch.export`` (an ATen-level ``torch.fx`` graph whose nodes
carry the module they came from, and which follows shape-dependent Python control flow on
the example input, as in timm's VGG head). The graph is checked, then the *modules* of a
copy are rewritten, so the result keeps its class and methods (``forward_features``,
``reset_classifier``...):

- every ``nn.ReLU`` becomes a :class:`~timm_ll.layers.CReLU`;
- the conv/linear layer that consumes it (through dropout, pooling, flattening) gets twice
  the input channels and the mirrored init ``[W0, -W0]``; the other conv/linear layers (the
  first one, say) get the plain orthogonal init; norm layers are reset;
- ``nn.MaxPool`` layers become ``nn.AvgPool`` of the same geometry (``keep_maxpool=True``
  keeps them, and then the net is not linear at init, so the check is skipped);
- the copy is verified affine at init on ``example_input`` (float64, eval mode).

Whatever breaks the pattern raises :class:`LooksLinearError` naming the graph node, its
module and why, and the input model is never modified.
"""

from __future__ import annotations

import copy
import operator

import torch
from torch import fx, nn

from timm_ll.init import init_looks_linear_
from timm_ll.layers import CReLU, crelu_conv_type

__all__ = ["make_looks_linear", "LooksLinearError", "affine_error"]

aten = torch.ops.aten
_RELU = {aten.relu.default, aten.relu_.default}
_OTHER_ACTIVATIONS = {
    aten.gelu.default,
    aten.silu.default,
    aten.silu_.default,
    aten.sigmoid.default,
    aten.tanh.default,
    aten.hardswish.default,
    aten.hardswish_.default,
    aten.hardsigmoid.default,
    aten.leaky_relu.default,
    aten.leaky_relu_.default,
    aten.elu.default,
    aten.elu_.default,
    aten.relu6.default,
    aten.hardtanh.default,
    aten.hardtanh_.default,
    aten.mish.default,
    aten.softplus.default,
    aten.prelu.default,
    aten.selu.default,
    aten.celu.default,
    aten.glu.default,
}
_MERGES = {
    aten.add.Tensor,
    aten.add_.Tensor,
    aten.sub.Tensor,
    aten.mul.Tensor,
    aten.cat.default,
    aten.stack.default,
    operator.add,
    operator.mul,
}
_CONSUMERS = {
    aten.conv1d.default,
    aten.conv2d.default,
    aten.conv3d.default,
    aten.convolution.default,
    aten.linear.default,
}
# ops that may sit between a ReLU and the layer consuming it: linear per channel, so the CReLU halves stay apart
_TRANSPARENT = {
    aten.dropout.default,
    aten.clone.default,
    aten.contiguous.default,
    aten.avg_pool1d.default,
    aten.avg_pool2d.default,
    aten.avg_pool3d.default,
    aten.adaptive_avg_pool1d.default,
    aten.adaptive_avg_pool2d.default,
    aten.adaptive_avg_pool3d.default,
    aten.max_pool1d.default,
    aten.max_pool2d.default,
    aten.max_pool3d.default,
    aten.max_pool2d_with_indices.default,
    aten.flatten.using_ints,
    aten.view.default,
    aten.reshape.default,
    aten.mean.dim,
    aten.alias.default,
    aten.detach.default,
    operator.getitem,
}
_FLATTENING = {aten.flatten.using_ints, aten.view.default, aten.reshape.default, aten.mean.dim}


class LooksLinearError(ValueError):
    """The network does not fit the looks-linear pattern; the message names the node, the module and why."""


def _where(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return f"node {node.name!r} (outside any submodule)"
    path, kind = list(stack.values())[-1]
    return f"node {node.name!r} in module {path!r} ({str(kind).rsplit('.', 1)[-1].rstrip(chr(39) + '>')})"


def _module_path(node: fx.Node) -> str | None:
    stack = node.meta.get("nn_module_stack") or {}
    return list(stack.values())[-1][0] if stack else None


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    found = []
    for arg in node.args:
        items = arg if isinstance(arg, (list, tuple)) else [arg]
        found += [a for a in items if isinstance(a, fx.Node) and isinstance(a.meta.get("val"), torch.Tensor)]
    return found


def _follow_to_consumer(relu: fx.Node) -> tuple[fx.Node, bool]:
    """From a ReLU node through transparent ops to the conv/linear that consumes it; (consumer, flattened)."""
    node, flattened = relu, False
    while True:
        users = [
            u for u in node.users if not (u.op == "call_function" and u.target is operator.getitem and u.args[1] != 0)
        ]
        if len(users) != 1:
            where = ", ".join(_where(u) for u in users) or "the output"
            raise LooksLinearError(
                f"the ReLU at {_where(relu)} feeds {len(users)} consumers ({where}); a looks-linear "
                "ReLU must feed exactly one conv/linear layer"
            )
        (user,) = users
        if user.op == "output":
            raise LooksLinearError(
                f"the ReLU at {_where(relu)} is the network's output; CReLU would double the "
                "output size. End the network with a conv/linear layer"
            )
        if user.target in _CONSUMERS:
            if user.args[0] is not node:
                raise LooksLinearError(f"{_where(user)} takes the ReLU output of {_where(relu)} as a weight")
            return user, flattened
        if user.target in _MERGES:
            raise LooksLinearError(
                f"{_where(user)} combines the ReLU output of {_where(relu)} with another tensor "
                "(a residual add or concatenation); looks-linear needs a skip-free chain"
            )
        if user.target not in _TRANSPARENT:
            raise LooksLinearError(
                f"{_where(user)} ({user.target}) sits between the ReLU at {_where(relu)} and the "
                "next conv/linear layer; only dropout, pooling and flattening may"
            )
        flattened |= user.target in _FLATTENING
        node = user


def _check_graph(graph: fx.Graph) -> list[tuple[fx.Node, fx.Node, bool]]:
    calls = [node for node in graph.nodes if node.op == "call_function"]
    for node in calls:  # whole-graph refusals first, so the error names the root cause
        if node.target in _OTHER_ACTIVATIONS:
            raise LooksLinearError(
                f"{_where(node)} applies {node.target}, not a ReLU; looks-linear init cancels only "
                "ReLUs (as CReLU halves)"
            )
        if node.target in _MERGES and len(_tensor_args(node)) >= 2:
            kind = "residual add" if "add" in str(node.target) else "merge of two tensors"
            raise LooksLinearError(f"{_where(node)} is a {kind}; make_looks_linear converts skip-free networks only")
    pairs = []
    for node in calls:
        if node.target in _RELU:
            consumer, flattened = _follow_to_consumer(node)
            pairs.append((node, consumer, flattened))
    if not pairs:
        raise LooksLinearError("the network has no ReLU feeding a conv/linear layer: nothing to convert")
    return pairs


def _submodule(
    model: nn.Module, node: fx.Node, expected: type[nn.Module] | tuple[type[nn.Module], ...], what: str
) -> tuple[str, nn.Module]:
    path = _module_path(node)
    try:
        module = model.get_submodule(path) if path else None
    except AttributeError:
        module = None
    if not isinstance(module, expected):
        raise LooksLinearError(
            f"{_where(node)} is a functional {what}; make_looks_linear rewrites modules, so use an "
            f"nn.{expected.__name__ if isinstance(expected, type) else 'Conv/Linear'} module there"
        )
    return path, module


def _doubled(layer: nn.Module) -> nn.Module:
    """A copy of ``layer`` with twice the input channels/features (weights re-initialized afterwards)."""
    factory = {"device": layer.weight.device, "dtype": layer.weight.dtype}
    if isinstance(layer, nn.Linear):
        return nn.Linear(2 * layer.in_features, layer.out_features, bias=layer.bias is not None, **factory)
    if layer.groups != 1:
        raise LooksLinearError(f"conv {layer} has groups={layer.groups}; looks-linear needs groups=1 consumers")
    # a CReLU-consuming conv keeps the CReLU's input for backward, not its 2x output (see timm_ll.layers)
    return crelu_conv_type(type(layer))(
        2 * layer.in_channels,
        layer.out_channels,
        layer.kernel_size,
        stride=layer.stride,
        padding=layer.padding,
        dilation=layer.dilation,
        bias=layer.bias is not None,
        padding_mode=layer.padding_mode,
        **factory,
    )


_AVG_FOR_MAX = {nn.MaxPool1d: nn.AvgPool1d, nn.MaxPool2d: nn.AvgPool2d, nn.MaxPool3d: nn.AvgPool3d}


def affine_error(model: nn.Module, example_input: torch.Tensor) -> float:
    """Relative error of ``f(ax+by) = a f(x) + b f(y) + (1-a-b) f(0)`` in float64, eval mode, on a copy."""
    probe = copy.deepcopy(model).double().eval()
    x = example_input.detach().double()
    y = torch.randn_like(x, generator=torch.Generator(device=x.device).manual_seed(0))
    a, b = 0.75, -1.5
    with torch.no_grad():
        lhs = probe(a * x + b * y)
        rhs = a * probe(x) + b * probe(y) + (1 - a - b) * probe(torch.zeros_like(x))
    return ((lhs - rhs).norm() / lhs.norm().clamp_min(1e-300)).item()


def make_looks_linear(
    model: nn.Module, example_input: torch.Tensor, *, keep_maxpool: bool = False, tolerance: float = 1e-9
) -> nn.Module:
    """Return the CReLU + looks-linear counterpart of a skip-free ReLU network (see the module docstring).

    Args:
        model: a skip-free network whose nonlinearities are ``nn.ReLU`` modules, each feeding
            one ``nn.Conv*d``/``nn.Linear`` (through dropout, pooling or flattening at most):
            an ``nn.Sequential``, timm's ``vgg11``/``vgg16``, a user's plain convnet.
        example_input: one input batch, used to trace the network and to verify the result.
        keep_maxpool: keep max-pooling layers (the result is then not linear at init and is
            not verified).
        tolerance: largest accepted relative error of the affine check.

    Returns:
        A converted deep copy of ``model`` (same class); ``model`` itself is unchanged.

    Raises:
        LooksLinearError: the network breaks the pattern (residual add, other activation,
            a layer consuming two activations, functional ReLU...) or the result is not affine.
    """
    was_training = model.training
    try:
        exported = torch.export.export(model.eval(), (example_input,), strict=False)
    finally:
        model.train(was_training)
    pairs = _check_graph(exported.graph)
    converted = copy.deepcopy(model)
    consumers: set[int] = set()
    for relu_node, consumer_node, flattened in pairs:
        relu_path, _ = _submodule(converted, relu_node, nn.ReLU, "relu")
        consumer_path, consumer = _submodule(
            converted, consumer_node, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear), "conv/linear"
        )
        relu_out = relu_node.meta["val"]
        linear_on_last_dim = isinstance(consumer, nn.Linear) and relu_out.dim() > 2 and not flattened
        converted.set_submodule(relu_path, CReLU(dim=-1 if linear_on_last_dim else 1))
        if id(consumer) in consumers:
            continue
        replacement = _doubled(consumer)
        converted.set_submodule(consumer_path, replacement)
        consumers.add(id(replacement))
    init_looks_linear_(converted, mirrored=lambda layer: id(layer) in consumers)
    for name, module in list(converted.named_modules()):
        if type(module) in _AVG_FOR_MAX and not keep_maxpool:
            if module.dilation not in (1, (1,), (1, 1), (1, 1, 1)) or module.return_indices:
                raise LooksLinearError(f"max-pool {name!r} uses dilation or return_indices; no average pool matches it")
            converted.set_submodule(
                name,
                _AVG_FOR_MAX[type(module)](
                    module.kernel_size,
                    module.stride,
                    module.padding,
                    ceil_mode=module.ceil_mode,
                    count_include_pad=False,
                ),
            )
    if not keep_maxpool:
        error = affine_error(converted, example_input)
        if not error < tolerance:
            raise LooksLinearError(
                f"the converted network is not affine at init (relative error {error:.2e} > "
                f"{tolerance:.0e}): it holds a nonlinearity make_looks_linear does not know"
            )
    return converted
