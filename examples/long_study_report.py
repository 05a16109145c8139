"""The long study's report (``examples/long_study.sh``; docs/REPRODUCTION.md section k, block ``long-study``).

    python examples/long_study_report.py [docs/results/depth_study_cpu-long.jsonl] [--doc]

From the ``cpu-long`` rows (all 50k training images, 10 epochs): each family's test error per depth as mean ± sd
and its difference from the ResNet of its depth paired by seed (the tables of ``seeded_report.py``); whether each
family gains from depth (110 against 20, paired by seed), the ResNet included; the targets stated before the runs;
equal wall-clock beside equal steps (from the ``step-times`` block, never the rows' ``seconds``); the curves; what
the monitor read and whether its readings rank the final errors. From the ``cpu-600`` rows with
``orthogonal="delta"``: the init ablation, beside the seeded study's flattened ``ll_slim200`` and delta
``tat_slim200`` rows of the same seeds. It also lists the planned runs that have not landed yet, so the block says
how complete its data is. ``--doc`` writes the block and the curves figure into docs/.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling report whose tables this one shares

from seeded_report import (  # noqa: E402
    REFERENCE,
    errors_by_cell,
    is_seed_run,
    loss_comparison_lines,
    monitor_lines,
    paired_differences,
    paired_interval,
    plot_curves,
    publish_report,
    tables,
    target_lines,
    wall_clock_lines,
)
from shattering_during_training import spearman  # noqa: E402

from timm_ll.app.reporting import (  # noqa: E402
    error_points,
    machines_of,
    model_kwargs_of,
    monitor_summary,
    read_results,
    seed_of,
)

RESULTS = REPO / "docs" / "results" / "depth_study_cpu-long.jsonl"
SEEDED_RESULTS = REPO / "docs" / "results" / "depth_sweep_cpu-600-seeded.jsonl"
STEP_TIMES = REPO / "docs" / "results" / "step_times.json"
FIGURE = "long_study_curves.png"

LONG_PRESET = "cpu-long"
ABLATION_PRESET = "cpu-600"
DELTA = {"orthogonal": "delta"}  # the ablation's arm: ll_slim's mirror ratio with tat_slim's delta-orthogonal convs
TARGET_FAMILY = "tat_slim"  # named in advance as the skip-free family the targets are about
TARGETS = {110: 1.0}  # points: tat_slim110 within this of cifar_resnet110 (mean of three paired differences)
SHALLOW, DEEP = 20, 110
DEPTH_GAIN_SEEDS = (0, 1)  # the target: the family is better at DEEP than at SHALLOW on each of these seeds

# examples/long_study.sh's runs in its order, as (preset, model, seed, create_model keywords); the report lists those
# not landed yet (tests/test_examples_logic.py checks this against the script)
PLAN: tuple[tuple[str, str, int, dict], ...] = (
    *((LONG_PRESET, f"{family}{depth}", seed, {}) for seed, depth in ((0, 20), (0, 110), (1, 20), (1, 110))
      for family in ("cifar_resnet", "tat_slim")),
    *((ABLATION_PRESET, "ll_slim200", seed, DELTA) for seed in (0, 1)),
    *((LONG_PRESET, f"{family}110", 2, {}) for family in ("cifar_resnet", "tat_slim")),
    *((LONG_PRESET, f"ll_slim{depth}", 0, {}) for depth in (20, 110)),
)  # fmt: skip


def run_key(row: dict) -> tuple[str, str, int, dict]:
    """A row as a :data:`PLAN` entry."""
    return row["preset"], row["model"], seed_of(row), model_kwargs_of(row)


def long_rows(rows: list[dict]) -> list[dict]:
    """The study's 10-epoch runs (the file also holds the ablation's ``cpu-600`` runs)."""
    return [r for r in rows if r["preset"] == LONG_PRESET]


def missing_runs(rows: list[dict]) -> list[str]:
    """The planned runs that have not landed, in the plan's order, e.g. ``"tat_slim110 seed 1"``."""
    landed = [run_key(r) for r in rows]
    return [
        f"{model} seed {seed}" + (f" ({preset}, {json.dumps(kwargs)})" if preset != LONG_PRESET else "")
        for preset, model, seed, kwargs in PLAN
        if (preset, model, seed, kwargs) not in landed
    ]


def depth_gain_lines(rows: list[dict]) -> list[str]:
    """Per family: test error at :data:`DEEP` minus at :data:`SHALLOW`, paired by seed (negative: depth pays), with
    its 95% interval; and the target that :data:`TARGET_FAMILY` is better at depth on seeds 0 and 1."""
    cells, lines = errors_by_cell(rows), []
    families = sorted({f for _, f in cells}, key=lambda f: (f != REFERENCE, f))
    for family in families:
        deep, shallow = cells.get((DEEP, family), {}), cells.get((SHALLOW, family), {})
        seeds = sorted(set(deep) & set(shallow))
        name = f"{family}{DEEP} minus {family}{SHALLOW}"
        if not seeds:
            lines.append(f"- Depth, {name}: no seed has both runs yet.")
            continue
        gains = [deep[s] - shallow[s] for s in seeds]
        mean, low, high = paired_interval(gains)
        if not math.isfinite(low):
            verdict = "one pair gives no interval"
        elif high < 0:
            verdict = f"95% interval [{low:+.2f}, {high:+.2f}]: deeper is better"
        elif low > 0:
            verdict = f"95% interval [{low:+.2f}, {high:+.2f}]: deeper is worse"
        else:
            verdict = f"95% interval [{low:+.2f}, {high:+.2f}] holds zero: no gain or loss resolved"
        per_seed = " / ".join(f"{g:+.2f}" for g in gains)
        lines.append(
            f"- Depth, {name} (seeds {', '.join(map(str, seeds))}): {per_seed} points, mean {mean:+.2f}; {verdict}."
        )
    deep, shallow = cells.get((DEEP, TARGET_FAMILY), {}), cells.get((SHALLOW, TARGET_FAMILY), {})
    per_seed = [
        f"seed {s}: " + (f"{deep[s] - shallow[s]:+.2f}" if s in deep and s in shallow else "not run yet")
        for s in DEPTH_GAIN_SEEDS
    ]
    done = all(s in deep and s in shallow for s in DEPTH_GAIN_SEEDS)
    met = done and all(deep[s] < shallow[s] for s in DEPTH_GAIN_SEEDS)
    verdict = ("met" if met else "missed") if done else "open"
    lines.append(
        f"- Target: {TARGET_FAMILY}{DEEP} better than {TARGET_FAMILY}{SHALLOW} on seeds "
        f"{' and '.join(map(str, DEPTH_GAIN_SEEDS))} ({'; '.join(per_seed)}): {verdict}."
    )
    return lines


def stretch_line(rows: list[dict]) -> str:
    """The stretch target: :data:`TARGET_FAMILY` ahead of the ResNet at :data:`DEEP` (mean paired difference < 0)."""
    pairs = paired_differences(errors_by_cell(rows), DEEP, TARGET_FAMILY)
    name = f"{TARGET_FAMILY}{DEEP} ahead of {REFERENCE}{DEEP}"
    if not pairs:
        return f"- Stretch: {name}: no pair yet."
    mean, low, high = paired_interval(pairs)
    interval = f", 95% interval [{low:+.2f}, {high:+.2f}]" if math.isfinite(low) else ""
    resolved = " (the interval lies below zero)" if math.isfinite(high) and high < 0 else ""
    return f"- Stretch: {name}: {mean:+.2f} over {len(pairs)} pair{'s' if len(pairs) > 1 else ''}{interval}{resolved}."


MIN_RANKED = 4  # fewer runs than this give no rank correlation worth a line


def monitor_rank_lines(rows: list[dict]) -> list[str]:
    """Whether the monitor's reading (input-level neighbor correlation: higher is smoother) at init and at the end
    ranks the runs' final test errors, over every 10-epoch run that recorded it (Spearman's rho against the error:
    a reading that ranks the errors as "smoother is better" gives a rho near -1)."""
    runs = [r for r in rows if r.get("shattering")]
    if len(runs) < MIN_RANKED:
        return [f"- Monitor against final error: {len(runs)} runs so far; a rank correlation needs {MIN_RANKED}."]
    errors = [error_points(r) for r in runs]
    lines = []
    for when, reading in (("at init", lambda s: s.init), ("at the end", lambda s: s.end)):
        values = [reading(monitor_summary(r)) for r in runs]
        rho, p_value = spearman(values, errors)  # over the runs with a finite reading
        counted = sum(math.isfinite(v) for v in values)
        lines.append(
            f"- Monitor against final error, reading {when}: Spearman's rho {rho:+.2f} (p = {p_value:.2g}) over "
            f"{counted} runs (-1: the smoother the reading, the lower the error)."
        )
    return lines


def ablation_lines(rows: list[dict], seeded_rows: list[dict]) -> list[str]:
    """How much of ``tat_slim200``'s lead over ``ll_slim200`` (cpu-600, the seeded study's rows) the delta init alone
    gives: per seed, the lead (flattened ll_slim200 minus tat_slim200) and the part of it that ll_slim200 with delta
    convs recovers (flattened minus delta), as points and as a share; the mirror ratio accounts for the rest."""
    delta = {
        seed_of(r): error_points(r)
        for r in rows
        if r["preset"] == ABLATION_PRESET and r["model"] == "ll_slim200" and model_kwargs_of(r) == DELTA
    }
    if not delta:
        return ["- Ablation (ll_slim200 with delta-orthogonal convs, cpu-600): no run yet."]
    seeded = {
        (r["model"], seed_of(r)): error_points(r)
        for r in seeded_rows
        if is_seed_run(r) and not model_kwargs_of(r)  # the study's recipe, equal steps, the registered init
    }
    lines = []
    for seed in sorted(delta):
        flat, tat = seeded.get(("ll_slim200", seed)), seeded.get(("tat_slim200", seed))
        if flat is None or tat is None:
            lines.append(
                f"- Ablation, seed {seed}: delta ll_slim200 {delta[seed]:.2f}%; the seeded study lacks "
                "ll_slim200 or tat_slim200 at this seed."
            )
            continue
        lead, recovered = flat - tat, flat - delta[seed]
        lines.append(
            f"- Ablation, seed {seed}: test error ll_slim200 {flat:.2f}% (flattened convs), with delta convs "
            f"{delta[seed]:.2f}%, tat_slim200 {tat:.2f}%: of tat_slim's {lead:+.2f}-point lead the delta init alone "
            f"gives {recovered:+.2f} ({recovered / lead:.0%}), the mirror ratio the other {lead - recovered:+.2f}."
        )
    return lines


def section(results: Path = RESULTS, seeded: Path = SEEDED_RESULTS, step_times: Path = STEP_TIMES) -> str:
    """The block: what has landed and what has not, the tables, depth, targets, wall clock, curves, monitor,
    ablation."""
    rows = read_results(results)
    if not rows:
        raise FileNotFoundError(2, "no runs yet: run examples/long_study.sh first", str(results))
    ten_epochs = long_rows(rows)
    timing = json.loads(step_times.read_text()) if step_times.exists() else None
    missing = missing_runs(rows)
    first = ten_epochs[0]
    lines = [
        f"Machine: {machines_of(rows)}. `python examples/long_study_report.py --doc`, from {len(rows)} of the "
        f"{len(PLAN)} planned runs of `examples/long_study.sh`: {first['train_images']} training images, "
        f"{first['steps']} steps of batch {first['batch_size']}, full test set. "
        + (f"Not landed yet: {', '.join(missing)}." if missing else "Every planned run has landed."),
        "",
        *tables(ten_epochs),
        "",
        *target_lines(ten_epochs, TARGETS, (TARGET_FAMILY,)),
        stretch_line(ten_epochs),
        *depth_gain_lines(ten_epochs),
        *wall_clock_lines(ten_epochs, timing),
        *loss_comparison_lines(ten_epochs),
        *monitor_lines(ten_epochs),
        *monitor_rank_lines(ten_epochs),
        *ablation_lines(rows, read_results(seeded)),
        "",
        f"![training curves and the monitor's readings of the 10-epoch runs](figures/{FIGURE})",
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"long-study": section}


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, nargs="?", default=RESULTS)
    parser.add_argument("--seeded", type=Path, default=SEEDED_RESULTS, help="the seeded study's rows (the ablation)")
    parser.add_argument("--step-times", type=Path, default=STEP_TIMES, help="benchmarks/step_times.py's numbers")
    parser.add_argument("--doc", action="store_true", help="write the block and figure into docs/")
    args = parser.parse_args(argv)
    rows = read_results(args.results)
    if not long_rows(rows):
        parser.error(f"{args.results}: no {LONG_PRESET} runs yet; run examples/long_study.sh first")
    text = section(args.results, args.seeded, args.step_times)
    return publish_report(text, plot_curves(long_rows(rows)), FIGURE, "long-study", args.doc)


if __name__ == "__main__":
    main()
