"""The readings the verdict's thresholds are chosen from: every block of the timm zoo and of the CIFAR families
at initialization.

    python examples/verdict_at_init.py --data path/to/cifar10-jpeg.zip [--doc]   # about 30 minutes on 2 CPU cores
    python examples/verdict_at_init.py --preset tiny --data digits               # seconds: checks the logic

Each model is created by name at timm's default init and measured as ``timm-ll shatter`` does
(:func:`timm_ll.app.survey.measure_at_init`, eval-mode BN, a line between two real training images), now with
every block: its neighbour correlation, forward kernel and token kernel. Rows are appended to
``docs/results/verdict_at_init.jsonl`` as they come (a rerun skips the models it has); ``--doc`` writes the block
`verdict-at-init` of ``docs/MONITOR.md``: per model the lowest block correlation, the highest forward and token
kernels and where the verdict puts each failure, and the thresholds (``lightning_callbacks.verdict``) against
the readings on either side of them.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the zoo's list and readout rule, beside it

from zoo_at_init import ZOO, zero_head  # noqa: E402

from lightning_callbacks.verdict import COLLAPSED_TOKENS, MERGED_KERNEL, NOISE_CORR, NONE, Verdict, verdict  # noqa: E402
from timm_ll.app.reporting import append_result, machine, machines_of, provenance, read_results, write_section  # noqa: E402

RESULTS = REPO / "docs" / "results" / "verdict_at_init.jsonl"
# the CIFAR families at the depths the main job surveys, and depth 200, where the plain nets shatter
CIFAR = tuple(
    f"{family}{depth}"
    for family in ("plain", "crelu_plain", "ll_plain", "cifar_resnet", "tat_plain", "tat_slim", "ll_slim")
    for depth in (20, 56, 110, 200)
)
PRESETS = {
    "zoo": dict(models=CIFAR + ZOO, points=64),
    "tiny": dict(models=("plain20", "ll_plain20", "vit_tiny_patch16_224"), points=4),
}


def survey(args: argparse.Namespace) -> list[dict]:
    """One row per model (eval-mode BN), with every block's readings and the verdict, appended as they come."""
    from timm_ll.app.data import load_source
    from timm_ll.app.survey import measure_at_init

    preset = PRESETS[args.preset]
    path = args.results or (REPO / "docs" / "results" / f"verdict_at_init_{args.preset}.jsonl")
    rows = read_results(path)
    done = {r["model"] for r in rows}
    data = load_source(args.data, "train")
    for name in preset["models"]:
        if name in done:
            continue
        start = time.perf_counter()
        # as the zoo survey: a zero-initialized classifier is read out from the pre-logits features
        kwargs = {"num_classes": 0} if name in ZOO and zero_head(name) else {}
        row, _ = measure_at_init(name, data, num_points=preset["points"], bn_mode="eval", seed=0, **kwargs)
        row = dict(row, seconds=round(time.perf_counter() - start, 1), machine=machine(), provenance=provenance())
        rows.append(append_result(path, row))
        print(f"{name}: {row['verdict']['line']}", flush=True)
    return rows


def _extreme(row: dict, column: int, highest: bool) -> float:
    values = [b[column] for b in row["blocks"] if isinstance(b[column], float) and math.isfinite(b[column])]
    return (max if highest else min)(values) if values else math.nan


def _verdict(row: dict) -> Verdict:
    """The verdict of a row's block readings at today's thresholds (the row's own was taken at the survey's)."""
    from lightning_callbacks import BlockReading, ShatteringResult

    blocks = [
        BlockReading(name, corr, "measured", kernel, token_kernel=tokens)
        for name, corr, kernel, tokens in row["blocks"]
    ]
    return verdict(ShatteringResult(step=0, statistics={}, blocks=blocks))


def _where(row: dict, key: str) -> str:
    index = getattr(_verdict(row), key)
    return "-" if index == NONE else f"{index}/{len(row['blocks'])}"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| model | blocks | lowest block corr. | highest fwd kernel | highest token kernel | shattered from | "
        "inputs merged from | tokens collapsed from |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {len(row['blocks'])} | {_extreme(row, 1, False):.3f} | {_extreme(row, 2, True):.3f} "
            f"| {_extreme(row, 3, True):.3f} | {_where(row, 'shattered')} | {_where(row, 'inputs_merged')} "
            f"| {_where(row, 'tokens_collapsed')} |"
        )
    return lines


def _nearest(values: list[tuple[float, str]], threshold: float) -> str:
    """The readings on either side of a threshold: the highest below it and the lowest at or above it."""
    below = max(((v, m) for v, m in values if v < threshold), default=None)
    above = min(((v, m) for v, m in values if v >= threshold), default=None)
    say = lambda pair: "none" if pair is None else f"{pair[0]:.4f} ({pair[1]})"  # noqa: E731
    return f"highest below {threshold}: {say(below)}; lowest at or above: {say(above)}"


def threshold_lines(rows: list[dict]) -> list[str]:
    """Each threshold against the per-block readings of every model on either side of it."""
    corr = [(b[1], f"{r['model']} {b[0]}") for r in rows for b in r["blocks"] if math.isfinite(b[1])]
    kernel = [(b[2], f"{r['model']} {b[0]}") for r in rows for b in r["blocks"] if math.isfinite(b[2])]
    tokens = [(b[3], f"{r['model']} {b[0]}") for r in rows for b in r["blocks"] if math.isfinite(b[3])]
    lowest_signal = min(((v, m) for v, m in corr if v > NOISE_CORR), default=None)
    highest_noise = max(((v, m) for v, m in corr if v <= NOISE_CORR), default=None)
    say = lambda pair: "none" if pair is None else f"{pair[0]:.4f} ({pair[1]})"  # noqa: E731
    return [
        f"- Shattered: neighbour correlation <= {NOISE_CORR}. Highest block reading at or below it: "
        f"{say(highest_noise)}; lowest above it: {say(lowest_signal)}.",
        f"- Inputs merged: forward kernel >= {MERGED_KERNEL}. {_nearest(kernel, MERGED_KERNEL)}.",
        f"- Tokens collapsed: token kernel >= {COLLAPSED_TOKENS}. {_nearest(tokens, COLLAPSED_TOKENS)}.",
    ]


def section(rows: list[dict], points: int) -> str:
    return "\n".join(
        [
            f"Machine: {machines_of(rows)}. `python examples/verdict_at_init.py --doc`: {len(rows)} models at "
            f"timm's default init, eval-mode BN, a {points}-point line between two CIFAR-10 training images (upscaled "
            'to each model\'s input size), every block (`blocks="auto"`); where a failure first shows is a block '
            "index out of the model's blocks, in forward order (- where it does not).",
            "",
            *table(rows),
            "",
            "The thresholds of `lightning_callbacks.verdict` against every block reading above:",
            "",
            *threshold_lines(rows),
        ]
    )


DOC_BLOCKS = {"verdict-at-init": lambda: section(read_results(RESULTS), PRESETS["zoo"]["points"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    parser.add_argument("--preset", choices=sorted(PRESETS), default="zoo")
    parser.add_argument("--results", type=Path, default=None, help="JSON-lines file (default: per preset)")
    parser.add_argument("--doc", action="store_true", help="write the block into docs/MONITOR.md")
    args = parser.parse_args()
    if args.doc and args.results is None:
        args.results = RESULTS
    rows = survey(args)
    text = section(rows, PRESETS[args.preset]["points"])
    if args.doc:
        write_section(REPO / "docs" / "MONITOR.md", "verdict-at-init", text)
    print(text)


if __name__ == "__main__":
    main()
