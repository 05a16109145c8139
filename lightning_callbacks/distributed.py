"""What the measurer needs of ``torch.distributed``: who is who, rank 0's state everywhere, each process's
share of the lines, and one verdict on a failure.

Under ``torch.distributed`` (DDP, FSDP) every process calls the measurer's protocol at the same steps: the lines
are rank 0's, each process measures its share, and the statistics (torchmetrics states) are summed across
processes in one all-reduce, so every process gets the single-process result. Every process runs the same number
of probe passes, padding its share with a repeat of a line whose result it drops (a sharded network gathers its
parameters in every forward). Before any statistic is synced the processes agree, by a reduced flag, whether any
of them failed, so that none waits in a collective the others left. (A failure inside a sharded forward on one
process only, before its parameters are gathered, cannot be rescued that way: the others are already in the
gather.)
"""

from __future__ import annotations

import io
from typing import Any

import torch

__all__ = ["process_group", "broadcast_from_rank_zero", "rank_share", "any_process"]


def process_group() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` without one."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def broadcast_from_rank_zero(state: Any) -> Any:
    """Rank 0's ``state`` on every process (itself without a process group), sent as ``torch.save`` bytes:
    handing tensors to an object broadcast made a spawned gloo process abort at exit now and then."""
    if process_group()[1] == 1:
        return state
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = [buffer.getvalue()]
    torch.distributed.broadcast_object_list(payload, src=0)
    return torch.load(io.BytesIO(payload[0]), weights_only=True)


def rank_share(num_lines: int, rank: int, world: int) -> tuple[list[int], int]:
    """The lines process ``rank`` of ``world`` measures (round robin), and how many padding passes it adds so
    that every process runs as many probe passes as the busiest one (a sharded forward is collective)."""
    share = list(range(rank, num_lines, world))
    return share, -(-num_lines // world) - len(share)


def any_process(flag: bool, device: torch.device) -> bool:
    """Whether ``flag`` is true on any process (a MAX all-reduce; ``flag`` itself without a process group).
    Every process must call it at the same point: it is how the processes agree that a measurement failed
    before any of them enters a collective the others would never reach."""
    if process_group()[1] == 1:
        return flag
    verdict = torch.tensor([int(flag)], device=device)
    torch.distributed.all_reduce(verdict, op=torch.distributed.ReduceOp.MAX)
    return bool(verdict.item())
