"""Where a train step spends its time (torch.profiler, CPU).

    python benchmarks/profile_step.py [--steps 3]                 # plain56 vs ll_plain56: block "profile"
    python benchmarks/profile_step.py --by-operator               # ll_plain56, tat_slim110, cifar_resnet110

The first writes docs/results/profile.json and the "profile" block of docs/PERFORMANCE.md: per-step self time
of the convolutions, of the activation (ReLU or CReLU and their backward), and of everything else; and the
activation alone on one tensor (a stage-1 pre-activation, 128x16x32x32): forward and backward of a ReLU, of
the CReLU, and of the CReLU of commit ``models.OLD_COMMIT`` (before issue 39), medians alternated.
``--by-operator`` profiles the models the CReLU-convolution work is about (``--models`` to choose) and
writes docs/results/profile_by_operator.json and the "profile-by-operator" block: the same split, and each
model's operators with the most self time.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import timm_ll  # noqa: F401
from timm_ll.app.reporting import machine, machine_of, publish

REPO = Path(__file__).resolve().parents[1]

CONV = ("aten::convolution_backward", "aten::mkldnn_convolution", "aten::_convolution", "aten::cudnn_convolution")
ACTIVATION = (
    "CReLU",
    "aten::threshold_backward",
    "aten::clamp_min",
    "aten::clamp_max",
    "aten::neg_",
    "aten::sub",  # the CReLU's relu(-z) = relu(z) - z, and its backward's difference of the two halves
    "aten::hardtanh_backward",
    "aten::relu",
    "aten::relu_",
)


def breakdown(name: str, steps: int, top: int = 0) -> dict[str, Any]:
    model = timm.create_model(name).train()
    x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

    def step() -> None:
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    self_ms = {e.key: e.self_cpu_time_total / 1e3 / steps for e in prof.key_averages()}
    conv = sum(v for k, v in self_ms.items() if k in CONV)
    act = sum(v for k, v in self_ms.items() if any(a in k for a in ACTIVATION))
    total = sum(self_ms.values())
    row: dict[str, Any] = dict(conv=conv, act=act, other=total - conv - act, total=total)
    if top:  # the operators with the most self time, ms per step
        row["ops"] = dict(sorted(self_ms.items(), key=lambda item: -item[1])[:top])
    return row


def activation_alone(repeats: int) -> dict[str, float]:
    """Median ms of one forward + backward of each activation on the same tensor, alternated."""
    import statistics
    import sys
    import time

    sys.path.insert(0, str(Path(__file__).parent))
    from models import OLD_COMMIT, with_old_crelu_classes

    old = with_old_crelu_classes(torch.nn.Sequential(timm_ll.CReLU()))[0]
    subjects = {"ReLU": torch.nn.ReLU(), "CReLU": timm_ll.CReLU(), f"CReLU ({OLD_COMMIT})": old}
    z = torch.randn(128, 16, 32, 32)
    grads = {name: torch.randn(128, 32 if "CReLU" in name else 16, 32, 32) for name in subjects}
    times: dict[str, list[float]] = {name: [] for name in subjects}
    for i in range(repeats + 1):
        for name, layer in subjects.items():
            x = z.clone().requires_grad_()  # a leaf per call: backward reaches the activation only
            start = time.perf_counter()
            layer(x).backward(grads[name])
            if i:  # the first round warms up
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * statistics.median(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--by-operator", action="store_true", help="the operator table of --models")
    parser.add_argument("--models", default="ll_plain56,tat_slim110,cifar_resnet110")
    args = parser.parse_args()
    page = REPO / "docs" / "PERFORMANCE.md"
    if args.by_operator:
        rows = {name: breakdown(name, args.steps, top=8) for name in args.models.split(",")}
        measured = dict(machine=machine(), steps=args.steps, rows=rows)
        print(publish(BY_OPERATOR, measured, operator_section, page, "profile-by-operator"))
        return
    rows = {name: breakdown(name, args.steps) for name in ("plain56", "ll_plain56")}
    measured = dict(machine=machine(), steps=args.steps, rows=rows, alone=activation_alone(repeats=50))
    print(publish(NUMBERS, measured, section, page, "profile"))


def section(numbers: Path) -> str:
    """The block from the measured numbers (``docs/results/profile.json``)."""
    run = json.loads(numbers.read_text())
    rows = run["rows"]
    base = rows["plain56"]
    lines = [
        "## Where the step time goes (CPU profile, batch 128)",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/profile_step.py`: self CPU time per step from torch.profiler, "
        f"mean of {run['steps']} steps after a warm-up.",
        "",
        "| model | convolutions (ms) | activation fwd+bwd (ms) | everything else (ms) | total (ms) |",
        "|---|---|---|---|---|",
        *[
            f"| {n} | {r['conv']:.0f} ({r['conv'] / base['conv']:.2f}x) | {r['act']:.0f} | {r['other']:.0f} | "
            f"{r['total']:.0f} ({r['total'] / base['total']:.2f}x) |"
            for n, r in rows.items()
        ],
    ]
    if "alone" in run:  # runs from before issue 39 did not measure it
        alone = run["alone"]
        relu = alone["ReLU"]
        lines += [
            "",
            "The activation alone, forward and backward on one 128x16x32x32 tensor (median of 50, alternated): "
            + ", ".join(f"{name} {ms:.2f} ms ({ms / relu:.2f}x)" for name, ms in alone.items())
            + f". Target: the CReLU at most 2.5x the ReLU -> **{alone['CReLU'] / relu:.2f}x**.",
        ]
    return "\n".join(lines)


def operator_section(numbers: Path) -> str:
    """The by-operator block (``docs/results/profile_by_operator.json``)."""
    run = json.loads(numbers.read_text())
    lines = [
        "## Where the step time goes, by operator (CPU profile, batch 128)",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/profile_step.py --by-operator`: self CPU time per step "
        f"from torch.profiler, mean of {run['steps']} steps after a warm-up, nothing else running.",
        "",
        "| model | convolutions (ms) | activation fwd+bwd (ms) | everything else (ms) | total (ms) |",
        "|---|---|---|---|---|",
        *[
            f"| {n} | {r['conv']:.0f} | {r['act']:.0f} | {r['other']:.0f} | {r['total']:.0f} |"
            for n, r in run["rows"].items()
        ],
        "",
    ]
    for name, row in run["rows"].items():
        ops = ", ".join(f"`{op}` {ms:.0f}" for op, ms in row["ops"].items())
        lines.append(f"- {name}, the operators with the most self time (ms per step): {ops}.")
    return "\n".join(lines)


NUMBERS = REPO / "docs" / "results" / "profile.json"
BY_OPERATOR = REPO / "docs" / "results" / "profile_by_operator.json"
# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"profile": lambda: section(NUMBERS)}
if BY_OPERATOR.exists():
    DOC_BLOCKS["profile-by-operator"] = lambda: operator_section(BY_OPERATOR)


if __name__ == "__main__":
    main()
