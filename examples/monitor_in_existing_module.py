"""Add the ShatteringMonitor to an existing LightningModule around any timm model: one line.

python examples/monitor_in_existing_module.py [--model resnet18] [--max-steps 200] [--out DIR]

About a minute on 2 CPU cores. Logs (CSV metrics and the monitor's PNG figures) go to a fresh
temporary folder unless ``--out`` names one; the script prints where.
"""

from __future__ import annotations

import argparse
import tempfile

import lightning.pytorch as L
import timm
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_callbacks import ShatteringMonitor
from timm_ll.app.data import load_source


class TimmClassifier(L.LightningModule):
    """A LightningModule you may already have: a timm model, cross-entropy, SGD."""

    def __init__(self, model_name: str, num_classes: int) -> None:
        super().__init__()
        self.model = timm.create_model(model_name, num_classes=num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--max-steps", type=int, default=200)
    parser.add_argument("--out", default=None, help="log folder (default: a new temporary folder)")
    args = parser.parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="timm-ll-monitor-example-")
    data = load_source("digits", "train")
    images = (data.images.float() / 255 - 0.5) / 0.25
    loader = DataLoader(TensorDataset(images, data.labels), batch_size=64, shuffle=True)
    monitor = ShatteringMonitor(every_n_steps=max(1, args.max_steps // 4), num_points=64)
    trainer = L.Trainer(
        max_steps=args.max_steps,
        logger=CSVLogger(out),
        log_every_n_steps=10,  # digits has 23 batches an epoch, fewer than Lightning's default 50
        enable_progress_bar=False,
        callbacks=[monitor],  # <- the one line
    )
    trainer.fit(TimmClassifier(args.model, num_classes=len(data.classes)), loader)
    print(f"logs and figures: {trainer.log_dir}")
    print({k: round(v, 4) for k, v in monitor.last_measurement.items() if "/" not in k[len("shattering/") :]})
    return monitor.last_measurement


if __name__ == "__main__":
    main()
