"""Figures 1-2 of Balduzzi et al. (2017) on 1-D nets: shattering of feedforward nets vs ResNets vs LL.

    python examples/paper_1d.py [--doc]    # ~1-2 minutes on 2 CPU cores

Nets of width 200 map R -> R; the probe is 256 points on [-2, 2]; batch norm normalizes
over the grid (``bn_mode="batch"``, statistics held fixed in the backward pass); 20 seeds.
With ``--doc`` it writes docs/figures/paper_1d_*.png and the "paper-1d" section of
docs/REPRODUCTION.md; otherwise the figures go to a temporary folder and the table is printed.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from lightning_callbacks import functional as F  # noqa: E402
from lightning_callbacks.plotting import plot_covariance, plot_gradient_traces  # noqa: E402
from timm_ll.app.reporting import machine, write_section  # noqa: E402
from timm_ll.models.toy import toy_net  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DEPTHS = (2, 4, 10, 24, 50)
SEEDS = 20
NETS = {  # label -> toy_net arguments
    "feedforward": dict(kind="feedforward"),
    "resnet, beta=1": dict(kind="resnet", beta=1.0),
    "resnet, beta=0.1": dict(kind="resnet", beta=0.1),
    "looks-linear": dict(kind="looks_linear"),
}


def bn_resnet_product(depth: int) -> float:
    """prod_{l=1}^{L} (2l+1)/(2l+2), the BN-ResNet correlation of the paper's analysis."""
    return math.prod((2 * layer + 1) / (2 * layer + 2) for layer in range(1, depth + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", action="store_true", help="write the figures and table into docs/")
    args = parser.parse_args()
    figures = REPO / "docs" / "figures" if args.doc else Path(tempfile.mkdtemp(prefix="timm-ll-paper-1d-"))
    probe = F.line_probe(torch.tensor([-2.0]), torch.tensor([2.0]), 256)
    lag1: dict[tuple[str, int], list[float]] = {}
    examples: dict[tuple[str, int], torch.Tensor] = {}
    acfs: dict[tuple[str, int], torch.Tensor] = {}
    for label, kwargs in NETS.items():
        for depth in DEPTHS:
            values, curves = [], []
            for seed in range(SEEDS):
                torch.manual_seed(seed)
                grads = F.input_gradients(toy_net(depth, **kwargs), probe, bn_mode="batch").input
                values.append(F.neighbor_correlation(grads).item())
                curves.append(F.autocorrelation(grads, max_lag=40))
                if seed == 0:
                    examples[(label, depth)] = grads
            lag1[(label, depth)] = values
            acfs[(label, depth)] = torch.stack(curves).mean(0)
    white = torch.randn(256, 1, generator=torch.Generator().manual_seed(0))
    noise = {
        "white noise": F.neighbor_correlation(white).item(),
        "brown noise": F.neighbor_correlation(white.cumsum(0)).item(),
    }

    figures.mkdir(parents=True, exist_ok=True)
    shown = (2, 10, 50)
    for kind, plot in (("traces", plot_gradient_traces), ("covariance", plot_covariance)):
        fig = Figure(figsize=(4 * len(shown), 3 * len(NETS)), layout="constrained")
        for row, label in enumerate(NETS):
            for col, depth in enumerate(shown):
                plot(
                    examples[(label, depth)],
                    ax=fig.add_subplot(len(NETS), len(shown), row * len(shown) + col + 1),
                    title=f"{label}, depth {depth}",
                )
        fig.savefig(figures / f"paper_1d_{kind}.png", dpi=80)
    fig = Figure(figsize=(4 * len(NETS), 3.2), layout="constrained")
    for i, label in enumerate(NETS):
        ax = fig.add_subplot(1, len(NETS), i + 1)
        for depth in DEPTHS:
            ax.plot(acfs[(label, depth)].numpy(), label=f"depth {depth}")
        ax.set_title(label)
        ax.set_xlabel("lag")
        ax.set_ylim(-0.3, 1.05)
        ax.legend(fontsize="x-small")
    fig.savefig(figures / "paper_1d_acf.png", dpi=80)

    def cell(label: str, depth: int) -> str:
        v = lag1[(label, depth)]
        return f"{statistics.mean(v):.3f} ± {statistics.stdev(v):.3f}"

    lines = [
        f"Machine: {machine()}. `python examples/paper_1d.py --doc`: width 200, 256 points on [-2, 2], "
        "BN over the grid, "
        f"{SEEDS} seeds (mean ± sd of ACF(1), the neighbor correlation).",
        "",
        "| net | " + " | ".join(f"L={d}" for d in DEPTHS) + " |",
        "|---|" + "---|" * len(DEPTHS),
        *[f"| {label} | " + " | ".join(cell(label, d) for d in DEPTHS) + " |" for label in NETS],
        "| theory, feedforward: 2^-L | " + " | ".join(f"{2.0**-d:.3g}" for d in DEPTHS) + " |",
        "| theory, BN-ResNet: prod (2l+1)/(2l+2) | " + " | ".join(f"{bn_resnet_product(d):.3f}" for d in DEPTHS) + " |",
        "| approx. 2/sqrt(pi(L+1)) | " + " | ".join(f"{2 / math.sqrt(math.pi * (d + 1)):.3f}" for d in DEPTHS) + " |",
        "",
        f"Reference signals (256 points): white noise ACF(1) = {noise['white noise']:.3f}, "
        f"brown noise ACF(1) = {noise['brown noise']:.3f}.",
        "",
        "![gradient traces](figures/paper_1d_traces.png)",
        "![covariance images](figures/paper_1d_covariance.png)",
        "![ACF curves](figures/paper_1d_acf.png)",
    ]
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "paper-1d", "\n".join(lines))
    else:
        print(f"figures: {figures}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
