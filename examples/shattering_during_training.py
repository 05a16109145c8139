"""How does shattering evolve during training, block by block? Drawn from a depth sweep's monitor readings.

    python examples/depth_sweep.py --preset cpu-600 --results docs/results/depth_sweep_cpu-600.jsonl
    python examples/shattering_during_training.py docs/results/depth_sweep_cpu-600.jsonl [--doc]

Every run of ``examples/depth_sweep.py`` carries the ShatteringMonitor's measurements (its
``history``: the input-level statistics and each block's neighbour correlation, at a log-spaced
start and then every tenth of the run, plus the trained net at the end). From the equal-step
runs this draws

- a heatmap of per-block neighbour correlation (block x measured step) for each family at
  each chosen depth, and the input-level neighbour correlation and effective rank vs step;
- a table of the input-level statistics at init, at 10% of training and at the end;
- a scatter, over all runs, of the early (10%) input-level neighbour correlation against the
  final test error, with Spearman's rank correlation.

``--doc`` writes the figures to docs/figures/ and the table into docs/REPRODUCTION.md.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from timm_ll.app.reporting import error_points, format_reading, input_statistic, monitor_summary

REPO = Path(__file__).resolve().parents[1]


def load_runs(results: Path) -> list[dict]:
    """The equal-step runs of a depth-sweep results file that carry monitor measurements."""
    from timm_ll.app.reporting import budget_of, read_results

    rows = read_results(results)
    runs = [r for r in rows if budget_of(r) == "equal-steps" and r.get("shattering")]
    if not runs:
        raise SystemExit(
            f"{results}: no run with monitor measurements; make one with examples/depth_sweep.py "
            "(its rows carry the monitor's history under 'shattering')"
        )
    return runs


def reading(run: dict, fraction: float) -> dict:
    """The measurement nearest to ``fraction`` of the run (0: init, 1: the trained net)."""
    target = fraction * run["steps"]
    return min(run["shattering"], key=lambda entry: abs(entry["step"] - target))


def block_mean(entry: dict) -> float:
    """Neighbour correlation averaged over the blocks (each block's output gradient)."""
    layers = [value for value in entry["layers"].values() if math.isfinite(value)]
    return sum(layers) / len(layers) if layers else math.nan


def spearman(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """Spearman's rank correlation and its two-sided p-value (scipy), over the finite pairs."""
    from scipy.stats import spearmanr

    pairs = [(x, y) for x, y in zip(xs, ys) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return math.nan, math.nan
    result = spearmanr(*zip(*pairs))
    return float(result.statistic), float(result.pvalue)


def table(runs: list[dict]) -> list[str]:
    lines = [
        "| run | test error | input corr: init / 10% / end | input corr after init: lowest / highest (step) "
        "| mean block corr: init / 10% / end | effective rank: init / 10% / end |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        entries = [reading(run, f) for f in (0.0, 0.1, 1.0)]
        corr = " / ".join(f"{input_statistic(e):.3f}" for e in entries)
        summary = monitor_summary(run)
        extremes = " / ".join(format_reading(r) for r in (summary.lowest, summary.highest))
        deep = " / ".join(f"{block_mean(e):.3f}" for e in entries)
        rank = " / ".join(f"{input_statistic(e, 'effective_rank'):.1f}" for e in entries)
        lines.append(f"| {run['model']} | {error_points(run):.1f}% | {corr} | {extremes} | {deep} | {rank} |")
    return lines


def plot_heatmaps(runs: list[dict], depths: list[int]):
    from matplotlib.figure import Figure

    from lightning_callbacks.plotting import plot_block_heatmap

    families = list(dict.fromkeys(r["family"] for r in runs))
    by = {(r["family"], r["depth"]): r for r in runs}
    fig = Figure(figsize=(4.2 * len(families), 3.4 * len(depths)), layout="constrained")
    axes = fig.subplots(len(depths), len(families), squeeze=False)
    for row, depth in enumerate(depths):
        for col, family in enumerate(families):
            ax, run = axes[row][col], by.get((family, depth))
            if run is None:
                ax.set_axis_off()
                continue
            error = error_points(run)
            plot_block_heatmap(
                run["shattering"],
                ax=ax,
                title=f"{run['model']} ({error:.1f}% error)",
                max_labels=8,
                colorbar=False,
                max_step_labels=6,
            )
    # the heatmaps are meshes (columns spaced by step), not images: one shared colour scale for all of them
    image = next((mesh for ax in axes.flat for mesh in ax.collections if mesh.get_array() is not None), None)
    if image is not None:
        fig.colorbar(image, ax=axes, label="neighbor correlation", shrink=0.8)
    return fig


def plot_statistics(runs: list[dict], depths: list[int]):
    from matplotlib.figure import Figure

    from lightning_callbacks.plotting import plot_readings, style_step_axis, unread_legend_entry

    fig = Figure(figsize=(11.5, 3.6), layout="constrained")
    axes = fig.subplots(1, 2)
    unread = False
    for run in (r for r in runs if r["depth"] in depths):
        steps = [e["step"] for e in run["shattering"]]
        style = "-" if run["depth"] == max(depths) else "--"
        for ax, key in zip(axes, ("neighbor_corr", "effective_rank")):
            values = [input_statistic(e, key) for e in run["shattering"]]
            unread |= plot_readings(ax, steps, values, style, marker="o", ms=2.5, label=run["model"])
    handles, labels = axes[0].get_legend_handles_labels()
    if unread:
        handle, label = unread_legend_entry()
        handles.append(handle)
        labels.append(label)
    for ax, label, unit in zip(
        axes,
        ("input-level neighbor correlation", "effective rank of the input gradients"),
        ("neighbor correlation (mean of the lines)", "effective rank (of 64 points; mean of the lines)"),
    ):
        style_step_axis(ax, "training step")
        ax.set_title(label, fontsize="medium")
        ax.set_ylabel(unit)
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    return fig


def plot_early_vs_final(runs: list[dict], rho: float, pvalue: float):
    """Final test error against the early input-level reading: a colour a family, a marker a depth (no text
    labels, which overlap where runs sit close)."""
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    fig = Figure(figsize=(6.2, 4.0), layout="constrained")
    ax = fig.subplots()
    families = list(dict.fromkeys(r["family"] for r in runs))
    depths = sorted({r["depth"] for r in runs})
    markers = dict(zip(depths, ("o", "s", "^", "D", "v", "P")))
    for index, family in enumerate(families):
        for r in (r for r in runs if r["family"] == family):
            x, y = input_statistic(reading(r, 0.1)), error_points(r)
            ax.scatter([x], [y], color=f"C{index}", marker=markers[r["depth"]], s=46, edgecolor="black", lw=0.5)
    ax.set_xlabel("input-level neighbor correlation at 10% of training")
    ax.set_ylabel("final test error (%)")
    ax.set_title(f"Spearman rho = {rho:.2f} (p = {pvalue:.2g}, n = {len(runs)})", fontsize="medium")
    family_handles = [Line2D([], [], ls="", marker="o", color=f"C{i}", label=f) for i, f in enumerate(families)]
    depth_handles = [Line2D([], [], ls="", marker=markers[d], color="gray", label=f"depth {d}") for d in depths]
    fig.legend(handles=[*family_handles, *depth_handles], loc="outside right upper", fontsize="small")
    return fig


FIGURES = ("heatmaps", "statistics", "early_vs_final")


def _early_vs_error(runs: list[dict]) -> tuple[float, float]:
    """Spearman's rho (and p) between the input-level neighbor correlation at 10% of training and test error."""
    return spearman([input_statistic(reading(r, 0.1)) for r in runs], [1 - r["test_acc"] for r in runs])


def draw(results: Path, out: Path, depths: list[int] | None = None) -> dict[str, Path]:
    """Draw the three figures of a depth sweep's monitor readings into ``out``; return their paths."""
    runs = load_runs(results)
    depths = depths or sorted({r["depth"] for r in runs})[-2:]
    out.mkdir(parents=True, exist_ok=True)
    figures = dict(
        heatmaps=plot_heatmaps(runs, depths),
        statistics=plot_statistics(runs, depths),
        early_vs_final=plot_early_vs_final(runs, *_early_vs_error(runs)),
    )
    paths = {}
    for name, fig in figures.items():
        paths[name] = out / f"shattering_during_training_{name}.png"
        fig.savefig(paths[name], dpi=110)
    return paths


def section(results: Path) -> str:
    """The docs section: the setting, the table of readings, the rank correlation and the figures."""
    runs = load_runs(results)
    rho, pvalue = _early_vs_error(runs)
    first = runs[0]
    lines = [
        f"Machine: {first['machine']}. `python examples/shattering_during_training.py "
        f"docs/results/{results.name} --doc`, from the ShatteringMonitor's readings in each run of the "
        f"sweep ({first['steps']} steps; 4 lines x 64 points between training images, eval-mode BN). "
        "'10%' is the measurement nearest step "
        f"{round(0.1 * first['steps'])}. A block's correlation is that of the gradient at its output: near the "
        "head (pool + linear) it is 1 by construction, and it falls towards the input as the gradient crosses "
        "more blocks; 'mean block' averages the blocks.",
        "",
        *table(runs),
        "",
        f"Early (10%) input-level neighbour correlation vs final test error, over the {len(runs)} runs: "
        f"Spearman rho = {rho:.2f} (p = {pvalue:.2g}).",
        "",
        *(f"![{name}](figures/shattering_during_training_{name}.png)" for name in FIGURES),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from timm_ll.app.reporting import write_section

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a depth-sweep results file (JSON lines)")
    parser.add_argument(
        "--depths", default=None, help="comma-separated depths of the heatmaps (default: the two deepest)"
    )
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "timm-ll-shattering-during-training")
    parser.add_argument("--doc", action="store_true", help="figures to docs/figures, table to docs/REPRODUCTION.md")
    args = parser.parse_args(argv)
    depths = [int(d) for d in args.depths.split(",")] if args.depths else None
    out = REPO / "docs" / "figures" if args.doc else args.out
    draw(args.results, out, depths)
    text = section(args.results)
    print(text)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "shattering-during-training", text)
    else:
        print(f"figures in {out}")


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"shattering-during-training": lambda: section(REPO / "docs" / "results" / "depth_sweep_cpu-600.jsonl")}


if __name__ == "__main__":
    main()
