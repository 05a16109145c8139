"""Rerun one committed results row and report the rerun beside it.

    python examples/reproduce.py docs/results/depth_sweep_cpu-600-seeded.jsonl --model tat_slim200 --seed 0
    python examples/reproduce.py RESULTS --model cifar_resnet200 --seed 0 --stop-after 60   # the first 60 steps
    python examples/reproduce.py RESULTS --model ll_slim200 --seed 0 --lr 0.04   # a row of another recipe

The row is found by model, seed, and (where given) peak LR, preset and create_model keywords. Where the
row names the commit it ran at (``provenance.commit``: rows from 2b0b3c1 on), that commit is checked out
into a temporary worktree and the rerun runs its code; older rows are rerun with the code of this checkout,
and the report says so. The rerun uses the row's preset, data subset, steps, batch size, recipe, seed and
keywords, and prints: test error and loss (full reruns), the batch-loss curve's first divergence, the
monitor's input-level readings at the steps both have, and whether everything is bitwise equal. The
provenance of both is printed, so a difference can be laid at the code, the libraries or the processor.
``--stop-after N`` ends the rerun after N optimizer steps (the LR schedule is still the full run's), for a
quick check of the start of a long run.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# what the rerun runs, in the code tree it is given (this checkout, or a worktree of the row's commit): only
# APIs that every commit whose rows carry a provenance has (fit_and_test(callbacks=, model_kwargs=), PRESETS)
_DRIVER = r"""
import json, sys
import lightning.pytorch as L
sys.path.insert(0, "examples")
from depth_sweep import PRESETS
from timm_ll.app.data import load_source
from timm_ll.app.reporting import provenance
from timm_ll.app.training import Recipe, balanced_subset, fit_and_test

spec = json.loads(sys.argv[1])
code = provenance()  # at the start: the code that is imported now is the code that runs


class StopAfter(L.Callback):
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if spec["stop_after"] and trainer.global_step >= spec["stop_after"]:
            trainer.should_stop = True


train, test = load_source(spec["data"], "train"), load_source(spec["data"], "test")
subset = PRESETS[spec["preset"]]["train_subset"]
if subset:
    train = balanced_subset(train, subset)
preset = PRESETS[spec["preset"]]
result = fit_and_test(
    spec["model"], train, test, max_steps=spec["steps"], batch_size=spec["batch_size"],
    recipe=Recipe(**spec["recipe"]), out_dir=spec["out"], progress=False, seed=spec["seed"],
    monitor_every=preset.get("monitor_every", max(1, spec["steps"] // 10)), monitor_options=preset.get("monitor"),
    model_kwargs=spec["model_kwargs"] or None, callbacks=[StopAfter()],
)
print("RERUN " + json.dumps(dict(
    test_acc=result.test_acc, test_loss=result.test_loss, steps=result.steps, curves=result.curves,
    shattering=result.shattering, provenance=dict(code, precision=result.precision),
)))
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", type=Path, help="a JSON-lines results file of examples/depth_sweep.py")
    parser.add_argument("--model", required=True, help="the row's model, e.g. tat_slim200")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=None, help="the row's peak LR (where the file has several)")
    parser.add_argument("--preset", default=None, help="the row's preset (where the file has several)")
    parser.add_argument("--model-kwargs", type=json.loads, default=None, help="the row's create_model keywords")
    parser.add_argument("--stop-after", type=int, default=None, help="end the rerun after this many steps")
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"),
        help="the data the row was trained on (CIFAR-10 zip or folder, or 'digits')",
    )
    parser.add_argument("--out", type=Path, default=None, help="the rerun's logs (default: a temporary folder)")
    parser.add_argument(
        "--save", type=Path, default=None, help="also write the row, the rerun and the comparison as JSON here"
    )
    return parser.parse_args(argv)


def find_row(rows: list[dict], args: argparse.Namespace) -> dict:
    """The one row the arguments name; a clear error where none or several match."""
    from timm_ll.app.reporting import budget_of, model_kwargs_of, recipe_of, seed_of

    found = [
        r
        for r in rows
        if r["model"] == args.model
        and seed_of(r) == args.seed
        and budget_of(r) == "equal-steps"
        and (args.lr is None or (recipe_of(r) or {}).get("lr") == args.lr)
        and (args.preset is None or r.get("preset") == args.preset)
        and (args.model_kwargs is None or model_kwargs_of(r) == args.model_kwargs)
    ]
    if len(found) != 1:
        options = sorted({(r["model"], seed_of(r), (recipe_of(r) or {}).get("lr"), r.get("preset")) for r in rows})
        raise SystemExit(
            f"{len(found)} rows match --model {args.model} --seed {args.seed}"
            + (" (name --lr, --preset or --model-kwargs to pick one)" if found else "")
            + f"; the file has (model, seed, lr, preset): {options}"
        )
    return found[0]


def rerun_spec(row: dict, args: argparse.Namespace, out: Path) -> dict:
    """What the driver needs to rerun ``row``."""
    from timm_ll.app.reporting import model_kwargs_of, recipe_of

    recipe = recipe_of(row)
    if recipe is None:
        raise SystemExit(f"{row['model']}'s row names no recipe (an early sweep's): it cannot be rerun as it was")
    return dict(
        model=row["model"],
        seed=row.get("seed", 0),
        preset=row["preset"],
        steps=row["steps"],
        batch_size=row["batch_size"],
        recipe=recipe,
        model_kwargs=model_kwargs_of(row),
        data=str(Path(args.data).resolve()) if args.data != "digits" else "digits",
        out=str(out),
        stop_after=args.stop_after,
    )


def code_tree(row: dict, scratch: Path) -> tuple[Path, str]:
    """Where the rerun's code comes from: a worktree of the row's commit, else this checkout (and why)."""
    commit = (row.get("provenance") or {}).get("commit")
    if commit is None:
        return REPO, "the row names no commit (it predates provenance): rerun with this checkout's code"
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    if commit == head:
        return REPO, f"the row's commit {commit[:7]} is this checkout's"
    tree = scratch / "code"
    subprocess.run(["git", "worktree", "add", "--detach", str(tree), commit], cwd=REPO, check=True, capture_output=True)
    return tree, f"rerun with the row's commit {commit[:7]} (a temporary worktree)"


def rerun(spec: dict, tree: Path) -> dict:
    """Run the driver in ``tree`` (its packages first on the path) and return what it reported."""
    import os

    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [sys.executable, "-c", _DRIVER, json.dumps(spec)], cwd=tree, env=env, capture_output=True, text=True
    )
    line = next((text for text in done.stdout.splitlines() if text.startswith("RERUN ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"the rerun failed:\n{done.stderr[-4000:]}")
    return json.loads(line.removeprefix("RERUN "))


def compare(row: dict, again: dict) -> dict:
    """The row and its rerun side by side: first divergence of the batch loss, monitor readings, bitwise."""
    from timm_ll.app.reporting import input_statistic

    first, second = row["curves"], again["curves"]
    common = [s for s in second["step"] if s in set(first["step"])]
    loss_a = dict(zip(first["step"], first["loss"]))
    loss_b = dict(zip(second["step"], second["loss"]))
    diverged = next((s for s in common if loss_a[s] != loss_b[s]), None)
    largest = max((abs(loss_a[s] - loss_b[s]) for s in common), default=math.nan)
    readings_a = {e["step"]: input_statistic(e) for e in row.get("shattering", [])}
    readings_b = {e["step"]: input_statistic(e) for e in again.get("shattering", [])}
    monitor = [(s, readings_a[s], readings_b[s]) for s in sorted(readings_b) if s in readings_a]
    full = again["steps"] == row["steps"]
    same_monitor = all(a == b or (math.isnan(a) and math.isnan(b)) for _, a, b in monitor)
    return dict(
        full=full,
        steps_compared=len(common),
        first_divergence=diverged,
        first_divergence_losses=None if diverged is None else (loss_a[diverged], loss_b[diverged]),
        largest_loss_difference=largest,
        monitor=monitor,
        test=(row["test_acc"], again["test_acc"], row.get("test_loss"), again["test_loss"]) if full else None,
        bitwise=diverged is None and same_monitor and (not full or row["test_acc"] == again["test_acc"]),
    )


def report(row: dict, again: dict, comparison: dict, where: str) -> str:
    """The comparison as a reader reads it."""
    lines = [f"{row['model']} seed {row.get('seed', 0)} ({row['preset']}, {row['steps']} steps): {where}"]
    if comparison["test"]:
        acc_a, acc_b, loss_a, loss_b = comparison["test"]
        lines.append(f"  test error: row {100 * (1 - acc_a):.2f}%, rerun {100 * (1 - acc_b):.2f}%")
        lines.append(f"  test loss:  row {loss_a}, rerun {loss_b}")
    else:
        lines.append(f"  rerun stopped after {again['steps']} steps: no test error to compare")
    if comparison["first_divergence"] is None:
        lines.append(f"  batch loss: equal at all {comparison['steps_compared']} logged steps both have")
    else:
        a, b = comparison["first_divergence_losses"]
        lines.append(
            f"  batch loss: first differs at step {comparison['first_divergence']} ({a:.6f} against {b:.6f}); "
            f"largest difference {comparison['largest_loss_difference']:.4f} over "
            f"{comparison['steps_compared']} logged steps"
        )
    for step, a, b in comparison["monitor"]:
        lines.append(f"  monitor at step {step}: row {a:.4f}, rerun {b:.4f}{'' if a == b else '  (differs)'}")
    lines.append(f"  bitwise equal: {'yes' if comparison['bitwise'] else 'no'}")
    for name, prov in (("row", row.get("provenance")), ("rerun", again["provenance"])):
        lines.append(f"  {name}: {json.dumps(prov) if prov else row.get('machine', 'no provenance recorded')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    from timm_ll.app.reporting import read_results

    args = parse_args(argv)
    row = find_row(read_results(args.results), args)
    with tempfile.TemporaryDirectory(prefix="timm-ll-reproduce-") as scratch:
        out = args.out or Path(scratch) / "runs"
        tree, where = code_tree(row, Path(scratch))
        try:
            again = rerun(rerun_spec(row, args, out), tree)
        finally:
            if tree != REPO:
                subprocess.run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    comparison = compare(row, again)
    print(report(row, again, comparison, where), flush=True)
    measured = dict(row=row, rerun=again, comparison=comparison, where=where, stop_after=args.stop_after)
    if args.save:
        from timm_ll.app.reporting import write_json

        write_json(args.save, measured)
    return measured


def section(numbers: Path) -> str:
    """The block of a saved rerun (``--save``): where it ran, and the row and the rerun side by side."""
    from timm_ll.app.reporting import machine_of

    measured = json.loads(numbers.read_text())
    row, again, comparison = measured["row"], measured["rerun"], measured["comparison"]
    stop = measured.get("stop_after")
    command = f"`python examples/reproduce.py ... --model {row['model']} --seed {row.get('seed', 0)}"
    command += f" --stop-after {stop}`" if stop else "`"
    text = report(row, again, comparison, measured["where"]).splitlines()
    bullets = [f"- {line.strip()}" for line in text[1:] if not line.strip().startswith(("row:", "rerun:"))]
    return "\n".join(
        [
            f"{command}: {measured['where']}. The row's machine: {row.get('machine', 'not recorded')}"
            + ("" if row.get("provenance") else " (it predates provenance)")
            + f". The rerun's: {machine_of(dict(machine=again['provenance']['cpu'], provenance=again['provenance']))}.",
            "",
            *bullets,
        ]
    )


# a saved rerun of a committed row, docs/results/rerun_<model>_seed<S>.json, is the block rerun-<model>-seed<S>
DOC_BLOCKS = {
    "rerun-" + path.stem.removeprefix("rerun_").replace("_", "-"): (lambda path=path: section(path))
    for path in sorted((REPO / "docs" / "results").glob("rerun_*.json"))
}


if __name__ == "__main__":
    main()
