"""Which part of a network's output is measured: every output type, and never a scalar loss.

A network can return a tensor, a tuple or list (an LSTM's ``(output, state)``), a mapping or a
Hugging Face ``ModelOutput`` (an ordered mapping whose first entry is the loss when ``labels``
are passed), or containers nested in each other. The measured output is the ``logits`` entry
where there is one, else the first tensor, in order and depth first, that has one row per
probe point (or ``n * T`` rows, a language model's targets flattened with the batch). A scalar
is never taken.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import torch

__all__ = ["per_sample_output", "first_tensor", "with_first_tensor", "describe_output"]

# a mapping's entry that is the prediction, preferred over any other per-sample tensor
_PREFERRED_KEYS = ("logits",)


def first_tensor(value: object) -> torch.Tensor | None:
    """The first tensor directly inside a tuple, list or mapping (None if there is none)."""
    items = value.values() if isinstance(value, Mapping) else value if isinstance(value, (tuple, list)) else []
    return next((item for item in items if isinstance(item, torch.Tensor)), None)


def with_first_tensor(value: object, tensor: torch.Tensor) -> object:
    """``value`` (a tuple or list) with its first tensor replaced; None for anything else."""
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


def _tensors(value: object, path: str = "output") -> Iterator[tuple[str, torch.Tensor]]:
    """Every tensor in ``value`` with its path (``output['logits']``, ``output[0]``), in order, depth first."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _tensors(item, f"{path}[{key!r}]")
    elif isinstance(value, (tuple, list)):
        for index, item in enumerate(value):
            yield from _tensors(item, f"{path}[{index}]")


def _per_sample(tensor: torch.Tensor, n: int) -> torch.Tensor | None:
    if tensor.dim() == 0 or not tensor.is_floating_point():
        return None  # a scalar (a loss) or integer ids: never the output
    if tensor.shape[0] == n:
        return tensor
    if tensor.shape[0] % n == 0 and tensor.shape[0] > n:
        return tensor.reshape(n, -1)  # (n * T, ...) rows: regrouped per sample
    return None


def describe_output(output: object) -> str:
    """What the network returned, for an error message: its type and every tensor's path and shape."""
    found = ", ".join(f"{path} {tuple(t.shape)}" for path, t in _tensors(output)) or "no tensor"
    return f"{type(output).__name__} holding {found}"


def per_sample_output(output: object, n: int) -> torch.Tensor | None:
    """The measured part of a network's output for a probe of ``n`` points, as ``(n, ...)``; None if none.

    A mapping's ``logits`` comes first; else the first floating tensor with ``n`` rows (or a multiple
    of ``n``, regrouped as ``(n, -1)``), searched in order through nested tuples, lists and mappings.
    """
    if isinstance(output, Mapping):
        for key in _PREFERRED_KEYS:
            if isinstance(output.get(key), torch.Tensor):
                found = _per_sample(output[key], n)
                if found is not None:
                    return found
    return next((t for t in (_per_sample(t, n) for _, t in _tensors(output)) if t is not None), None)
