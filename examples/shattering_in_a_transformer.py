"""Do a transformer's gradients shatter with depth? A line in embedding space, at initialization.

    python examples/shattering_in_a_transformer.py [--seeds 3] [--doc]

A token sequence has no path to another, but its embeddings do: the probe is 128 points on the
line between two random sequences' embedding outputs (16 tokens, width 64), and the gradient
of a fixed random projection of the output is taken w.r.t. each point (``input_gradients``).
Encoders of ``nn.TransformerEncoderLayer`` blocks (4 heads, feed-forward 128, GELU, no
dropout), post-LN (the original transformer's norm after each residual add) and pre-LN (norm
first, as GPT-2 and ViT), at depths 2 to 48, PyTorch's default init, eval mode; a linear head
on the mean-pooled output; and, as a control, a per-token skip-free ReLU MLP of the same
depths. Neighbor correlation of the input gradient (median over seeds), and the per-block
profile of the deepest net. About 15 seconds on 2 CPU cores.

``--doc`` writes the numbers (docs/results/transformer_at_init.json), the figures and the section
"transformer-at-init" of docs/REPRODUCTION.md; otherwise they go to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from lightning_callbacks import functional as F
from lightning_callbacks.plotting import plot_depth_curves, plot_depth_profile
from timm_ll.app.reporting import machine, provenance, write_json, write_section

REPO = Path(__file__).resolve().parents[1]
DEPTHS = (2, 4, 8, 16, 32, 48)
WIDTH, TOKENS, VOCAB, POINTS = 64, 16, 1000, 128
KINDS = ("post-LN", "pre-LN", "MLP control")


class Encoder(nn.Module):
    """Embeddings (the probed input) + sinusoidal positions -> ``depth`` blocks -> mean pool -> linear.

    ``kind``: ``"post-LN"`` or ``"pre-LN"`` transformer blocks, or ``"MLP control"``: per-token
    Linear + ReLU blocks with He init and neither residual nor norm, the feedforward net that
    the paper shows shattering, to check that this probe can see it.
    """

    def __init__(self, depth: int, kind: str) -> None:
        super().__init__()
        if kind == "MLP control":
            self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.ReLU()) for _ in range(depth))
            for block in self.blocks:
                nn.init.kaiming_normal_(block[0].weight, nonlinearity="relu")
                nn.init.zeros_(block[0].bias)
        else:
            layer = nn.TransformerEncoderLayer(
                WIDTH,
                nhead=4,
                dim_feedforward=128,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=kind == "pre-LN",
            )
            self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False).layers
        self.norm = nn.LayerNorm(WIDTH) if kind == "pre-LN" else nn.Identity()  # pre-LN ends in a norm (GPT-2, ViT)
        self.head = nn.Linear(WIDTH, 10)
        position = torch.arange(TOKENS).unsqueeze(1) / torch.pow(10_000, torch.arange(0, WIDTH, 2) / WIDTH)
        self.register_buffer("positions", torch.cat([position.sin(), position.cos()], 1))

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        hidden = embeddings + self.positions
        for block in self.blocks:
            hidden = block(hidden)
        return self.head(self.norm(hidden).mean(1))


def measure(depth: int, kind: str, seed: int) -> tuple[float, F.DepthProfile, list[float]]:
    """The input gradient's neighbour correlation, the per-block profile, and each block's token kernel at the
    line's two ends (the mean cosine between the sequence's tokens)."""
    torch.manual_seed(seed)
    embedding = nn.Embedding(VOCAB, WIDTH)
    model = Encoder(depth, kind)
    tokens = torch.randint(0, VOCAB, (2, TOKENS), generator=torch.Generator().manual_seed(1000 + seed))
    with torch.no_grad():
        ends = embedding(tokens).double()
    probe = F.line_probe(ends[0], ends[1], POINTS)
    layers = [f"blocks.{i}" for i in range(depth)]
    grads = F.input_gradients(model.double(), probe, blocks=layers, keep=[0, POINTS - 1])
    tokens = [F.token_readings(grads.activations[name]).kernel for name in layers]
    return F.neighbor_correlation(grads.input).item(), F.depth_profile(grads.blocks), tokens


def _spread(values: list[float]) -> float:
    return max(values) - min(values)


def _slug(name: str) -> str:
    return name.lower().replace("-", "").replace(" ", "_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--doc", action="store_true", help="write the results into docs/REPRODUCTION.md")
    args = parser.parse_args()
    out = REPO / "docs" if args.doc else Path(tempfile.mkdtemp())
    results: dict[str, list[float]] = {}
    profiles: dict[str, dict] = {}
    tokens: dict[str, list[float]] = {}  # the last block's token kernel (median over seeds), per depth
    token_profiles: dict[str, list[float]] = {}  # the deepest net's token kernel per block (seed 0)
    for name in KINDS:
        results[name], tokens[name] = [], []
        for depth in DEPTHS:
            runs = [measure(depth, name, seed) for seed in range(args.seeds)]
            results[name].append(statistics.median(c for c, _, _ in runs))
            tokens[name].append(statistics.median(t[-1] for _, _, t in runs))
            if depth == DEPTHS[-1]:
                profiles[name] = asdict(runs[0][1])
                token_profiles[name] = runs[0][2]
            print(f"{name} depth {depth}: neighbor correlation {results[name][-1]:.3f}", flush=True)
    numbers = out / "results" / "transformer_at_init.json"
    data = dict(machine=machine(), provenance=provenance(), seeds=args.seeds, depths=list(DEPTHS))
    data.update(neighbor_corr=results, profiles=profiles, token_kernel=tokens, token_profiles=token_profiles)
    write_json(numbers, data)
    draw(numbers, out / "figures" / "transformer_at_init")
    text = section(numbers)
    print(text)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "transformer-at-init", text)
    else:
        print(f"figures and numbers: {out}")


def _fits(depths: list[int], results: dict[str, list[float]]) -> dict[str, F.DecayFit]:
    return {name: F.fit_decay(depths, values) for name, values in results.items()}


# what the docs and figures call each network (the results file keeps the names it was measured under)
LABELS = {"MLP control": "skip-free ReLU MLP (control)"}


def _label(name: str) -> str:
    return LABELS.get(name, name)


def _best_fit(fit: F.DecayFit) -> str:
    """A table's words for a fit: the best law and its R², without calling it a law (the control's exponential
    reaches R² 0.95 yet misses the drop in its readings; no figure draws it)."""
    return f"{fit.law}, R² {fit.r2:.2f}" if fit.law in ("exponential", "power") else fit.describe()


def _steepest_drop(depths: list[int], values: list[float]) -> tuple[int, int, float, float]:
    """The two neighbouring depths between which the readings fall most, and the readings there."""
    i = max(range(len(values) - 1), key=lambda i: values[i] - values[i + 1])
    return depths[i], depths[i + 1], values[i], values[i + 1]


def draw(numbers: Path, folder: Path) -> None:
    """The figures from the measured numbers: correlation vs depth (no fitted curve: none describes the control's
    drop), and the deepest nets' profiles."""
    data = json.loads(numbers.read_text())
    depths, results = data["depths"], data["neighbor_corr"]
    folder.mkdir(parents=True, exist_ok=True)
    from matplotlib.figure import Figure

    # two panels: every network, then the two transformers alone on their own range (they differ by thousandths,
    # and would sit on top of each other on the first panel's scale)
    fig = Figure(figsize=(11.0, 3.9), layout="constrained")
    every, zoom = fig.subplots(1, 2)
    plot_depth_curves({_label(n): (depths, v) for n, v in results.items()}, ax=every,
                      title="transformer encoders at init: a line in embedding space")  # fmt: skip
    transformers = {n: (depths, v) for n, v in results.items() if n not in LABELS}
    plot_depth_curves(transformers, ax=zoom, title="the two transformers on their own scale")
    fig.savefig(folder / "neighbor_corr_vs_depth.png", dpi=110)
    for name, profile in data["profiles"].items():
        fig = plot_depth_profile(
            F.DepthProfile(**profile),
            title=f"{_label(name)}, depth {depths[-1]}, per block",
            token_kernel=data.get("token_profiles", {}).get(name),
        )
        fig.savefig(folder / f"profile_{_slug(name)}{depths[-1]}.png", dpi=110)


def section(numbers: Path) -> str:
    """The docs section from the measured numbers (``docs/results/transformer_at_init.json``)."""
    data = json.loads(numbers.read_text())
    depths, results, seeds = data["depths"], data["neighbor_corr"], data["seeds"]
    fits = _fits(depths, results)
    lines = [
        f"Machine: {data['machine']}. `python examples/shattering_in_a_transformer.py --seeds {seeds} --doc`: "
        f"{POINTS}-point line between two random {TOKENS}-token sequences' embeddings (width {WIDTH}), "
        "gradient of a fixed random projection of the output w.r.t. each point, PyTorch's default init, "
        f"eval mode, float64; median over {seeds} seeds (weights, tokens).",
        "",
        "| network | " + " | ".join(f"depth {d}" for d in depths) + " | best decay fit (R² in log space) |",
        "|---|" + "---|" * (len(depths) + 1),
    ]
    for name, values in results.items():
        lines.append(f"| {_label(name)} | " + " | ".join(f"{v:.3f}" for v in values) + f" | {_best_fit(fits[name])} |")
    token_rows = data.get("token_kernel", {})  # runs from before the token kernel have none
    if token_rows:
        lines += [
            "",
            "The token kernel of the last block at the line's two ends (the mean cosine between the 16 tokens of "
            "one sequence; 1: every token points the same way), median over the seeds:",
            "",
            "| network | " + " | ".join(f"depth {d}" for d in depths) + " |",
            "|---|" + "---|" * len(depths),
            *[f"| {_label(name)} | " + " | ".join(f"{v:.3f}" for v in row) + " |" for name, row in token_rows.items()],
        ]
    deepest = {name: values[-1] for name, values in results.items()}
    lines += [
        "",
        f"At depth {depths[-1]} the input gradient along the embedding line keeps a neighbor correlation of "
        f"{deepest['post-LN']:.3f} (post-LN) and {deepest['pre-LN']:.3f} (pre-LN); across depths {depths[0]} to "
        f"{depths[-1]} both stay within a range of {_spread(results['post-LN'] + results['pre-LN']):.3f}: neither "
        "transformer shatters with depth at initialization on this probe. The skip-free ReLU MLP on the "
        f"same probe (the control) falls from {results['MLP control'][0]:.3f} to {deepest['MLP control']:.3f}, "
        "most of it between depths {} and {} ({:.3f} to {:.3f}), so the probe does see shattering where it "
        "happens; no decay law is claimed for it: its best fit in log space ({}) misses that drop. It decays more "
        "slowly than a single-output net would; the mean-pooling over 16 tokens may be why, which this script "
        "does not test.".format(*_steepest_drop(depths, results["MLP control"]), _best_fit(fits["MLP control"])),
        "",
        "![neighbor correlation vs depth](figures/transformer_at_init/neighbor_corr_vs_depth.png)",
        *[
            f"![{_label(name)} profile](figures/transformer_at_init/profile_{_slug(name)}{depths[-1]}.png)"
            for name in results
        ],
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"transformer-at-init": lambda: section(REPO / "docs" / "results" / "transformer_at_init.json")}


if __name__ == "__main__":
    main()
