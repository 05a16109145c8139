"""Does the channels-last memory format speed up a CPU training step? Each model contiguous and channels-last.

    python benchmarks/memory_format.py [--repeats 7] [--models cifar_resnet110,tat_slim110,...]

The training app turns channels-last on for GPUs only (``timm_ll.app.run``); oneDNN's CPU convolutions have
channels-last kernels too. This times one SGD step (batch 128, 32x32, ``benchmarks/models.py``'s step) of each
model in both formats, all alternated step by step, medians, with nothing else running, and reports each
model's channels-last step against its contiguous one and against the ResNet of its depth in the same format.
Writes docs/results/memory_format.json and the "memory-format" block of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # loaded by examples/regenerate_docs.py as well as run as a script

sys.path.insert(0, str(Path(__file__).parent))  # the step-times benchmark it builds on
from step_times import measure, resnet_of_its_depth  # noqa: E402  (the step-times benchmark's medians and rows)

from timm_ll.app.reporting import machine, machine_of, publish, step_ratio  # noqa: E402

NUMBERS = REPO / "docs" / "results" / "memory_format.json"
MODELS = "plain56,ll_plain56,cifar_resnet110,ll_slim110,tat_slim110"
SUFFIX = " [channels-last]"  # benchmarks/models.py's label for the channels-last subject


def section(numbers: Path) -> str:
    """The block from the measured step times (``docs/results/memory_format.json``)."""
    run = json.loads(numbers.read_text())
    rows = run["rows"]
    lines = [
        f"## Channels-last on the CPU (batch {run['batch_size']})",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/memory_format.py --repeats {run['repeats']}` with nothing "
        f"else running: median of {run['repeats']} SGD steps after one warm-up, every model in both memory formats, "
        "all alternated step by step.",
        "",
        "| model | contiguous step (s) | channels-last step (s) | channels-last / contiguous "
        "| / ResNet of its depth, contiguous | / ResNet of its depth, channels-last |",
        "|---|---|---|---|---|---|",
    ]
    for name in run["models"]:
        plain, last = rows[name]["step_s"], rows[name + SUFFIX]["step_s"]
        reference = resnet_of_its_depth(name)
        if reference in rows:
            to_plain = f"{step_ratio(run, name, reference):.2f}x"
            to_last = f"{step_ratio(run, name + SUFFIX, reference + SUFFIX):.2f}x"
        else:
            to_plain = to_last = "-"
        lines.append(f"| {name} | {plain:.3f} | {last:.3f} | **{last / plain:.2f}x** | {to_plain} | {to_last} |")
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"memory-format": lambda: section(NUMBERS)} if NUMBERS.exists() else {}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS, help="comma-separated timm model names")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    models = args.models.split(",")
    rows = measure([label for name in models for label in (name, name + SUFFIX)], args.repeats, args.batch_size)
    measured = dict(machine=machine(), repeats=args.repeats, batch_size=args.batch_size, models=models, rows=rows)
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "memory-format"))


if __name__ == "__main__":
    main()
