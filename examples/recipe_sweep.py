"""Which recipe trains deep nets best at a fixed CPU budget? Peak LR x warm-up, chosen on validation data.

    python examples/recipe_sweep.py --data path/to/cifar10 [--doc]     # about an hour on 2 CPU cores
    python examples/recipe_sweep.py --preset tiny --data digits       # seconds: checks the logic

For ``ll_plain56`` and ``cifar_resnet56`` (the cpu-budget setting: a fixed class-balanced
10,000-image training subset, 234 steps of batch 128) every peak LR of ``--lrs`` is crossed
with every warm-up fraction of ``--warmups`` in the one-cycle schedule of
``timm_ll.app.training.Recipe``. Each run is scored on a held-out, class-balanced part of the
*training* split that the subset does not contain, never on the test set. Results are appended
to a JSON lines file after every run (an interrupted sweep resumes); ``--doc`` writes the table
and the winner of each family into docs/REPRODUCTION.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from timm_ll.app.reporting import append_result, machines_of, read_results, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study's validation run, beside it

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    # models, training images, validation images, steps
    "cpu-budget": dict(models=("ll_plain56", "cifar_resnet56"), train=10_000, val=2_000, steps=234),
    "tiny": dict(models=("ll_plain8", "cifar_resnet8"), train=200, val=100, steps=2),
}


def run_sweep(args: argparse.Namespace) -> list[dict]:
    from validation import validation_run

    from timm_ll.app.data import load_source
    from timm_ll.app.training import Recipe, balanced_split

    preset = PRESETS[args.preset]
    results_path = args.results or args.out / f"recipe_sweep_{args.preset}.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_results(results_path)
    done = {(r["model"], r["lr"], r["warmup"]) for r in rows}
    train, val = balanced_split(load_source(args.data, "train"), preset["train"], preset["val"])
    for model in preset["models"]:
        for lr in args.lrs:
            for warmup in args.warmups:
                if (model, lr, warmup) in done:
                    continue
                recipe = Recipe(lr=lr, warmup_fraction=warmup)
                scored = validation_run(
                    model, train, val, max_steps=preset["steps"], recipe=recipe, out_dir=str(args.out / "runs")
                )
                row = dict(model=model, lr=lr, warmup=warmup, **scored)
                rows.append(append_result(results_path, row))
                print(f"{model} lr {lr} warm-up {warmup}: validation error {100 * row['val_error']:.1f}%", flush=True)
    return rows


def winners(rows: list[dict]) -> dict[str, dict]:
    """The lowest-validation-error row of each model."""
    best: dict[str, dict] = {}
    for row in rows:
        if row["model"] not in best or row["val_error"] < best[row["model"]]["val_error"]:
            best[row["model"]] = row
    return best


def _best_text(rows: list[dict], model: str, best: dict) -> str:
    ties = [r for r in rows if r["model"] == model and r["val_error"] == best["val_error"] and r is not best]
    tied = "".join(f" (tied with peak LR {r['lr']}, warm-up {r['warmup']})" for r in ties)
    return f"{model}: peak LR {best['lr']}, warm-up {best['warmup']}{tied}"


def table(rows: list[dict]) -> list[str]:
    models = list(dict.fromkeys(r["model"] for r in rows))
    settings = sorted({(r["lr"], r["warmup"]) for r in rows})
    by = {(r["model"], r["lr"], r["warmup"]): r for r in rows}
    best = winners(rows)
    lines = ["| peak LR | warm-up | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for lr, warmup in settings:
        cells = []
        for model in models:
            row = by.get((model, lr, warmup))
            text = "-" if row is None else f"{100 * row['val_error']:.1f}%"
            tied = row is not None and row["val_error"] == best[model]["val_error"]
            cells.append(f"**{text}**" if tied else text)
        lines.append(f"| {lr} | {warmup} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-budget")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    parser.add_argument("--lrs", type=lambda t: [float(v) for v in t.split(",")], default="0.005,0.01,0.02,0.05,0.1")
    parser.add_argument("--warmups", type=lambda t: [float(v) for v in t.split(",")], default="0.15,0.3")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "timm-ll-recipe-sweep")
    parser.add_argument("--results", type=Path, default=None, help="JSON lines file (default: under --out)")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/REPRODUCTION.md")
    args = parser.parse_args()
    rows = run_sweep(args)
    text = section(rows)
    print(text)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", f"recipe-sweep-{args.preset}", text)


def section(rows: list[dict]) -> str:
    """The docs section of a recipe sweep: its setting, the validation-error table and each model's best."""
    best = winners(rows)
    first = rows[0]
    lines = [
        f"Machine: {machines_of(rows)}. `python examples/recipe_sweep.py --doc`: one-cycle SGD (Nesterov 0.9, "
        f"weight decay 5e-4 on weights), {first['steps']} steps of batch 128 on a class-balanced "
        f"{first['train_images']}-image training subset; **validation error** on {first['val_images']} held-out "
        "training images (never the test set). Bold: each model's best (ties all bold).",
        "",
        *table(rows),
        "",
        "Best: " + "; ".join(_best_text(rows, model, row) for model, row in best.items()) + ".",
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    f"recipe-sweep-{path.stem.removeprefix('recipe_sweep_')}": (lambda path=path: section(read_results(path)))
    for path in (REPO / "docs" / "results").glob("recipe_sweep_*.jsonl")
}


if __name__ == "__main__":
    main()
