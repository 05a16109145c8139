"""Which blocks of a network make its depth profile (``blocks="auto"``), and finding them by name."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

__all__ = ["auto_blocks", "resolve_blocks", "unwrap_compiled"]


def unwrap_compiled(model: nn.Module) -> nn.Module:
    """The module that computes: the original behind ``torch.compile`` (its ``_orig_mod``) and behind a
    ``DistributedDataParallel`` wrapper (its ``module``, which needs no gradient sync for a measurement),
    else ``model`` itself."""
    model = getattr(model, "_orig_mod", model)
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = getattr(model.module, "_orig_mod", model.module)
    return model


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


def auto_blocks(model: nn.Module) -> list[str]:
    """The blocks whose outputs make a per-depth profile of ``model`` (``blocks="auto"``).

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


def resolve_blocks(model: nn.Module, names: Sequence[str]) -> dict[str, nn.Module]:
    """The submodules of ``model`` named ``names`` (``get_submodule`` names); a ``ValueError`` names any unknown one."""
    modules = {}
    for name in names:
        try:
            modules[name] = model.get_submodule(name)
        except AttributeError as error:
            raise ValueError(f"block {name!r} is not a submodule of {type(model).__name__}: {error}") from None
    return modules
