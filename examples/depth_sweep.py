"""CIFAR-10 depth sweep: do skip-free nets train as depth grows? (He et al. 2016; Balduzzi et al. 2017)

    python examples/depth_sweep.py --preset cpu-budget   # about an hour on 2 CPU cores
    python examples/depth_sweep.py --preset gpu-budget   # ~8 minutes on one H100
    python examples/depth_sweep.py --preset full         # the full recipe (GPU): 160 epochs per run

Trains every family x depth with the recipe of ``timm_ll.training`` (SGD momentum 0.9,
Nesterov, weight decay 5e-4, one-cycle LR peaking at 0.1, random crop + flip, batch 128) and
reports test accuracy. Results are appended to ``--results`` (JSON lines) after every run,
so an interrupted sweep resumes where it stopped; ``--doc`` writes the table into
docs/REPRODUCTION.md.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from timm_ll.reporting import machine, write_section

REPO = Path(__file__).resolve().parents[1]
PRESETS = {
    # train images, epochs (None: use steps), steps, what it is for
    "cpu-budget": dict(train_subset=10_000, epochs=None, steps=300),
    "gpu-budget": dict(train_subset=None, epochs=6, steps=None),
    "full": dict(train_subset=None, epochs=160, steps=None),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="cpu-budget")
    parser.add_argument("--families", default="ll_plain,plain,cifar_resnet,crelu_plain")
    parser.add_argument("--depths", default="20,56,110")
    parser.add_argument(
        "--data",
        default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"),
        help="CIFAR-10 in train/<class>/*.jpg, test/<class>/*.jpg layout (zip or folder)",
    )
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "timm-ll-depth-sweep",
        help="logs, checkpoints and (by default) the results file; outside the repository unless asked",
    )
    parser.add_argument("--results", type=Path, default=None, help="JSON lines file (default: <out>/results.jsonl)")
    parser.add_argument("--accelerator", default="auto")
    parser.add_argument("--doc", action="store_true", help="write the results table into docs/REPRODUCTION.md")
    args = parser.parse_args()

    from timm_ll.data import load_source
    from timm_ll.training import Recipe, balanced_subset, fit_and_test

    preset = PRESETS[args.preset]
    results_path = args.results or args.out / f"{args.preset}.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    done = (
        {json.loads(line)["model"] for line in results_path.read_text().splitlines()}
        if results_path.exists()
        else set()
    )
    start = time.perf_counter()
    train, test = load_source(args.data, "train"), load_source(args.data, "test")
    print(f"decoded {len(train)} train / {len(test)} test images in {time.perf_counter() - start:.1f} s", flush=True)
    if preset["train_subset"]:
        train = balanced_subset(train, preset["train_subset"])
    steps = preset["steps"] or round(preset["epochs"] * (len(train) // args.batch_size))
    for depth in [int(d) for d in args.depths.split(",")]:
        for family in args.families.split(","):
            name = f"{family}{depth}"
            if name in done:
                continue
            result = fit_and_test(
                name,
                train,
                test,
                max_steps=steps,
                batch_size=args.batch_size,
                recipe=Recipe(),
                out_dir=str(args.out / args.preset),
                accelerator=args.accelerator,
                monitor_every=max(1, steps // 4),
                progress=False,
            )
            # paths relative to --out: a committed results file names no folder of the machine
            paths = {
                key: None if value is None else str(Path(value).resolve().relative_to(args.out.resolve()))
                for key, value in (("log_dir", result.log_dir), ("checkpoint", result.checkpoint))
            }
            row = dict(
                asdict(result),
                **paths,
                model=name,
                family=family,
                depth=depth,
                preset=args.preset,
                train_images=len(train),
                batch_size=args.batch_size,
                machine=machine(),
            )
            with results_path.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(f"{name}: test accuracy {100 * result.test_acc:.2f}% in {result.seconds:.0f} s", flush=True)
    if args.doc:
        write_doc(results_path, args.preset)


def write_doc(results_path: Path, preset: str) -> None:
    """Write the sweep's table (test error per family and depth) into docs/REPRODUCTION.md."""
    rows = [json.loads(line) for line in results_path.read_text().splitlines()]
    families = list(dict.fromkeys(r["family"] for r in rows))
    depths = sorted({r["depth"] for r in rows})
    by = {(r["family"], r["depth"]): r for r in rows}
    first = rows[0]
    lines = [
        f"Preset `{preset}`: {first['train_images']} training images, {first['steps']} steps of batch "
        f"{first['batch_size']} per run, full 10,000-image test set. Machine: {first['machine']}.",
        "",
        "| family | " + " | ".join(f"depth {d}" for d in depths) + " |",
        "|---|" + "---|" * len(depths),
    ]
    for family in families:
        cells = [f"{100 * (1 - by[(family, d)]['test_acc']):.2f}%" if (family, d) in by else "-" for d in depths]
        lines.append(f"| {family} (test error) | " + " | ".join(cells) + " |")
    lines += ["", "Wall time per run (s): " + ", ".join(f"{r['model']} {r['seconds']:.0f}" for r in rows) + "."]
    write_section(REPO / "docs" / "REPRODUCTION.md", f"sweep-{preset}", "\n".join(lines))


if __name__ == "__main__":
    main()
