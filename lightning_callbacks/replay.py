"""Record how a network is called in training, and replay that call along a probe.

The ShatteringMonitor probes one input of the network (images, or the embeddings of token
ids) along a line, but many networks take more than that: masks, targets, extra tensors,
keyword arguments. :class:`CallRecorder` watches the network's first training call (a forward
pre-hook) and keeps it as a :class:`RecordedCall`: which argument is the probed input, the
first two samples' values of it for each line, and every other argument with a batch
dimension cut to its first sample. :meth:`RecordedCall.forward_fn` then calls the network on a
probe of any size with those other arguments repeated along it, and, for integer inputs
(token ids), injects each probe point as the output of the embedding that consumes them.

A recorded call holds only tensors, strings, numbers and plain containers, so it travels in a
checkpoint (resume replays the same call) and through a DDP broadcast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch
from torch import nn

from lightning_callbacks.functional import measurement_context

__all__ = ["CallRecorder", "RecordedCall", "ForwardFn", "INPUT_NAMES", "call_of", "embeddings_run"]

ForwardFn = Callable[[nn.Module, torch.Tensor], Any]
# keyword arguments that name a network's input, most specific first
INPUT_NAMES = ("input_ids", "pixel_values", "images", "image", "inputs", "input", "x", "src", "input_values")


def _per_sample(value: Any, batch_size: int) -> Any:
    """A tensor with the batch dimension -> ``{"sample": value[:1]}``; containers recursively; the rest as is."""
    if isinstance(value, torch.Tensor):
        if value.dim() > 0 and value.shape[0] == batch_size:
            return {"sample": value[:1].detach().cpu().clone()}
        return {"tensor": value.detach().cpu().clone()}
    if isinstance(value, (list, tuple)):
        return {"sequence": [_per_sample(v, batch_size) for v in value], "tuple": isinstance(value, tuple)}
    if isinstance(value, Mapping):
        return {"mapping": {k: _per_sample(v, batch_size) for k, v in value.items()}}
    return {"value": value}


def _along(entry: Any, n: int, device: torch.device) -> Any:
    """The value of a recorded argument for a probe of ``n`` points: per-sample tensors repeated ``n`` times."""
    if "sample" in entry:
        sample = entry["sample"].to(device)
        return sample.expand(n, *sample.shape[1:]).contiguous()
    if "tensor" in entry:
        return entry["tensor"].to(device)
    if "sequence" in entry:
        values = [_along(v, n, device) for v in entry["sequence"]]
        return tuple(values) if entry["tuple"] else values
    if "mapping" in entry:
        return {k: _along(v, n, device) for k, v in entry["mapping"].items()}
    return entry["value"]


@dataclass
class RecordedCall:
    """A network's training call, kept to be replayed along probes (see the module docstring).

    Attributes:
        slot: where the probed input goes: ``("arg", index)`` or ``("kwarg", name)``.
        args, kwargs: the other arguments, per-sample tensors cut to their first sample.
        inputs: the probed input's samples the lines run between (detached, on the CPU): the first
            call's, and those of later calls where the first had too few.
        embedding: for integer inputs, the name of the ``nn.Embedding`` whose output is probed.
        embeddings_seen: the ``nn.Embedding`` modules the first call ran, in order.
        batch_size: the first call's batch size.
    """

    slot: tuple[str, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    inputs: torch.Tensor
    embedding: str | None = None
    embeddings_seen: list[str] = field(default_factory=list)
    batch_size: int | None = None

    def state(self) -> dict[str, Any]:
        """Plain containers and tensors (checkpoint- and broadcast-safe)."""
        return dict(
            slot=list(self.slot),
            args=self.args,
            kwargs=self.kwargs,
            inputs=self.inputs,
            embedding=self.embedding,
            embeddings_seen=self.embeddings_seen,
            batch_size=self.batch_size,
        )

    @classmethod
    def from_state(cls, state: Mapping[str, Any]) -> RecordedCall:
        return cls(
            slot=tuple(state["slot"]),
            args=list(state["args"]),
            kwargs=dict(state["kwargs"]),
            inputs=state["inputs"],
            embedding=state.get("embedding"),
            embeddings_seen=list(state.get("embeddings_seen") or []),
            batch_size=state.get("batch_size"),
        )

    def with_samples_of(self, later: RecordedCall, most: int) -> RecordedCall:
        """This call with the probed samples of a ``later`` call added (at most ``most`` in all). Token
        sequences of different lengths are cropped to the shorter, with this call's arguments of that length;
        a floating input of another shape adds nothing."""
        ours, theirs = self.inputs, later.inputs
        if ours.shape[1:] != theirs.shape[1:]:
            if not self.discrete or ours.dim() != theirs.dim() or ours.shape[2:] != theirs.shape[2:]:
                return self
            length = min(ours.shape[1], theirs.shape[1])
            cropped = self.cropped(length)
            ours, theirs = cropped.inputs, theirs[:, :length]
            return replace(cropped, inputs=torch.cat([ours, theirs])[:most])
        return replace(self, inputs=torch.cat([ours, theirs])[:most])

    def cropped(self, length: int) -> RecordedCall:
        """This call with its token sequences cropped to ``length``: the probed input, and every recorded
        per-sample argument of the same length (an attention mask, labels)."""
        full = self.inputs.shape[1]

        def crop(entry: Any) -> Any:
            if "sample" in entry and entry["sample"].dim() > 1 and entry["sample"].shape[1] == full:
                return {"sample": entry["sample"][:, :length]}
            if "sequence" in entry:
                return {**entry, "sequence": [crop(v) for v in entry["sequence"]]}
            if "mapping" in entry:
                return {"mapping": {k: crop(v) for k, v in entry["mapping"].items()}}
            return entry

        return replace(
            self,
            inputs=self.inputs[:, :length],
            args=[crop(a) for a in self.args],
            kwargs={k: crop(v) for k, v in self.kwargs.items()},
        )

    def token_mask(self) -> torch.Tensor | None:
        """The first sample's attention mask ``(T,)``, where the call passed one by keyword (``attention_mask``,
        or any per-sample keyword whose name holds "mask"): the tokens the lines' token readings count."""
        for name, entry in self.kwargs.items():
            if "mask" in name and isinstance(entry, dict) and "sample" in entry and entry["sample"].dim() == 2:
                return entry["sample"][0]
        return None

    @property
    def discrete(self) -> bool:
        """Whether the probed input is integer (token ids): the probe then lives in embedding space."""
        return not (self.inputs.is_floating_point() or self.inputs.is_complex())

    def embed(self, network: nn.Module, samples: torch.Tensor) -> torch.Tensor:
        """The embedding outputs of the given token-id samples, with the network's current weights: the output
        of the embedding's first call in a run of the whole network on them (so that a sharded network
        gathers its weights as it does in training). The caller makes the run invisible, as for
        :func:`embeddings_run`."""
        captured: list[torch.Tensor] = []

        def keep(_module: nn.Module, _args: Any, output: torch.Tensor) -> None:
            if not captured:
                captured.append(output.detach())

        handle = network.get_submodule(self.embedding).register_forward_hook(keep)
        try:
            self.run(network, samples)
        finally:
            handle.remove()
        return captured[0]

    def run(self, network: nn.Module, samples: torch.Tensor) -> Any:
        """The recorded call on ``samples`` (in the probed slot; the other arguments repeated), without a graph."""
        weight = next(network.parameters(), None)
        device = weight.device if weight is not None else torch.device("cpu")
        n = samples.shape[0]
        args = [_along(a, n, device) for a in self.args]
        kwargs = {k: _along(v, n, device) for k, v in self.kwargs.items()}
        kind, where = self.slot
        if kind == "arg":
            args.insert(where, samples.to(device))
        else:
            kwargs[where] = samples.to(device)
        with torch.no_grad():
            return network(*args, **kwargs)

    def forward_fn(self, network: nn.Module) -> ForwardFn:
        """``forward_fn(network, probe)``: the recorded call with the probe in the probed slot.

        For integer inputs the probe is in embedding space: the slot gets the first sample's token
        ids, repeated, and the probe replaces the output of the embedding's first call of the forward.
        """
        template = self.inputs[:1]
        embedding = network.get_submodule(self.embedding) if self.discrete else None

        def forward(module: nn.Module, probe: torch.Tensor) -> Any:
            n, device = probe.shape[0], probe.device
            args = [_along(a, n, device) for a in self.args]
            kwargs = {k: _along(v, n, device) for k, v in self.kwargs.items()}
            value = template.to(device).expand(n, *template.shape[1:]).contiguous() if self.discrete else probe
            kind, where = self.slot
            if kind == "arg":
                args.insert(where, value)
            else:
                kwargs[where] = value
            if embedding is None:
                return module(*args, **kwargs)
            calls = [0]

            def inject(_module: nn.Module, _args: Any, output: torch.Tensor) -> torch.Tensor | None:
                calls[0] += 1
                if calls[0] > 1:  # a later call embeds something else (a decoder's targets, say)
                    return None
                if output.shape[1:] != probe.shape[1:]:
                    raise ValueError(
                        f"embedding {self.embedding!r} returns shape {tuple(output.shape)} but the probe has points "
                        f"of shape {tuple(probe.shape[1:])}: pass embedding=<the module embedding the probed input>"
                    )
                return probe.to(output.dtype)

            # prepended: the injected tensor is what every other hook (the monitor's captures) sees
            handle = embedding.register_forward_hook(inject, prepend=True)
            try:
                return module(*args, **kwargs)
            finally:
                handle.remove()

        return forward


class CallRecorder:
    """Hooks that watch a network's calls: the first is recorded (its arguments, and the first
    ``nn.Embedding`` that runs), and the probed input of every later call is added to it until
    ``samples_wanted`` samples are in hand (micro-batches of gradient accumulation, batches of one).

    Token sequences of different lengths are cropped to the shortest, together with the recorded
    arguments of that length (masks, labels); a floating input of another shape is left out.

    Args:
        network: the module whose calls are watched.
        embedding: the name of the embedding module to probe for integer inputs (None: the first
            ``nn.Embedding`` that runs).
        samples_wanted: how many samples of the probed input to collect at most.
    """

    def __init__(self, network: nn.Module, embedding: str | None = None, samples_wanted: int = 2) -> None:
        self.network = network
        self.embedding = embedding
        self.samples_wanted = samples_wanted
        self.call: RecordedCall | None = None
        self.calls = 0
        self._embeddings: list[str] = []
        self._handles = [network.register_forward_pre_hook(self._record, with_kwargs=True)]
        for name, module in network.named_modules():
            if isinstance(module, nn.Embedding):
                self._handles.append(module.register_forward_hook(self._embedding_ran(name)))

    def _embedding_ran(self, name: str) -> Callable[..., None]:
        def hook(*_: Any) -> None:
            if self.calls == 1 and name not in self._embeddings:  # the first call's embeddings, in order
                self._embeddings.append(name)

        return hook

    def _record(self, _module: nn.Module, args: tuple, kwargs: dict) -> None:
        self.calls += 1
        if self.call is None:
            self.call = call_of(args, kwargs, keep=self.samples_wanted)
        elif self.call.inputs.shape[0] < self.samples_wanted:
            self.call = self.call.with_samples_of(call_of(args, kwargs, keep=self.samples_wanted), self.samples_wanted)

    def remove(self) -> RecordedCall | None:
        """Remove every hook and return the recorded call (None if the network never ran), its embedding
        resolved."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        if self.call is not None:
            self.call.embeddings_seen = list(self._embeddings)
            self.call.embedding = self.embedding or (self._embeddings[0] if self._embeddings else None)
        return self.call


def call_of(args: tuple, kwargs: dict, keep: int | None = None) -> RecordedCall:
    """The :class:`RecordedCall` of a network called with ``args`` and ``kwargs`` (its embedding not yet known),
    keeping the first ``keep`` samples of the probed input (all without ``keep``)."""
    slot = _probed_slot(args, kwargs)
    inputs = args[slot[1]] if slot[0] == "arg" else kwargs[slot[1]]
    batch_size = inputs.shape[0]
    rest = [a for i, a in enumerate(args) if (slot[0], i) != ("arg", slot[1])]
    others = {k: v for k, v in kwargs.items() if (slot[0], k) != ("kwarg", slot[1])}
    return RecordedCall(
        slot=slot,
        args=[_per_sample(a, batch_size) for a in rest],
        kwargs={k: _per_sample(v, batch_size) for k, v in others.items()},
        inputs=inputs[:keep].detach().cpu().clone(),
        batch_size=int(batch_size),
    )


def call_from_arguments(
    network: nn.Module, args: tuple, kwargs: dict, keep: int, embedding: str | None = None
) -> RecordedCall:
    """The call of the network with ``args`` and ``kwargs`` (the measurer's direct path), keeping ``keep``
    samples. For token ids, which embedding consumes them shows only in a run: one sample, measured invisibly;
    ``embedding`` names the one to probe instead of the first seen."""
    call = call_of(args, kwargs, keep=keep)
    if call.discrete:
        with measurement_context(network, "eval"):
            call.embeddings_seen = embeddings_run(network, call)
        call.embedding = embedding or (call.embeddings_seen[0] if call.embeddings_seen else None)
    return call


def embeddings_run(network: nn.Module, call: RecordedCall) -> list[str]:
    """The ``nn.Embedding`` modules that run, in order, when ``network`` makes ``call`` on its first sample.

    The caller makes the run invisible (modes, buffers, RNG: the measurement's own context); here it runs
    without a graph.
    """
    seen: list[str] = []
    handles = [
        module.register_forward_hook(lambda *_, name=name: seen.append(name) if name not in seen else None)
        for name, module in network.named_modules()
        if isinstance(module, nn.Embedding)
    ]
    try:
        call.run(network, call.inputs[:1])
    finally:
        for handle in handles:
            handle.remove()
    return seen


def _probed_slot(args: tuple, kwargs: dict) -> tuple[str, Any]:
    """The first positional tensor, else the first input-named keyword tensor, else the first keyword tensor."""
    for index, value in enumerate(args):
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return ("arg", index)
    for name in INPUT_NAMES:
        if isinstance(kwargs.get(name), torch.Tensor):
            return ("kwarg", name)
    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor) and value.dim() > 0:
            return ("kwarg", name)
    raise ValueError(
        "ShatteringMonitor found no tensor argument in the network's call: pass forward_fn=<callable(module, probe)>"
    )


def check_embedding(network: nn.Module, call: RecordedCall) -> None:
    """A token-id call needs an embedding to probe: refuse one without, naming what ran."""
    found = ", ".join(call.embeddings_seen) or "none"
    if call.embedding is None:
        raise TypeError(
            f"the probed input holds {call.inputs.dtype} values (token ids?) but no nn.Embedding ran in the "
            "network's forward; pass embedding=<the module that embeds them> or forward_fn=<callable(module, probe)>"
        )
    try:
        network.get_submodule(call.embedding)
    except AttributeError:
        raise ValueError(
            f"embedding={call.embedding!r}: no such module in {type(network).__name__}; the nn.Embedding modules "
            f"that ran: {found}"
        ) from None
