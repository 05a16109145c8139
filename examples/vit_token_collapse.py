"""Rank collapse, read while it happens: a small timm ViT and the same ViT without its attention skips, trained
a few hundred steps on CIFAR-10 at 32x32 on a CPU, with the ShatteringMonitor reading the token kernel per block.

    python examples/vit_token_collapse.py --data path/to/cifar10-jpeg.zip [--doc]   # about 15 minutes, 2 CPU cores
    python examples/vit_token_collapse.py --data digits --steps 6 --train 256        # seconds: checks the logic

Both nets are ``vit_tiny_patch16_224`` built at 32x32 with 4x4 patches (64 patch tokens and the class token,
width 192, 12 blocks); the second has every block's attention residual removed (``x = attn(norm(x))``, the
MLP's residual kept), built here and not registered: Dong et al. (2021) show that attention without skips loses
rank doubly exponentially with depth. Each trains with AdamW and a one-cycle schedule on a fixed class-balanced
subset of the training split and is tested on the test split; the monitor (every 50 steps, and its log-spaced
start) logs each block's token kernel (the mean cosine between one image's tokens) and the verdict. ``--doc``
writes ``docs/results/vit_token_collapse.json``, the figure ``docs/figures/vit_token_collapse.png`` and the block
`vit-token-collapse` of ``docs/MONITOR.md``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block

from lightning_callbacks import ShatteringMonitor, ShatteringResult, verdict
from timm_ll.app.reporting import machine, provenance, write_json, write_section

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("with attention skips", "without attention skips")
FIGURE = "vit_token_collapse.png"


class NoAttentionSkip(Block):
    """timm's ViT block with its attention residual removed: ``x = attn(norm1(x))``; the MLP keeps its own."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.drop_path1(self.ls1(self.attn(self.norm1(x), attn_mask=attn_mask)))
        return x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))


def build(skips: bool, num_classes: int) -> torch.nn.Module:
    model = timm.create_model(
        "vit_tiny_patch16_224", img_size=32, patch_size=4, num_classes=num_classes, pretrained=False
    )
    if not skips:
        for block in model.blocks:
            block.__class__ = NoAttentionSkip  # the same weights and init; only the forward differs
    return model


class Classifier(L.LightningModule):
    """The ViT with AdamW (weight decay 0.05 on weights) and a one-cycle LR over the run."""

    def __init__(self, model: torch.nn.Module, steps: int, lr: float = 1e-3) -> None:
        super().__init__()
        self.model, self.steps, self.lr = model, steps, lr

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = F.cross_entropy(self.model(images), labels)
        self.log("train/loss", loss)
        return loss

    def test_step(self, batch: Any, batch_idx: int) -> None:
        images, labels = batch
        self.log("test/acc", (self.model(images).argmax(1) == labels).float().mean())

    def configure_optimizers(self) -> Any:
        decay = [p for p in self.parameters() if p.ndim > 1]
        rest = [p for p in self.parameters() if p.ndim <= 1]
        optimizer = torch.optim.AdamW([dict(params=decay, weight_decay=0.05), dict(params=rest, weight_decay=0.0)])
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=self.lr, total_steps=self.steps + 1)
        return dict(optimizer=optimizer, lr_scheduler=dict(scheduler=schedule, interval="step"))


def train(skips: bool, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    from timm_ll.app.data import load_source
    from timm_ll.app.datamodule import InMemoryImages, balanced_subset

    train_split = balanced_subset(load_source(args.data, "train"), args.train)
    test_split = load_source(args.data, "test")
    L.seed_everything(0, verbose=False)
    model = build(skips, len(train_split.classes))
    monitor = ShatteringMonitor(every_n_steps=50, module="model", log_figures=False)
    trainer = L.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[monitor],
        default_root_dir=out,
    )
    data = InMemoryImages(train_split, test_split, batch_size=128)
    start = time.perf_counter()
    module = Classifier(model, args.steps)
    trainer.fit(module, datamodule=data)
    seconds = time.perf_counter() - start
    accuracy = trainer.test(module, datamodule=data, verbose=False)[0]["test/acc"]
    return dict(
        variant=VARIANTS[0] if skips else VARIANTS[1],
        steps=trainer.global_step,
        train_images=len(train_split),
        test_acc=float(accuracy),
        seconds=round(seconds, 1),
        history=[r.entry() for r in monitor.history],
    )


def _token_kernels(result: ShatteringResult) -> list[float]:
    return [b.token_kernel for b in result.blocks]


def figure(runs: list[dict]):
    from matplotlib.figure import Figure

    from lightning_callbacks.plotting import style_step_axis

    fig = Figure(figsize=(11.0, 3.8), layout="constrained")
    by_depth, by_step = fig.subplots(1, 2)
    for index, run in enumerate(runs):
        history = [ShatteringResult.from_entry(e) for e in run["history"]]
        color = f"C{index}"
        for result, style, when in ((history[0], ":", "at init"), (history[-1], "-", f"after {run['steps']} steps")):
            values = _token_kernels(result)
            by_depth.plot(
                range(len(values)), values, style, marker="o", ms=3, color=color, label=f"{run['variant']}, {when}"
            )
        last = [_token_kernels(r)[-1] for r in history]
        by_step.plot([r.step for r in history], last, "-o", ms=3, color=color, label=run["variant"])
    by_depth.set_xlabel("block (forward order)")
    by_depth.set_ylabel("token kernel (mean cosine between tokens)")
    by_depth.set_title("token kernel by depth")
    by_depth.legend(fontsize="small")
    style_step_axis(by_step, "training step")
    by_step.set_ylabel("token kernel of the last block")
    by_step.set_title("token kernel of the last block during training")
    by_step.legend(fontsize="small")
    for ax in (by_depth, by_step):
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", lw=0.3, alpha=0.5)
    return fig


def section(results: Path) -> str:
    data = json.loads(results.read_text())
    runs = data["runs"]
    lines = [
        f"Machine: {data['machine']}. `python examples/vit_token_collapse.py --doc`: `vit_tiny_patch16_224` at 32x32, "
        f"4x4 patches (65 tokens, 12 blocks), with and without its attention skips; {runs[0]['steps']} steps of "
        f"batch 128 (AdamW, one-cycle, peak LR 1e-3) on {runs[0]['train_images']:,} class-balanced CIFAR-10 training "
        "images, tested on the 10,000 test images; the ShatteringMonitor at its defaults every 50 steps.",
        "",
        "| variant | test accuracy | last block's token kernel at init | at the end |",
        "|---|---|---|---|",
    ]
    for run in runs:
        first, last = (ShatteringResult.from_entry(run["history"][i]) for i in (0, -1))
        lines.append(
            f"| {run['variant']} | {100 * run['test_acc']:.2f}% | {_token_kernels(first)[-1]:.3f} "
            f"| {_token_kernels(last)[-1]:.3f} |"
        )
    lines += ["", "What the verdict says at init and at the end (from the logged readings, at today's thresholds):", ""]
    for run in runs:
        for entry in (run["history"][0], run["history"][-1]):
            line = verdict(ShatteringResult.from_entry(entry)).line()
            lines.append(f"- {run['variant']}, step {entry['step']}: {line.split(': ', 1)[1]}.")
    lines += ["", f"![the token kernel by depth and during training](figures/{FIGURE})"]
    return "\n".join(lines)


RESULTS = REPO / "docs" / "results" / "vit_token_collapse.json"
DOC_BLOCKS = {"vit-token-collapse": lambda: section(RESULTS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--train", type=int, default=20_000, help="class-balanced training images")
    parser.add_argument("--doc", action="store_true")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="timm-ll-vit-"))
    runs = [train(skips, args, out) for skips in (True, False)]
    results = RESULTS if args.doc else out / "vit_token_collapse.json"
    write_json(results, dict(machine=machine(), provenance=provenance(), runs=runs))
    figures = REPO / "docs" / "figures" if args.doc else out
    figure(runs).savefig(figures / FIGURE, dpi=110)
    text = section(results)
    if args.doc:
        write_section(REPO / "docs" / "MONITOR.md", "vit-token-collapse", text)
    print(text)
    if not args.doc:
        print(f"figure and numbers: {out}")


if __name__ == "__main__":
    main()
