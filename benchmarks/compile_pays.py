"""Does ``torch.compile`` pay for a training run of a given length? Measured, not assumed.

    python benchmarks/compile_pays.py --device cuda --models ll_plain56 --run-steps 3900 --json compile.json

For each model it times a training step (SGD, batch 128 of 32x32 images; bf16 autocast and
channels-last on CUDA, as ``timm_ll.app.training.fit_and_test`` trains there) eagerly and through
``torch.compile`` (alternating the two, median of ``--steps``), and the compilation itself (the
compiled model's first step less a compiled step). Compiling pays
for a run of ``--run-steps`` steps when compile time + steps x compiled step < steps x eager step,
for every model measured. ``benchmarks/device_run.sh`` asks this before its GPU sweep and passes
``--compile`` to the sweep only when it pays. Prints a Markdown table; ``--json`` also writes
the numbers and the verdict (``"pays"``), ``--doc`` the table into docs/PERFORMANCE.md
(section ``compile`` on CPU, ``compile-<device>`` elsewhere).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import timm
import torch

import timm_ll  # noqa: F401  (registers the LL models)
from timm_ll.app.reporting import machine, machine_of, provenance, write_json, write_section

REPO = Path(__file__).resolve().parents[1]


def _step_fn(model: torch.nn.Module, device: str, batch_size: int):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)
    on_cuda = device.startswith("cuda")
    if on_cuda:
        x = x.contiguous(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if on_cuda else contextlib.nullcontext
    sync = torch.cuda.synchronize if on_cuda else (lambda: None)

    def timed_step() -> float:
        sync()
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        sync()
        return time.perf_counter() - start

    return timed_step


def _model(name: str, device: str) -> torch.nn.Module:
    model = timm.create_model(name).to(device).train()
    return model.to(memory_format=torch.channels_last) if device.startswith("cuda") else model


def measure(name: str, device: str, steps: int, batch_size: int, backend: str) -> dict[str, float]:
    """Median eager and compiled step times (ms) and the compilation time (s) of one model."""
    eager_step = _step_fn(_model(name, device), device, batch_size)
    for _ in range(3):
        eager_step()  # warm-up: cuDNN autotuning, allocator
    torch._dynamo.reset()
    compiled_step = _step_fn(torch.compile(_model(name, device), backend=backend), device, batch_size)
    first = compiled_step()  # compiles forward and backward, then runs the step
    compiled_step()
    eager, compiled = [], []
    for _ in range(steps):  # alternated, as benchmarks/models.py does: drift on a shared machine hits both alike
        eager.append(eager_step())
        compiled.append(compiled_step())
    compiled_s = statistics.median(compiled)
    return dict(
        eager_ms=1e3 * statistics.median(eager), compiled_ms=1e3 * compiled_s, compile_s=max(0.0, first - compiled_s)
    )


def verdict(row: dict[str, float], run_steps: int) -> dict[str, float | bool]:
    """Seconds a ``run_steps``-step run takes eagerly and compiled (compilation included), and whether it pays."""
    eager_s = run_steps * row["eager_ms"] / 1e3
    compiled_s = row["compile_s"] + run_steps * row["compiled_ms"] / 1e3
    return dict(eager_run_s=eager_s, compiled_run_s=compiled_s, pays=compiled_s < eager_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="ll_plain56", help="comma-separated timm model names")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per mode (median)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--run-steps", type=int, required=True, help="length of the run the verdict is for")
    parser.add_argument("--backend", default="inductor", help="torch.compile backend ('eager' for a logic check)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", action="store_true", help="write the table into docs/PERFORMANCE.md")
    args = parser.parse_args(argv)
    # a cold compilation, as a fresh machine pays it: inductor's on-disk caches would make a rerun look free
    torch._inductor.config.force_disable_caches = True
    rows = {}
    for name in args.models.split(","):
        row = measure(name, args.device, args.steps, args.batch_size, args.backend)
        rows[name] = row | verdict(row, args.run_steps)
    run = dict(
        pays=all(row["pays"] for row in rows.values()),
        run_steps=args.run_steps,
        models=rows,
        machine=machine(),
        provenance=provenance(),
        backend=args.backend,
        device=args.device,
        batch_size=args.batch_size,
        steps=args.steps,
    )
    if args.json:
        write_json(args.json, run)
    if args.doc:
        name = block_name(args.device)
        write_json(REPO / "docs" / "results" / f"{name}.json", run)
        path = write_section(REPO / "docs" / "PERFORMANCE.md", name, section(run))
        print(f"wrote {path.relative_to(REPO)}")
    print(section(run))
    return 0


def block_name(device: str) -> str:
    """The docs block (and results file) of a device: ``compile`` on the CPU, else ``compile-<device>``."""
    return "compile" if device == "cpu" else f"compile-{device.split(':')[0]}"


def section(run: dict) -> str:
    """The block from a run's numbers (what ``--json`` writes; ``docs/results/compile.json`` for the docs)."""
    lines = [
        f"`benchmarks/compile_pays.py`: torch.compile ({run['backend']}) for a {run['run_steps']}-step run on "
        f"{run['device']}, batch {run['batch_size']}, median of {run['steps']} steps; {machine_of(run)}",
        "",
        "| model | eager ms/step | compiled ms/step | step speed-up | compile s | run eager s | run compiled s "
        "| pays |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in run["models"].items():
        lines.append(
            f"| {name} | {r['eager_ms']:.2f} | {r['compiled_ms']:.2f} | {r['eager_ms'] / r['compiled_ms']:.2f}x "
            f"| {r['compile_s']:.1f} | {r['eager_run_s']:.0f} | {r['compiled_run_s']:.0f} "
            f"| {'yes' if r['pays'] else 'no'} |"
        )
    paying = [name for name, r in run["models"].items() if r["pays"]]
    if len(paying) == len(run["models"]):
        verdict = f"compiling pays for a {run['run_steps']}-step run of every model here"
    elif paying:
        verdict = (
            f"compiling pays for a {run['run_steps']}-step run of {', '.join(paying)} only; the sweep compiles "
            "only when it pays for every model probed"
        )
    else:
        verdict = f"compiling pays for a {run['run_steps']}-step run of no model here"
    lines += ["", f"Verdict: {verdict}."]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    path.stem: (lambda path=path: section(json.loads(path.read_text())))
    for path in (REPO / "docs" / "results").glob("compile*.json")
}


if __name__ == "__main__":
    raise SystemExit(main())
