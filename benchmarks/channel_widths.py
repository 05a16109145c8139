"""Do channel counts that are not multiples of 8 cost time? tat_slim110 at its widths and at 12/24/44.

    python benchmarks/channel_widths.py [--repeats 10]

``tat_slim`` and ``ll_slim`` use pre-activation widths 11/23/45 (near 1/sqrt(2) of 16/32/64), doubled by the
CReLU to 22/46/90 channels: none a multiple of 8, which vectorized convolution kernels prefer. This times
one SGD step (batch 128, 32x32) of ``cifar_resnet110``, ``tat_slim110`` and the same net at 12/24/44 (CReLU
outputs 24/48/88, all multiples of 8; parameters within a few percent), alternated step by step, medians,
with nothing else running. The registered families keep their widths (their committed results must stay
valid); ``widths=`` through ``timm.create_model`` builds the other. Writes docs/results/channel_widths.json and
the "channel-widths" block of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import timm
import torch

import timm_ll  # noqa: F401
from timm_ll.app.reporting import machine, machine_of, publish

REPO = Path(__file__).resolve().parents[1]
NUMBERS = REPO / "docs" / "results" / "channel_widths.json"
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "cifar_resnet110": ("cifar_resnet110", {}),
    "tat_slim110 (11/23/45)": ("tat_slim110", {}),
    "tat_slim110 at 12/24/44": ("tat_slim110", {"widths": (12, 24, 44)}),
}


def measure(repeats: int, batch_size: int) -> dict[str, dict[str, float]]:
    """Median step time (s) and parameter count of each variant, alternated step by step."""
    runs = []
    for label, (name, kwargs) in VARIANTS.items():
        torch.manual_seed(0)
        model = timm.create_model(name, **kwargs).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x, y = torch.randn(batch_size, 3, 32, 32), torch.randint(0, 10, (batch_size,))
        runs.append((label, model, opt, x, y, []))

    def step(model: Any, opt: Any, x: torch.Tensor, y: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _, model, opt, x, y, _ in runs:
        step(model, opt, x, y)  # warm-up
    for _ in range(repeats):
        for _, model, opt, x, y, times in runs:
            start = time.perf_counter()
            step(model, opt, x, y)
            times.append(time.perf_counter() - start)
    return {
        label: dict(step_s=statistics.median(times), params=sum(p.numel() for p in model.parameters()))
        for label, model, _, _, _, times in runs
    }


def section(numbers: Path) -> str:
    """The block from the measured step times (``docs/results/channel_widths.json``)."""
    run = json.loads(numbers.read_text())
    rows = run["rows"]
    resnet = rows["cifar_resnet110"]["step_s"]
    lines = [
        "## Channel counts that are not multiples of 8 (batch 128, CPU)",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/channel_widths.py --repeats {run['repeats']}` with nothing "
        f"else running: median of {run['repeats']} SGD steps after a warm-up, the three nets alternated step by step.",
        "",
        "| net | params | step (s) | step / cifar_resnet110 |",
        "|---|---|---|---|",
        *[f"| {n} | {r['params']:,} | {r['step_s']:.3f} | {r['step_s'] / resnet:.2f}x |" for n, r in rows.items()],
    ]
    return "\n".join(lines)


DOC_BLOCKS = {"channel-widths": lambda: section(NUMBERS)} if NUMBERS.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    rows = measure(args.repeats, args.batch_size)
    measured = dict(machine=machine(), repeats=args.repeats, batch_size=args.batch_size, rows=rows)
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "channel-widths"))


if __name__ == "__main__":
    main()
