"""The probe lines of a monitored run: between which samples, and how they become probes.

A run's lines are fixed once, from the samples of the first training calls (rank 0's, on every process),
or given as one fixed probe; :class:`ProbeLines` keeps them (and saves them in the measurer's state) and
turns them into the probes a measurement runs: points on the segment between each line's two samples, or
for token ids between the two samples' embedding outputs, with the embedding's current weights.
:func:`line_gradients` runs the gradient engine along them, all lines in one chunked pass where they are
independent (eval-mode BN), and splits the result back into lines.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.distributed import broadcast_from_rank_zero, process_group, rank_share
from lightning_callbacks.replay import RecordedCall

__all__ = ["ProbeLines", "line_gradients", "share_gradients", "line_pairs", "second_endpoint", "MIN_CHUNK"]


# the fewest probe points per eval-mode forward pass by default: a batch of one must not make the probe run
# point by point (64 passes of one sample cost several times 8 passes of 8), and 8 stays a small memory budget
MIN_CHUNK = 8


def line_pairs(num_samples: int, num_lines: int) -> list[tuple[int, int]]:
    """Distinct sample pairs for ``num_lines`` probe lines: disjoint ``(0, 1), (2, 3), ...`` where the batch
    allows, else neighbouring ``(0, 1), (1, 2), ...``; fewer when the batch has fewer distinct pairs."""
    if num_samples >= 2 * num_lines:
        return [(2 * i, 2 * i + 1) for i in range(num_lines)]
    return [(i, i + 1) for i in range(min(num_lines, num_samples - 1))]


def second_endpoint(sample: torch.Tensor) -> torch.Tensor:
    """The other end of a line that has a single sample, at a typical distance between samples (never an
    epsilon away, which would measure a point, not a line):

    - token ids ``(T, ...)``: the same tokens, the second half first (``roll`` by ``T // 2``): another
      stretch of text at every position, with the same length and mask;
    - anything else (an image ``(C, H, W)``, features ``(D,)``): mirrored along its last axis (an image
      flipped left to right).
    """
    if sample.dim() == 0:
        raise ValueError("a line needs samples with at least one axis, got a scalar")
    if not (sample.is_floating_point() or sample.is_complex()):
        return sample.roll(sample.shape[0] // 2, dims=0)
    return sample.flip(-1)


class ProbeLines:
    """The lines of a run: ``fixed`` (one probe ``(n, ...)`` given by the user) or ``endpoints`` ``(lines, 2, ...)``,
    each line's two samples, fixed by :meth:`fix`."""

    def __init__(self, fixed: torch.Tensor | None = None) -> None:
        self.fixed = None if fixed is None else fixed.detach().clone()
        self.endpoints: torch.Tensor | None = None

    @property
    def ready(self) -> bool:
        """Whether there is a probe to measure along."""
        return self.fixed is not None or self.endpoints is not None

    def fix(
        self,
        inputs: torch.Tensor,
        num_lines: int,
        warn: Callable[[str], None],
        broadcast: bool = True,
        embedded: bool = False,
    ) -> None:
        """Fix the lines between pairs of samples of ``inputs`` (rank 0's, on every process). With a single
        sample the line runs to :func:`second_endpoint` of it (``warn`` says so). Token ids (``embedded``: the
        lines run between their embedding outputs) are the only inputs that need not be floating point."""
        if not (inputs.is_floating_point() or embedded):
            raise TypeError(
                f"the lines run between inputs, but the batch holds {inputs.dtype} inputs and forward_fn is given: "
                "pass probe=<(n, ...) inputs ordered along a path>, or leave forward_fn out to probe the "
                "embedding's output"
            )
        if inputs.shape[0] < 2:
            inputs = torch.stack([inputs[0], second_endpoint(inputs[0])])
            how = "the same tokens, the second half first" if not inputs.is_floating_point() else "it mirrored"
            warn(
                "the network saw a single sample before the first optimizer step: the probe line runs from it to "
                f"{how} (a typical distance between samples), fixed for the run; measuring 1 of the {num_lines} "
                "lines (more samples per step, or micro-batches before the step, give more lines)"
            )
        pairs = line_pairs(inputs.shape[0], num_lines)
        if len(pairs) < num_lines and inputs.shape[0] >= 2 and len(pairs) > 1:
            warn(
                f"the first training calls had {inputs.shape[0]} samples, enough for {len(pairs)} of the "
                f"{num_lines} probe lines; measuring {len(pairs)}"
            )
        endpoints = torch.stack([inputs[[a, b]] for a, b in pairs]).detach().cpu()
        self.endpoints = broadcast_from_rank_zero({"ends": endpoints})["ends"] if broadcast else endpoints

    def probes(self, num_points: int, model: nn.Module, call: RecordedCall | None, embed: bool) -> list[torch.Tensor]:
        """The probes: the fixed one, or ``num_points`` on each line. With ``embed`` (token ids, probed at the
        embedding), each line runs between the two samples' embedding outputs (cropped to the shorter)."""
        if self.fixed is not None:
            return [self.fixed]
        if self.endpoints is None:
            raise RuntimeError("the probe lines are built from the first call; no call has been seen yet")
        if embed and call is not None:
            lines, network = [], F.unwrap_compiled(model)
            for ends in self.endpoints:
                with F.measurement_context(network, "eval"):
                    embedded = call.embed(network, ends).double().cpu()
                length = min(embedded[0].shape[0], embedded[1].shape[0])
                lines.append(F.line_probe(embedded[0][:length], embedded[1][:length], num_points))
            return lines
        return [F.line_probe(ends[0].double(), ends[1].double(), num_points) for ends in self.endpoints]

    def state(self) -> dict[str, Any]:
        return {"endpoints": self.endpoints, "fixed_probe": self.fixed}

    def load(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (or an older monitor's checkpoint, whose one line was ``(2, ...)``)."""
        self.endpoints = state.get("endpoints")
        if self.endpoints is not None and self.endpoints.dim() > 0 and state.get("history") is None:
            self.endpoints = self.endpoints.unsqueeze(0)
        if state.get("fixed_probe") is not None and self.fixed is None:
            self.fixed = state["fixed_probe"]


def line_gradients(
    network: nn.Module,
    probes: list[torch.Tensor],
    readout: F.Readout,
    bn_mode: F.BNMode,
    blocks: list[str],
    chunk: int,
    forward_fn: Callable[[nn.Module, torch.Tensor], Any] | None,
) -> list[F.InputGradients]:
    """Input and block gradients along each probe, with the block outputs and the network output at each probe's
    two endpoints (:func:`~lightning_callbacks.functional.input_gradients`)."""

    def gradients(probe: torch.Tensor, chunk_size: int | None, keep: list[int]) -> F.InputGradients:
        return F.input_gradients(
            network, probe, readout=readout, bn_mode=bn_mode, blocks=blocks,
            chunk_size=chunk_size, forward_fn=forward_fn, keep=keep,
        )  # fmt: skip

    if bn_mode == "batch":  # each line normalizes with its own statistics: one batch per line
        return [gradients(probe, None, [0, probe.shape[0] - 1]) for probe in probes]
    # eval mode: lines are independent; run them together, in chunks of at most a training batch
    sizes = [p.shape[0] for p in probes]
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    ends = [index for start, size in zip(starts, sizes) for index in (start, start + size - 1)]
    whole = gradients(torch.cat(probes), chunk, ends)

    def split(tensor: torch.Tensor | None, parts: list[int]) -> list[Any]:
        return list(tensor.split(parts)) if tensor is not None else [None] * len(parts)

    inputs, outputs = split(whole.input, sizes), split(whole.output, sizes)
    finals = split(whole.final_activations, [2] * len(probes))
    by_block = {name: g.split(sizes) for name, g in whole.blocks.items()}
    activations = {name: a.split(2) for name, a in whole.activations.items()}
    return [
        F.InputGradients(
            input=inputs[i],
            blocks={name: parts[i] for name, parts in by_block.items()},
            output=outputs[i],
            unreached=whole.unreached,
            activations={name: parts[i] for name, parts in activations.items()},
            final_activations=finals[i],
        )
        for i in range(len(probes))
    ]


def share_gradients(network: nn.Module, probes: list[torch.Tensor], **gradient_options: Any) -> list[F.InputGradients]:
    """:func:`line_gradients` of this process's share of the probes (all of them without a process group), on
    the network's device and in its floating dtype. Every process runs as many probe passes (a sharded network
    gathers its parameters in every forward): a short share is padded with a repeat of the first probe, whose
    result is dropped."""
    param = next((p for p in network.parameters() if p.is_floating_point()), None)
    device = param.device if param is not None else torch.device("cpu")
    share, pads = rank_share(len(probes), *process_group())
    mine = [probes[i] for i in share]
    cast = [
        p.to(device=device, dtype=param.dtype if param is not None and p.is_floating_point() else p.dtype)
        for p in mine + [probes[0]] * pads
    ]
    return line_gradients(network, cast, **gradient_options)[: len(mine)]
