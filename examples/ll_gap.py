"""Where does the LL net lose accuracy? Seed spread and the candidate causes, at depth 56 and the CPU budget.

    python examples/ll_gap.py --data path/to/cifar10 [--doc]   # about 15 minutes on 2 CPU cores
    python examples/ll_gap.py --preset tiny --data digits      # seconds: checks the logic

An independent LL implementation (issue 12) scored about 7 points better than ``ll_plain56``
in its own training loop. The candidates it named are the stem, the head, the init scale and
the norm placement. Read against this package's code, its net is ours layer for layer (a bare
stem conv, BN -> CReLU -> conv repeated, BN -> CReLU -> pool -> mirrored linear, ``[W0, -W0]``
with ``W0`` orthogonal over the flattened fan-in at gain 1; tests/test_models.py checks the
layer order), so what is left to measure is

- the seed-to-seed spread of one setting (a single run per model cannot resolve less),
- the one recipe difference inside "the same loop" that touches the model's parameters:
  weight decay on the BN scales and shifts too (the independent loop decays every parameter),
- the CReLU recomputation of issue 10 (``set_crelu_recompute(model, False)``: must change nothing).

Every run trains with ``timm_ll.app.training.Recipe``'s defaults on the recipe sweep's training
subset and is scored on its held-out training images (never the test set).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from timm_ll.app.reporting import append_result, machines_of, read_results, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's validation run, beside it

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    # model, training images, validation images, steps, seeds of the reference setting
    "cpu-budget": dict(model="ll_plain56", train=10_000, val=2_000, steps=234, seeds=(0, 1, 2)),
    "tiny": dict(model="ll_plain8", train=200, val=100, steps=2, seeds=(0, 1)),
}
# variant -> (Recipe changes, recompute the CReLU outputs in backward, how many of the preset's seeds)
VARIANTS = {
    "reference": ({}, True, 3),
    "weight decay on BN too": ({"decay_norm_and_bias": True}, True, 2),
    "no CReLU recomputation": ({}, False, 1),  # deterministic on CPU: seed 0 must equal the reference's
}


def run(args: argparse.Namespace) -> list[dict]:
    """Train every variant x seed (resuming from the results file); return all rows."""
    from lightning.pytorch import Callback
    from validation import validation_run

    from timm_ll.app.data import load_source
    from timm_ll.app.training import Recipe, balanced_split
    from timm_ll.layers import set_crelu_recompute

    class KeepCReLUOutputs(Callback):
        """Turn the CReLU recomputation off in the model the training app builds by name."""

        def setup(self, trainer, pl_module, stage: str) -> None:
            set_crelu_recompute(pl_module.model, False)

    preset = PRESETS[args.preset]
    results_path = args.results or args.out / f"ll_gap_{args.preset}.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_results(results_path)
    done = {(r["variant"], r["seed"]) for r in rows}
    train, val = balanced_split(load_source(args.data, "train"), preset["train"], preset["val"])
    for variant, (changes, recompute, n_seeds) in VARIANTS.items():
        for seed in preset["seeds"][:n_seeds]:
            if (variant, seed) in done:
                continue
            recipe = replace(Recipe(), **changes)
            scored = validation_run(
                preset["model"],
                train,
                val,
                max_steps=preset["steps"],
                recipe=recipe,
                out_dir=str(args.out / "runs"),
                seed=seed,
                callbacks=None if recompute else [KeepCReLUOutputs()],
            )
            row = dict(
                variant=variant, seed=seed, model=preset["model"], lr=recipe.lr, warmup=recipe.warmup_fraction, **scored
            )
            rows.append(append_result(results_path, row))
            print(f"{variant}, seed {seed}: validation error {100 * row['val_error']:.1f}%", flush=True)
    return rows


def summary(rows: list[dict]) -> list[str]:
    """One table line per variant: each seed's validation error, their median and range."""
    lines = ["| variant | seeds | validation error per seed | median | range |", "|---|---|---|---|---|"]
    for variant in VARIANTS:
        errors = [100 * r["val_error"] for r in rows if r["variant"] == variant]
        if not errors:
            continue
        seeds = ", ".join(str(r["seed"]) for r in rows if r["variant"] == variant)
        per_seed = ", ".join(f"{e:.1f}%" for e in errors)
        spread = f"{max(errors) - min(errors):.1f} points" if len(errors) > 1 else "-"
        lines.append(f"| {variant} | {seeds} | {per_seed} | {statistics.median(errors):.1f}% | {spread} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-budget")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "timm-ll-ll-gap")
    parser.add_argument("--results", type=Path, default=None, help="JSON lines file (default: under --out)")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/REPRODUCTION.md")
    args = parser.parse_args(argv)
    rows = run(args)
    text = section(rows)
    print(text)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", f"ll-gap-{args.preset}", text)


def section(rows: list[dict]) -> str:
    """The docs section of the LL-gap study: its setting and the per-variant table."""
    first = rows[0]
    lines = [
        f"Machine: {machines_of(rows)}. `python examples/ll_gap.py --doc`: {first['model']}, {first['steps']} steps "
        f"of batch 128 on the recipe sweep's {first['train_images']}-image subset, peak LR {first['lr']}, warm-up "
        f"{first['warmup']}; validation error on {first['val_images']} held-out training images.",
        "",
        *summary(rows),
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    f"ll-gap-{path.stem.removeprefix('ll_gap_')}": (lambda path=path: section(read_results(path)))
    for path in (REPO / "docs" / "results").glob("ll_gap_*.jsonl")
}


if __name__ == "__main__":
    main()
