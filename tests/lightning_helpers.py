"""A tiny BN convnet and LightningModule used by the monitor tests."""

from __future__ import annotations

import lightning.pytorch as L
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_callbacks import ShatteringMonitor


def bn_convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, stride=2),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Flatten(),
        nn.Linear(8 * 4 * 4, 4),
    )


def loader(n: int = 64, batch_size: int = 8, seed: int = 0, dtype=torch.float32) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 8, 8, generator=gen)
    y = torch.randint(0, 4, (n,), generator=gen)
    return DataLoader(TensorDataset(x.to(dtype), y), batch_size=batch_size, shuffle=False)


class _Classifier:
    """bn_convnet as ``.model`` with a cross-entropy training step (mixed into either LightningModule)."""

    def __init__(self, compile_model: bool = False) -> None:
        super().__init__()
        self.model = bn_convnet()
        if compile_model:
            self.model = torch.compile(self.model, backend="eager")

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


class LitClassifier(_Classifier, L.LightningModule):
    pass


class PLClassifier(_Classifier, pl.LightningModule):
    pass


def make_module(base, compile_model: bool = False):
    """The classifier for ``base`` (lightning.pytorch or pytorch_lightning); module-level so ddp_spawn can pickle it."""
    return (LitClassifier if base is L.LightningModule else PLClassifier)(compile_model)


class CountingMonitor(ShatteringMonitor):
    """A ShatteringMonitor that appends ``"<rank> <probe points>"`` to ``record`` at each measurement
    (module-level, so that ddp_spawn can pickle it)."""

    def __init__(self, record: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record = record

    def setup(self, trainer, pl_module, stage):
        super().setup(trainer, pl_module, stage)
        import lightning_callbacks.lines as lines  # each process's share of the probes, padded, goes through here

        line_gradients, measure, active = lines.line_gradients, self.measurer.measure, []

        def counted(network, probes, **options):
            if active:  # this monitor's measurement, not another's
                rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
                with open(self.record, "a") as handle:
                    handle.write(f"{rank} {sum(p.shape[0] for p in probes)}\n")
            return line_gradients(network, probes, **options)

        def measuring(*args, **kwargs):
            active.append(True)
            try:
                return measure(*args, **kwargs)
            finally:
                active.pop()

        self.measurer.measure = measuring

        counted.__wrapped__ = line_gradients  # put back at teardown
        lines.line_gradients = counted

    def teardown(self, trainer, pl_module, stage):
        import lightning_callbacks.lines as lines

        lines.line_gradients = getattr(lines.line_gradients, "__wrapped__", lines.line_gradients)
        super().teardown(trainer, pl_module, stage)


class EndProcessGroup(L.Callback):
    """Ends a ``ddp_spawn`` run's process group on every rank once training is over (module-level, so that
    ddp_spawn can pickle it).

    Lightning destroys the process group at exit only for NCCL; a gloo group is left to the interpreter's
    shutdown, where a spawned rank that exits while its peer is still saving the results aborted now and then
    ("terminate called without an active exception", SIGABRT). A barrier and an explicit
    ``destroy_process_group`` while both ranks are alive is what PyTorch asks of every program.
    """

    def teardown(self, trainer, pl_module, stage):
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.barrier()
            torch.distributed.destroy_process_group()
