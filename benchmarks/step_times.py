"""Train-step times of the studies' models on this machine: what "equal wall-clock" means there.

    python benchmarks/step_times.py [--models ll_slim110,cifar_resnet110,...] [--repeats 10]

A name ``<model> (<commit>)`` measures the model with that commit's CReLU classes (``benchmarks/models.py``).

Each model takes SGD steps (forward, backward, update; batch 128 of 3x32x32, as in the study) with the
models alternated step by step, so that a slow phase of the machine hits every model alike; the step time
is the median over ``--repeats`` steps after one warm-up. Run it with nothing else on the machine (pause a
running study with ``kill -STOP``): the study's own wall times shared the machine and are no timings.
Writes docs/results/step_times.json and the "step-times" block of docs/PERFORMANCE.md, which
``examples/seeded_report.py`` and ``examples/long_study_report.py`` read to set the studies' runs side by side at
equal wall-clock.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # loaded by examples/regenerate_docs.py as well as run as a script
sys.path.insert(0, str(Path(__file__).parent))  # the models benchmark, whose step and row labels it uses

from models import Subject, model_of  # noqa: E402  (the models benchmark's step: same optimizer, data and timing)

from timm_ll.app.reporting import machine, machine_of, publish, step_ratio  # noqa: E402

MODELS = (
    "cifar_resnet20,ll_slim20,tat_slim20,"  # the long study's depth 20 (examples/long_study.sh)
    "cifar_resnet110,ll_slim110,ll_plain110,tat_plain110,tat_slim110,"
    "cifar_resnet200,ll_slim200,plain200,tat_plain200,tat_slim200"
)
NUMBERS = REPO / "docs" / "results" / "step_times.json"


def measure(names: list[str], repeats: int, batch_size: int) -> dict[str, dict[str, float]]:
    """Median step time (s) and parameter count of each model, the models alternated step by step."""
    subjects = [Subject(name, batch_size, "cpu") for name in names]
    for subject in subjects:
        subject.step()  # warm-up
    for _ in range(repeats):
        for subject in subjects:
            subject.timed_step()
    return {
        s.label: dict(step_s=statistics.median(s.times), params=sum(p.numel() for p in s.model.parameters()))
        for s in subjects
    }


def resnet_of_its_depth(label: str) -> str:
    """The ResNet a row's model is compared with: ``"tat_slim110 (d0c4c85)"`` -> ``"cifar_resnet110"``."""
    model = model_of(label)
    return f"cifar_resnet{model.removeprefix(model.rstrip('0123456789'))}"


def section(numbers: Path) -> str:
    """The block from the measured step times (``docs/results/step_times.json``)."""
    run = json.loads(numbers.read_text())
    rows = run["rows"]
    models = "" if run.get("models", MODELS) == MODELS else f" --models '{run['models']}'"
    lines = [
        f"## Train-step time of the studies' models (batch {run['batch_size']})",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/step_times.py --repeats {run['repeats']}{models}` with "
        f"nothing else running: median of {run['repeats']} SGD steps (forward, backward, update) after one warm-up, "
        "the models alternated step by step. The ratio is against the ResNet of the same depth, from the same run: a "
        "ResNet takes that many steps in the time of one step of the model.",
        "",
        "| model | params | step (s) | step / ResNet of its depth |",
        "|---|---|---|---|",
    ]
    for name, r in rows.items():
        reference = resnet_of_its_depth(name)
        text = f"{step_ratio(run, name, reference):.2f}x" if reference in rows else "-"
        lines.append(f"| {name} | {r['params']:,} | {r['step_s']:.3f} | {text} |")
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"step-times": lambda: section(NUMBERS)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=MODELS, help="comma-separated timm model names")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    rows = measure(args.models.split(","), args.repeats, args.batch_size)
    measured = dict(machine=machine(), repeats=args.repeats, batch_size=args.batch_size, models=args.models, rows=rows)
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "step-times"))


if __name__ == "__main__":
    main()
