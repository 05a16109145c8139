"""Figures 1-2 of Balduzzi et al. (2017) on 1-D nets: shattering of feedforward nets vs ResNets vs LL.

    python examples/paper_1d.py [--doc]    # ~1-2 minutes on 2 CPU cores

Nets of width 200 map R -> R; the probe is 256 points on [-2, 2]; batch norm normalizes
over the grid (``bn_mode="batch"``, statistics held fixed in the backward pass); 20 seeds.
With ``--doc`` it writes docs/figures/paper_1d_*.png, the numbers (docs/results/paper_1d.json)
and the "paper-1d" section of docs/REPRODUCTION.md; otherwise they go to a temporary folder and
the table is printed.
"""

from __future__ import annotations

import argparse
import json
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
from timm_ll.app.reporting import machine, provenance, write_json, write_section  # noqa: E402
from timm_ll.models.toy import toy_net  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DEPTHS = (2, 4, 10, 24, 50)
SEEDS = 20
NETS = {  # label -> toy_net arguments
    "feedforward": dict(kind="feedforward"),
    "resnet, beta=1": dict(kind="resnet", beta=1.0),
    "resnet, beta=0.1": dict(kind="resnet", beta=0.1),
    # LL needs no normalization (it is linear at init). With BN over a 1-D grid every hidden unit is a multiple
    # of the same standardized input (rank-1 activations), and BN's division by a unit's tiny spread amplifies
    # round-off layer after layer: the measurement would read the round-off, not the net (see REPRODUCTION a)
    "looks-linear": dict(kind="looks_linear", batch_norm=False),
}


def bn_resnet_product(depth: int) -> float:
    """prod_{l=1}^{L} (2l+1)/(2l+2), the BN-ResNet correlation of the paper's analysis."""
    return math.prod((2 * layer + 1) / (2 * layer + 2) for layer in range(1, depth + 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", action="store_true", help="write the figures and table into docs/")
    args = parser.parse_args()
    out = REPO / "docs" if args.doc else Path(tempfile.mkdtemp(prefix="timm-ll-paper-1d-"))
    figures = out / "figures"
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
        if all(bool((acfs[(label, d)] == 1).all()) for d in DEPTHS):  # one line, not five drawn on top of each other
            ax.plot(acfs[(label, DEPTHS[0])].numpy(), label="every depth: flat gradient, ACF 1 at every lag")
        else:
            for depth in DEPTHS:
                ax.plot(acfs[(label, depth)].numpy(), label=f"depth {depth}")
        ax.set_title(label)
        ax.set_xlabel("lag (grid points)")
        ax.set_ylabel("autocorrelation of the gradient" if i == 0 else "")
        ax.set_ylim(-0.3, 1.05)
        ax.legend(fontsize="x-small")
    fig.suptitle(f"autocorrelation of the input gradient along the grid, by lag (mean of {SEEDS} seeds)")
    fig.savefig(figures / "paper_1d_acf.png", dpi=80)

    results = out / "results" / "paper_1d.json"
    write_json(
        results,
        dict(
            machine=machine(),
            provenance=provenance(),
            points=256,
            seeds=SEEDS,
            depths=list(DEPTHS),
            neighbor_corr={label: {str(d): lag1[(label, d)] for d in DEPTHS} for label in NETS},
            reference=noise,
        ),
    )
    text = section(results)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "paper-1d", text)
    else:
        print(f"figures and numbers: {out}")
    print(text)


def section(results: Path) -> str:
    """The docs section from the measured numbers (``docs/results/paper_1d.json``): table, references, figures."""
    data = json.loads(results.read_text())
    depths, noise = data["depths"], data["reference"]

    def cell(label: str, depth: int) -> str:
        values = data["neighbor_corr"][label][str(depth)]
        read = [v for v in values if v is not None]  # None: a gradient that is zero everywhere, no reading
        unread = f" ({len(values) - len(read)} of {len(values)} zero)" if len(read) < len(values) else ""
        return (f"{statistics.mean(read):.3f} ± {statistics.stdev(read):.3f}" if len(read) > 1 else "-") + unread

    lines = [
        f"Machine: {data['machine']}. `python examples/paper_1d.py --doc`: width 200, 256 points on [-2, 2], "
        "BN over the grid (none in the looks-linear net), "
        f"{data['seeds']} seeds (mean ± sd of ACF(1), the neighbor correlation).",
        "",
        "| net | " + " | ".join(f"L={d}" for d in depths) + " |",
        "|---|" + "---|" * len(depths),
        *[f"| {label} | " + " | ".join(cell(label, d) for d in depths) + " |" for label in data["neighbor_corr"]],
        "| theory, feedforward: 2^-L | " + " | ".join(f"{2.0**-d:.3g}" for d in depths) + " |",
        "| theory, BN-ResNet: prod (2l+1)/(2l+2) | " + " | ".join(f"{bn_resnet_product(d):.3f}" for d in depths) + " |",
        "| approx. 2/sqrt(pi(L+1)) | " + " | ".join(f"{2 / math.sqrt(math.pi * (d + 1)):.3f}" for d in depths) + " |",
        "",
        f"Reference signals ({data['points']} points): white noise ACF(1) = {noise['white noise']:.3f}, "
        f"brown noise ACF(1) = {noise['brown noise']:.3f}.",
        "",
        "![gradient traces](figures/paper_1d_traces.png)",
        "![covariance images](figures/paper_1d_covariance.png)",
        "![ACF curves](figures/paper_1d_acf.png)",
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"paper-1d": lambda: section(REPO / "docs" / "results" / "paper_1d.json")}


if __name__ == "__main__":
    main()
