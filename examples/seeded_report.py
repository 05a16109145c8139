"""Tables of the seeded CPU study (``examples/seeded_study.sh``): mean ± sd over seeds, and paired differences.

    python examples/seeded_report.py docs/results/depth_sweep_cpu-600-seeded.jsonl [--doc]

For every depth: each family's test error as mean ± sample sd over its seeds, and each family's
difference from ``cifar_resnet`` of the same depth, paired by seed (the same seed gives both nets
the same data order), as a mean with a two-sided 95% t-interval over the pairs. With two or three
pairs the interval is wide: it says which differences the seeds can resolve, not more. ``--doc``
writes the tables into docs/REPRODUCTION.md (section ``seeded-study``).
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections import defaultdict
from pathlib import Path

from timm_ll.app.reporting import budget_of, read_results, seed_of, write_section

REPO = Path(__file__).resolve().parents[1]
REFERENCE = "cifar_resnet"


def t_quantile(df: int, level: float = 0.975) -> float:
    """The ``level`` quantile of Student's t with ``df`` degrees of freedom (scipy, the examples extra)."""
    from scipy.stats import t

    return float(t.ppf(level, df))


def paired_interval(differences: list[float]) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of paired differences and its two-sided 95% t-interval (NaN bounds
    with fewer than two pairs)."""
    mean = statistics.fmean(differences)
    if len(differences) < 2:
        return mean, math.nan, math.nan
    half = t_quantile(len(differences) - 1) * statistics.stdev(differences) / math.sqrt(len(differences))
    return mean, mean - half, mean + half


def errors_by_cell(rows: list[dict]) -> dict[tuple[int, str], dict[int, float]]:
    """Test error (in points) per (depth, family) and seed, equal-step runs only."""
    cells: dict[tuple[int, str], dict[int, float]] = defaultdict(dict)
    for row in rows:
        if budget_of(row) == "equal-steps":
            cells[(row["depth"], row["family"])][seed_of(row)] = 100 * (1 - row["test_acc"])
    return cells


def tables(rows: list[dict]) -> list[str]:
    """Markdown: per depth, mean ± sd per family, and the paired differences from the ResNet."""
    cells = errors_by_cell(rows)
    lines = [
        "| depth | family | seeds | test error, mean ± sd | minus cifar_resnet, paired by seed (95% interval) |",
        "|---|---|---|---|---|",
    ]
    for depth, family in sorted(cells, key=lambda key: (key[0], key[1] != REFERENCE, key[1])):
        errors = cells[(depth, family)]
        values = [errors[s] for s in sorted(errors)]
        spread = f" ± {statistics.stdev(values):.2f}" if len(values) > 1 else ""
        reference = cells.get((depth, REFERENCE), {})
        pairs = [errors[s] - reference[s] for s in sorted(errors) if s in reference]
        if family == REFERENCE or not pairs:
            paired = "-"
        else:
            mean, low, high = paired_interval(pairs)
            interval = f" [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else " (one pair)"
            paired = f"{mean:+.2f}{interval} over {len(pairs)}"
        seeds = ", ".join(map(str, sorted(errors)))
        lines.append(f"| {depth} | {family} | {seeds} | {statistics.fmean(values):.2f}%{spread} | {paired} |")
    return lines


def main(argv: list[str] | None = None) -> list[str]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path)
    parser.add_argument("--doc", action="store_true", help="write the tables into docs/REPRODUCTION.md")
    args = parser.parse_args(argv)
    rows = read_results(args.results)
    if not rows:
        parser.error(f"{args.results}: no runs yet; run examples/seeded_study.sh first")
    relative = (
        args.results.resolve().relative_to(REPO) if args.results.resolve().is_relative_to(REPO) else args.results.name
    )
    lines = [
        f"Machine: {rows[0]['machine']}. `python examples/seeded_report.py {relative} --doc`, from "
        f"{len(rows)} runs of `examples/seeded_study.sh` (600 steps of batch 128 on the fixed 10k subset, full "
        "test set, the default recipe). A seed varies the init, the data order and the monitor's lines.",
        "",
        *tables(rows),
    ]
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "seeded-study", "\n".join(lines))
    print("\n".join(lines))
    return lines


if __name__ == "__main__":
    main()
