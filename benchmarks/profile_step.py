"""Where a train step of plain56 vs ll_plain56 spends its time (torch.profiler, CPU).

    python benchmarks/profile_step.py [--steps 3]

Writes docs/results/profile.json and the "profile" block of docs/PERFORMANCE.md: per-step self time of the convolutions,
of the activation (ReLU or CReLU and their backward), and of everything else.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

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
    "aten::sub_",
    "aten::relu",
    "aten::relu_",
)


def breakdown(name: str, steps: int) -> dict[str, float]:
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
    return dict(conv=conv, act=act, other=total - conv - act, total=total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    rows = {name: breakdown(name, args.steps) for name in ("plain56", "ll_plain56")}
    measured = dict(machine=machine(), steps=args.steps, rows=rows)
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "profile"))


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
    return "\n".join(lines)


NUMBERS = REPO / "docs" / "results" / "profile.json"
# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"profile": lambda: section(NUMBERS)}


if __name__ == "__main__":
    main()
