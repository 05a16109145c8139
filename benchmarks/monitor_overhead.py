"""Cost of the ShatteringMonitor: fit wall time with vs without it, and one probe vs one training step.

    python benchmarks/monitor_overhead.py [--steps 2000] [--repeats 3]

Writes the "monitor" section of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import lightning.pytorch as L
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import timm_ll  # noqa: F401
from lightning_callbacks import ShatteringMonitor
from lightning_callbacks import functional as F
from timm_ll.reporting import machine, median_time, write_section

REPO = Path(__file__).resolve().parents[1]


class Classifier(L.LightningModule):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.model = net

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


def small_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )


def fit_seconds(steps: int, monitor: bool) -> tuple[float, float]:
    """Wall time of a fit, and the time spent inside the monitor's hook (0 without it)."""
    L.seed_everything(0, verbose=False)
    data = TensorDataset(torch.randn(2048, 3, 16, 16), torch.randint(0, 10, (2048,)))
    callbacks = []
    in_monitor = [0.0]
    if monitor:
        callback = ShatteringMonitor(log_figures=False)
        hook = callback.on_train_batch_start

        def timed_hook(*args, **kwargs):  # every call of the hook, measuring or not
            start = time.perf_counter()
            hook(*args, **kwargs)
            in_monitor[0] += time.perf_counter() - start

        callback.on_train_batch_start = timed_hook
        callbacks.append(callback)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=callbacks,
    )
    start = time.perf_counter()
    trainer.fit(Classifier(small_net()), DataLoader(data, batch_size=128, shuffle=True))
    return time.perf_counter() - start, in_monitor[0]


def probe_vs_step(name: str, batch_size: int, repeats: int) -> tuple[float, float]:
    model = timm.create_model(name).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))

    def step() -> None:
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    probe = F.line_probe(x[0], x[1], batch_size)
    layers = F.auto_layers(model)

    def measure() -> None:
        grads = F.input_gradients(model, probe, layers=layers)
        F.gradient_statistics(grads.input)
        F.depth_profile(grads.layers)

    return median_time(measure, repeats), median_time(step, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fits: dict[bool, list[float]] = {False: [], True: []}
    inside: list[float] = []
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both alike
        for monitor in (False, True):
            seconds, in_monitor = fit_seconds(args.steps, monitor)
            fits[monitor].append(seconds)
            if monitor:
                inside.append(in_monitor)
    base, with_monitor = statistics.median(fits[False]), statistics.median(fits[True])
    direct = statistics.median(inside)
    rows = [(name, *probe_vs_step(name, 128, 5)) for name in ("cifar_resnet20", "ll_plain20", "plain56")]
    lines = [
        "## ShatteringMonitor overhead",
        "",
        f"Machine: {machine()}. `python benchmarks/monitor_overhead.py`.",
        "",
        f"Fit of {args.steps} steps (small BN convnet, batch 128 as in the CIFAR recipe, 16x16 inputs), "
        "default schedule (`every_n_steps=1000`, 256-point probe, `layers='auto'`), median of "
        f"{args.repeats} fits each, alternated. Time spent inside the monitor's hook (every call, measuring or "
        f"not), median: {direct:.3f} s against {base:.2f} s of fit without it -> **overhead "
        f"{100 * direct / base:.2f}%** (target <= 1%). End to end the fits took {base:.2f} s without and "
        f"{with_monitor:.2f} s with the monitor ({100 * (with_monitor / base - 1):+.2f}%), a difference below "
        "this machine's run-to-run noise (individual fits: "
        f"without {', '.join(f'{t:.1f}' for t in fits[False])} s; with {', '.join(f'{t:.1f}' for t in fits[True])} s).",
        "",
        "One probe (128 points, input + every auto layer, all statistics) against one SGD step at batch 128, "
        "medians of 5:",
        "",
        "| model | probe (s) | train step (s) | probe / step |",
        "|---|---|---|---|",
        *[f"| {n} | {p:.3f} | {s:.3f} | **{p / s:.2f}x** |" for n, p, s in rows],
        "",
        "Target: one probe <= 2x one training step.",
    ]
    write_section(REPO / "docs" / "PERFORMANCE.md", "monitor", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
