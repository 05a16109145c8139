"""Two-process gloo runs of the measurer without Lightning: plain (DDP-style) and sharded with ``fully_shard``.

The workers are module-level so that ``torch.multiprocessing`` can spawn them. One spawn runs every scenario
in turn (spawning two interpreters and importing torch, timm, transformers and Lightning in each costs more
than the scenarios themselves). Every collective has a process-group timeout (60 s) and the parent a join
deadline, so a hang fails fast.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

TIMEOUT_S = 60
Scenario = tuple[str, bool, dict[str, Any]]  # model name, fully sharded?, the measurer's options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cifar_net() -> nn.Module:
    import timm

    import timm_ll  # noqa: F401

    torch.manual_seed(0)
    return timm.create_model("cifar_resnet8", num_classes=4)


def cifar_call() -> tuple[tuple, dict]:
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(8, 3, 32, 32, generator=gen),), {}


def tiny_gpt2() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=16, attn_pdrop=0.0, resid_pdrop=0.0)
    config.embd_pdrop = 0.0
    return GPT2LMHeadModel(config)


def gpt2_call() -> tuple[tuple, dict]:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 64, (6, 12), generator=gen)
    return (), {"input_ids": ids, "labels": ids}


MODELS = {"cifar": (cifar_net, cifar_call), "gpt2": (tiny_gpt2, gpt2_call)}


def blocks_of(model: nn.Module) -> list[nn.Module]:
    """The repeated blocks ``fully_shard`` wraps one by one (as FSDP users do), before the root."""
    if hasattr(model, "stages"):
        return [block for stage in model.stages for block in stage]
    return list(model.transformer.h)


def measure(model: nn.Module, call: tuple[tuple, dict], options: dict[str, Any]) -> dict[str, float]:
    from lightning_callbacks import ShatteringMeasurer

    args, kwargs = call
    return ShatteringMeasurer(model, **options).measure(0, *args, **kwargs).scalars()


class StubTrainer:
    """What the Lightning callback reads of a Trainer (Lightning's FSDPStrategy needs GPUs; the callback's own
    part, hooks and logging over the measurer, is the same under any strategy)."""

    def __init__(self, rank: int, world: int) -> None:
        self.global_step, self.global_rank, self.world_size = 0, rank, world
        self.is_global_zero = rank == 0
        self.loggers: list = []
        self.callback_metrics: dict = {}
        self.default_root_dir = "."


def monitor_measure(model: nn.Module, call: tuple[tuple, dict], options: dict[str, Any]) -> dict[str, float]:
    """Drive ShatteringMonitor's measurement path by hand: setup, training starts, the training forward, and the
    first optimizer step about to be taken (the step-0 reading), as the Trainer calls them."""
    import lightning.pytorch as L

    from lightning_callbacks import ShatteringMonitor

    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    module = L.LightningModule()
    module.model = model
    monitor = ShatteringMonitor(log_figures=False, **options)
    trainer = StubTrainer(rank, world)
    monitor.setup(trainer, module, "fit")
    args, kwargs = call
    monitor.on_train_start(trainer, module)
    model(*args, **kwargs)
    monitor.on_before_optimizer_step(trainer, module, None)
    return monitor.last_measurement


def failing_rank_run(model: nn.Module, call: tuple[tuple, dict], options: dict[str, Any]) -> dict[str, Any]:
    """The protocol at steps 0, 1 and 2, with a measurement that fails on one rank only at step 1 (its
    ``forward_fn`` raises): every rank must record step 1 as failed, and nobody may wait forever."""
    from lightning_callbacks import ShatteringMeasurer

    rank, fail_rank = torch.distributed.get_rank(), options.pop("fail_rank")
    armed = [False]

    def forward_fn(module: nn.Module, probe: torch.Tensor) -> torch.Tensor:
        if armed[0] and rank == fail_rank:
            raise RuntimeError(f"injected failure on rank {rank}")
        return module(probe)

    measurer = ShatteringMeasurer(model, forward_fn=forward_fn, every_n_steps=1, **options)
    args, kwargs = call
    measurer.watch()
    model(*args, **kwargs)
    for step in range(3):
        armed[0] = step == 1
        measurer.before_optimizer_step(step)
    return {"failed": [r.failed for r in measurer.history], "scalars": measurer.history[-1].scalars()}


def run_scenario(name: str, shard: bool, options: dict[str, Any]) -> dict[str, Any]:
    """One scenario on this rank: build the model (the same seed everywhere), shard it if asked, measure, and
    count the probe forwards this rank ran."""
    build, call = MODELS[name]
    model = build()
    if shard:
        from torch.distributed.fsdp import fully_shard

        for block in blocks_of(model):
            fully_shard(block)
        fully_shard(model)
    forwards = [0]
    model.register_forward_pre_hook(lambda *_: forwards.__setitem__(0, forwards[0] + 1))
    options = dict(options)
    through = monitor_measure if options.pop("through_monitor", False) else measure
    through = failing_rank_run if "fail_rank" in options else through
    with counted_collectives() as collectives:
        scalars = through(model, call(), options)
    return {"scalars": scalars, "forwards": forwards[0], "collectives": collectives}


@contextlib.contextmanager
def counted_collectives(names: tuple[str, ...] = ("all_reduce", "all_gather")) -> Iterator[dict[str, int]]:
    """How often the code inside calls each of ``torch.distributed``'s ``names`` (torchmetrics' own sync calls
    ``all_gather`` for every state it syncs; FSDP's collectives are others)."""
    counts = dict.fromkeys(names, 0)
    originals = {name: getattr(torch.distributed, name) for name in names}

    def counting(name: str) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return originals[name](*args, **kwargs)

        return call

    for name in names:
        setattr(torch.distributed, name, counting(name))
    try:
        yield counts
    finally:
        for name, original in originals.items():
            setattr(torch.distributed, name, original)


def worker(rank: int, world: int, port: int, out: str, scenarios: dict[str, Scenario]) -> None:
    """One rank: every scenario in turn in one process group (one spawn, one import of the libraries, for all
    of them), then save the results."""
    torch.distributed.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=TIMEOUT_S),
    )
    try:
        results = {}
        for key, (name, shard, options) in scenarios.items():
            try:
                results[key] = run_scenario(name, shard, options)
            except Exception as exc:  # name the scenario in the traceback the parent shows
                raise RuntimeError(f"scenario {key!r} failed on rank {rank}") from exc
            torch.distributed.barrier()  # the next scenario starts together on every rank
        torch.save(results, Path(out) / f"rank{rank}.pt")
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()
    # the result is on disk: leave without the interpreter's teardown, where a C++ thread that is still
    # joinable (gloo's, or a library's) aborted a rank now and then ("terminate called without an active
    # exception", SIGABRT) after its work was done; an error above still raises and fails the run
    os._exit(0)


def run_two_ranks(out: Path, scenarios: dict[str, Scenario]) -> dict[str, list[dict[str, Any]]]:
    """Spawn two gloo ranks of :func:`worker` for the scenarios; fail (never hang) if they do not finish within
    the timeout. Returns each scenario's result on rank 0 and rank 1."""
    import torch.multiprocessing as mp

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    context = mp.start_processes(
        worker, args=(2, free_port(), str(out), scenarios), nprocs=2, join=False, start_method="spawn"
    )
    # a hung collective raises on its rank after TIMEOUT_S, which ends the join below; the deadline is a backstop
    deadline = time.monotonic() + 3 * TIMEOUT_S
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            raise TimeoutError(f"the two ranks did not finish within {3 * TIMEOUT_S} s: a collective hung")
    ranks = [torch.load(out / f"rank{rank}.pt", weights_only=False) for rank in range(2)]
    return {key: [ranks[0][key], ranks[1][key]] for key in scenarios}


def run_two_ranks_once(tmp_path_factory: pytest.TempPathFactory, scenarios: dict[str, Scenario]) -> dict:
    """:func:`run_two_ranks` once per test run, shared by pytest-xdist's workers through a file lock (the
    pattern xdist documents for session fixtures): whichever worker comes first spawns the ranks, the other
    reads their results, or the error they ended with."""
    from filelock import FileLock

    if "PYTEST_XDIST_WORKER" not in os.environ:
        return run_two_ranks(tmp_path_factory.mktemp("two-ranks"), scenarios)
    shared = tmp_path_factory.getbasetemp().parent / "two-ranks"  # one folder per run, shared by its workers
    results, error = shared / "results.pt", shared / "error.txt"
    with FileLock(f"{shared}.lock"):
        if not results.exists() and not error.exists():
            shared.mkdir(exist_ok=True)
            try:
                torch.save(run_two_ranks(shared, scenarios), results)
            except Exception as exc:
                error.write_text(f"{type(exc).__name__}: {exc}")
                raise
    if error.exists():
        raise RuntimeError(f"the two-rank run failed in another xdist worker: {error.read_text()}")
    return torch.load(results, weights_only=False)
