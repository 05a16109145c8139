"""CIFAR-10 depth sweep: do skip-free nets train as depth grows? (He et al. 2016; Balduzzi et al. 2017)

    python examples/depth_sweep.py --preset cpu-600      # about an hour on 2 CPU cores (the current CPU study)
    python examples/depth_sweep.py --preset cpu-1200     # 1,200 steps at depths 56/110: about an hour
    python examples/depth_sweep.py --preset cpu-budget   # the older 300-step CPU study
    python examples/depth_sweep.py --preset gpu-deep     # depths 56/110, all 50k images: ~10 min on one H100
    python examples/depth_sweep.py --preset gpu-seeded --seeds 0,1   # ll_slim vs cifar_resnet at 110 (GPU)
    python examples/depth_sweep.py --preset gpu-tat --seeds 0        # tat_slim, tat_plain, ResNet at 200, 110
    python examples/depth_sweep.py --preset gpu-long --seeds 0       # the long study's families at 110, 200 (GPU)
    python examples/depth_sweep.py --preset full         # the full recipe (GPU): 160 epochs per run
    python examples/depth_sweep.py --preset tiny --data digits   # seconds: checks the logic

Trains every family x depth with the recipe of ``timm_ll.app.training`` (SGD momentum 0.9,
Nesterov, weight decay 5e-4, one-cycle LR, random crop + flip, batch 128; peak LR and
warm-up from ``--lr`` / ``--warmup``, by default ``Recipe``'s) with the ShatteringMonitor
attached (per-block profile, log-spaced start, then every tenth of the run), and reports
test error. With ``--equal-time``, each family of ``--equal-time-families`` is also trained
for as many steps as fit in the wall-clock time its LL twin took (LL costs about 2x per
step). Results, including the monitor's measurements, are appended to ``--results`` (JSON
lines) after every run, so an interrupted sweep resumes where it stopped; ``--doc`` writes
the table into docs/REPRODUCTION.md. ``examples/shattering_during_training.py`` draws the
monitor's measurements.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import asdict
from pathlib import Path

from timm_ll.app.reporting import (
    append_result,
    budget_of,
    error_points,
    format_reading,
    machine,
    machines_of,
    model_kwargs_of,
    monitor_summary,
    provenance,
    read_results,
    recipe_of,
    seed_of,
    write_section,
)

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    # train images (None: all), epochs (None: use steps), steps, families, depths
    "cpu-600": dict(
        train_subset=10_000, epochs=None, steps=600, families="ll_plain,cifar_resnet,plain", depths="20,56,110"
    ),
    # twice the steps at depths 56/110: does LL's lead at depth hold, and does ResNet-110's deficit shrink?
    "cpu-1200": dict(train_subset=10_000, epochs=None, steps=1200, families="cifar_resnet,ll_plain", depths="56,110"),
    "cpu-budget": dict(
        train_subset=10_000,
        epochs=None,
        steps=300,
        families="ll_plain,plain,cifar_resnet,crelu_plain",
        depths="20,56,110",
    ),
    # depth 110 first: the headline pair comes back even if the lease ends before depth 56
    "gpu-deep": dict(train_subset=None, epochs=10, steps=None, families="ll_plain,cifar_resnet", depths="110,56"),
    # the seeded equal-compute pair at depth 110 (with --seeds): seed by seed, so each finished seed is a pair
    "gpu-seeded": dict(train_subset=None, epochs=10, steps=None, families="ll_slim,cifar_resnet", depths="110"),
    # the tailored-rectifier families beside the ResNet, depth 200 first (where LL falls behind), then 110
    "gpu-tat": dict(
        train_subset=None, epochs=10, steps=None, families="tat_slim,tat_plain,cifar_resnet", depths="200,110"
    ),
    # all 50k training images for 10 epochs (3,900 steps of 128: the gpu-seeded and gpu-tat budget) on the CPU,
    # with the study's recipe, fixed before any run: does a skip-free net gain from depth where a ResNet does?
    # tat_slim (the depth-200 winner) is the family the targets are about, ll_slim beside it (examples/long_study.sh)
    "cpu-long": dict(train_subset=None, epochs=10, steps=None, families="cifar_resnet,tat_slim", depths="20,110"),
    # the same budget on a GPU (benchmarks/device_run.sh, PRESET=gpu-long): the three families of the long study at
    # 110, then 200, which the CPU cannot reach at this budget
    "gpu-long": dict(
        train_subset=None, epochs=10, steps=None, families="cifar_resnet,tat_slim,ll_slim", depths="110,200"
    ),
    "gpu-budget": dict(
        train_subset=None, epochs=6, steps=None, families="ll_plain,plain,cifar_resnet,crelu_plain", depths="20,56,110"
    ),
    "full": dict(
        train_subset=None,
        epochs=160,
        steps=None,
        families="ll_plain,plain,cifar_resnet,crelu_plain",
        depths="20,56,110",
    ),
    # the logic in seconds: a small probe (2 lines of 16 points; the monitor's default is 4 of 64), measured at
    # steps 0, 1, 2, 5 and 10 (every half of the run, not every tenth: 10% is still step 1)
    "tiny": dict(
        train_subset=500,
        epochs=None,
        steps=10,
        families="ll_plain,cifar_resnet",
        depths="8",
        monitor=dict(num_lines=2, num_points=16),
        monitor_every=5,
    ),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from timm_ll.app.training import Recipe

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-600")
    parser.add_argument("--families", default=None, help="comma-separated (default: the preset's)")
    parser.add_argument("--depths", default=None, help="comma-separated (default: the preset's)")
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"),
        help="CIFAR-10 in train/<class>/*.jpg, test/<class>/*.jpg layout (zip or folder), or 'digits'",
    )
    parser.add_argument(
        "--seeds",
        default="0",
        help="comma-separated seeds; a seed varies the init, the data order and the monitor's lines (the "
        "training subset stays fixed); rows of older sweeps, which name none, are seed 0",
    )
    parser.add_argument(
        "--model-kwargs",
        type=json.loads,
        default={},
        help='JSON of extra timm.create_model keywords, e.g. \'{"orthogonal": "delta"}\'; part of a run\'s identity',
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=Recipe.lr, help="peak learning rate")
    parser.add_argument("--warmup", type=float, default=Recipe.warmup_fraction, help="one-cycle warm-up fraction")
    parser.add_argument(
        "--equal-time",
        action="store_true",
        help="also train --equal-time-families for the wall-clock time of the ll_plain run of the same depth",
    )
    parser.add_argument("--equal-time-families", default="cifar_resnet,plain")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "timm-ll-depth-sweep",
        help="logs, checkpoints and (by default) the results file; outside the repository unless asked",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON lines file (default: <out>/<preset>.jsonl)")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="train through torch.compile (benchmarks/compile_pays.py says whether it pays for a run's length)",
    )
    parser.add_argument("--doc", action="store_true", help="write the results table into docs/REPRODUCTION.md")
    return parser.parse_args(argv)


def run_sweep(args: argparse.Namespace) -> list[dict]:
    """Train every family x depth (then the equal-time runs); return all rows of the results file."""
    import time

    from timm_ll.app.data import load_source
    from timm_ll.app.training import balanced_subset

    preset = PRESETS[args.preset]
    results_path = args.results or args.out / f"{args.preset}.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_results(results_path)
    start = time.perf_counter()
    train, test = load_source(args.data, "train"), load_source(args.data, "test")
    print(f"decoded {len(train)} train / {len(test)} test images in {time.perf_counter() - start:.1f} s", flush=True)
    if preset["train_subset"]:
        train = balanced_subset(train, preset["train_subset"])
    steps = preset["steps"] or round(preset["epochs"] * (len(train) // args.batch_size))
    depths = [int(d) for d in (args.depths or preset["depths"]).split(",")]
    families = (args.families or preset["families"]).split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    # seed by seed within a depth: every finished seed is a complete set of paired runs
    for depth in depths:
        for seed in seeds:
            for family in families:
                _run_once(args, rows, results_path, train, test, family, depth, steps, "equal-steps", seed)
    if args.equal_time:
        by = {(r["model"], budget_of(r), seed_of(r)): r for r in rows}
        for depth in depths:
            for seed in seeds:
                reference = by.get((f"ll_plain{depth}", "equal-steps", seed))
                for family in args.equal_time_families.split(","):
                    twin = by.get((f"{family}{depth}", "equal-steps", seed))
                    if reference is None or twin is None:
                        continue
                    # as many steps as fit in the LL run's wall-clock time, at this family's measured pace
                    run_steps = max(1, round(twin["steps"] * reference["seconds"] / twin["seconds"]))
                    _run_once(args, rows, results_path, train, test, family, depth, run_steps, "equal-time", seed)
    return rows


def _run_once(args, rows, results_path, train, test, family, depth, steps, budget, seed) -> None:
    from timm_ll.app.training import Recipe, fit_and_test

    name = f"{family}{depth}"
    recipe = Recipe(lr=args.lr, warmup_fraction=args.warmup)
    recipe_key = dict(lr=recipe.lr, warmup_fraction=recipe.warmup_fraction)
    kwargs = args.model_kwargs
    # a run is its model, budget, seed, recipe and create_model keywords: a doubled-LR run, or ll_slim200 with
    # orthogonal="delta", is not the run already done
    if any(
        r["model"] == name
        and budget_of(r) == budget
        and seed_of(r) == seed
        and recipe_of(r) == recipe_key
        and model_kwargs_of(r) == kwargs
        and r.get("preset", args.preset) == args.preset
        for r in rows
    ):
        return  # resumed: done in an earlier run of the sweep
    result = fit_and_test(
        name,
        train,
        test,
        max_steps=steps,
        batch_size=args.batch_size,
        recipe=recipe,
        out_dir=str(args.out / args.preset),
        accelerator=args.accelerator,
        # log-spaced start (0, 1, 2, 5, 10, ...), then every tenth of the run: 10% is one of the steps
        monitor_every=PRESETS[args.preset].get("monitor_every", max(1, steps // 10)),
        monitor_options=PRESETS[args.preset].get("monitor"),
        progress=False,
        compile=args.compile,
        seed=seed,
        model_kwargs=kwargs or None,
        # the run's folder says what it is (never a version_N that another day's run reuses), and a run cut off
        # (a session's end) resumes from its last end-of-epoch checkpoint there
        run_name=run_folder(seed, recipe_key, kwargs, budget, steps),
        resume=True,
    )
    # paths relative to --out: a committed results file names no folder of the machine
    paths = {
        key: None if value is None else str(Path(value).resolve().relative_to(args.out.resolve()))
        for key, value in (("log_dir", result.log_dir), ("checkpoint", result.checkpoint), ("export", result.export))
    }
    row = dict(
        asdict(result),
        **paths,
        model=name,
        family=family,
        depth=depth,
        preset=args.preset,
        budget=budget,
        recipe=recipe_key,
        train_images=len(train),
        batch_size=args.batch_size,
        compiled=args.compile,
        model_kwargs=kwargs,
        machine=machine(),
        provenance=provenance(result.precision),
    )
    rows.append(append_result(results_path, row))
    print(
        f"{name} ({budget}, {steps} steps, seed {seed}): "
        f"test accuracy {100 * result.test_acc:.2f}% in {result.seconds:.0f} s",
        flush=True,
    )


def run_folder(seed: int, recipe: dict, kwargs: dict, budget: str, steps: int) -> str:
    """A run's folder name under ``<out>/<preset>/<model>/``: its seed, recipe, keywords and (equal-time) steps."""
    parts = [f"seed{seed}", f"lr{recipe['lr']:g}", f"warmup{recipe['warmup_fraction']:g}"]
    parts += [f"{key}={value}" for key, value in sorted(kwargs.items())]
    if budget != "equal-steps":
        parts.append(f"{budget}-{steps}steps")
    return "-".join(parts)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows = run_sweep(args)
    if args.doc:
        write_doc(rows, args.preset)


def table(rows: list[dict]) -> list[str]:
    """Test error per family (rows) and depth (columns), equal-step runs; equal-time runs below their family."""
    depths = sorted({r["depth"] for r in rows})
    by = {(family_label(r), r["depth"], budget_of(r)): r for r in rows}
    lines = ["| family | " + " | ".join(f"depth {d}" for d in depths) + " |", "|---|" + "---|" * len(depths)]
    for family in dict.fromkeys(family_label(r) for r in rows):
        for budget in ("equal-steps", "equal-time"):
            if not any((family, d, budget) in by for d in depths):
                continue
            cells = []
            for d in depths:
                row = by.get((family, d, budget))
                text = "-" if row is None else f"{error_points(row):.2f}%"
                cells.append(text if row is None or budget == "equal-steps" else f"{text} ({row['steps']} steps)")
            label = f"{family} (test error)" if budget == "equal-steps" else f"{family}, LL's wall-clock"
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def family_label(row: dict) -> str:
    """A row's family, with its extra create_model keywords where it has any (``ll_slim (orthogonal=delta)``)."""
    kwargs = model_kwargs_of(row)
    return row["family"] + (f" ({', '.join(f'{k}={v}' for k, v in sorted(kwargs.items()))})" if kwargs else "")


def section(rows: list[dict], preset: str) -> str:
    """The docs section of a sweep: its setting, the table of test error per family and depth, the wall times."""
    first = rows[0]
    recipe = first.get("recipe")
    lines = [
        f"Preset `{preset}`: {first['train_images']} training images, {first['steps']} steps of batch "
        f"{first['batch_size']} per run"
        + (f", peak LR {recipe['lr']}, warm-up {recipe['warmup_fraction']}" if recipe else "")
        + f", full 10,000-image test set. Machine: {machines_of(rows)}.",
        "",
        *table(rows),
        "",
        "Wall time per run (s): " + ", ".join(f"{_run_label(r)} {r['seconds']:.0f}" for r in rows) + ".",
    ]
    monitored = [r for r in rows if r.get("shattering")]
    if monitored:
        lines += ["", "What the monitor read (input-level neighbour correlation; the steps in parentheses):", ""]
        lines += [_monitor_line(r) for r in monitored]
    return "\n".join(lines)


def _run_label(row: dict) -> str:
    """A run's name in a block: its model, marked when it is an equal-time run."""
    return f"{row['model']}{' (equal time)' if budget_of(row) == 'equal-time' else ''}"


def _monitor_line(row: dict) -> str:
    summary = monitor_summary(row)
    if summary.lowest is None:
        after = "no reading after it"
    else:
        after = f"after it from {format_reading(summary.lowest)} to {format_reading(summary.highest)}"
    return f"- {_run_label(row)}: {summary.init:.3f} at init; {after}; {summary.end:.3f} at the end."


def write_doc(rows: list[dict], preset: str) -> None:
    """Write the sweep's section into docs/REPRODUCTION.md."""
    write_section(REPO / "docs" / "REPRODUCTION.md", f"sweep-{preset}", section(rows, preset))


def _committed_sweeps() -> dict[str, Path]:
    """Preset -> its committed results file (the seeded study has its own report: ``seeded_report.py``)."""
    files = (REPO / "docs" / "results").glob("depth_sweep_*.jsonl")
    return {f.stem.removeprefix("depth_sweep_"): f for f in files if not f.stem.endswith("-seeded")}


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    f"sweep-{preset}": (lambda path=path, preset=preset: section(read_results(path), preset))
    for preset, path in _committed_sweeps().items()
}


if __name__ == "__main__":
    main()
