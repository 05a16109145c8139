"""Do the zoo's initial weights and training steps depend on the processor's instruction set?

    python benchmarks/cpu_kernels.py [--models cifar_resnet20,tat_slim20,ll_slim20,tat_slim200]

A run is reproducible bitwise on one processor (``tests/test_examples_logic.py`` reruns a row and gets every
number back), but torch's CPU kernels are chosen by the instruction set the processor offers: ATen's own
vectorized kernels (``ATEN_CPU_CAPABILITY``), oneDNN's convolutions (``ONEDNN_MAX_CPU_ISA``) and MKL's BLAS
and LAPACK, which does the QR of the orthogonal inits (``MKL_CBWR``). Two processors with different
instruction sets can sum in another order and round differently. This script imitates a smaller processor
on this one: for each model, its seeded initial weights and one seeded SGD step (batch 32 of fixed random
images, the study's loss) in a fresh process with each kernel choice capped, compared with the uncapped
run's: the weights, the loss and every parameter's gradient, bitwise and by the largest difference. Writes
``docs/results/cpu_kernels.json`` and the ``cpu-kernels`` block of ``docs/REPRODUCTION.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from timm_ll.app.reporting import machine, machine_of, provenance, write_json, write_section

REPO = Path(__file__).resolve().parents[1]
NUMBERS = REPO / "docs" / "results" / "cpu_kernels.json"

# the kernel choices: (label, environment); the first is the processor's own
SETTINGS = [
    ("native", {}),
    ("ATen AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}),
    ("oneDNN AVX2", {"ONEDNN_MAX_CPU_ISA": "AVX2"}),
    ("both AVX2", {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    # MKL's LAPACK (the QR of the orthogonal inits) and BLAS with the AVX2 code path: the init itself
    ("MKL AVX2", {"MKL_CBWR": "AVX2"}),
]

_STEP = r"""
import sys, torch, timm, timm_ll
torch.manual_seed(0)
model = timm.create_model(sys.argv[1], num_classes=10)
init = {name: p.detach().clone() for name, p in model.named_parameters()}
images, labels = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
loss = torch.nn.functional.cross_entropy(model(images), labels)
loss.backward()
grads = {name: p.grad for name, p in model.named_parameters()}
capability = torch.backends.cpu.get_cpu_capability()
torch.save(dict(loss=loss.detach(), grads=grads, init=init, capability=capability), sys.argv[2])
"""


def one_step(model: str, env: dict[str, str], path: Path) -> dict:
    subprocess.run([sys.executable, "-c", _STEP, model, str(path)], env={**os.environ, **env}, check=True)
    import torch

    return torch.load(path, weights_only=True)


def compare(reference: dict, other: dict) -> dict:
    """Bitwise equality and the largest relative difference of the loss and the gradients."""
    grads = reference["grads"]
    relative = max(
        float((other["grads"][k] - g).abs().max() / g.abs().max().clamp_min(1e-30)) for k, g in grads.items()
    )
    init = reference["init"]
    return dict(
        capability=other["capability"],
        init_equal=all(bool((other["init"][k] == w).all()) for k, w in init.items()),
        largest_init_difference=max(float((other["init"][k] - w).abs().max()) for k, w in init.items()),
        loss_equal=bool(reference["loss"] == other["loss"]),
        grads_equal=all(bool((other["grads"][k] == g).all()) for k, g in grads.items()),
        loss_difference=float((other["loss"] - reference["loss"]).abs()),
        largest_relative_grad_difference=relative,
    )


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="cifar_resnet20,tat_slim20,ll_slim20,tat_slim200")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.models.split(","):
            runs = {label: one_step(model, env, Path(scratch) / f"{model}-{i}.pt") for i, (label, env) in
                    enumerate(SETTINGS)}  # fmt: skip
            again = one_step(model, {}, Path(scratch) / f"{model}-again.pt")  # the same choice twice: equal?
            reference = runs["native"]
            rows[model] = {"native again": compare(reference, again)} | {
                label: compare(reference, run) for label, run in runs.items() if label != "native"
            }
    measured = dict(machine=machine(), provenance=provenance(), settings=dict(SETTINGS), rows=rows)
    write_json(NUMBERS, measured)
    text = section(NUMBERS)
    write_section(REPO / "docs" / "REPRODUCTION.md", "cpu-kernels", text)
    print(text)


def section(numbers: Path) -> str:
    """The block from the committed comparison (``docs/results/cpu_kernels.json``)."""
    run = json.loads(numbers.read_text())
    lines = [
        f"Machine: {machine_of(run)}. `python benchmarks/cpu_kernels.py`: the seeded initial weights and one "
        "seeded SGD step (batch 32) of each model in a fresh process per kernel choice, against the processor's "
        f"own choice ({run['provenance']['cpu_capability']}).",
        "",
        "| model | kernels | ATen dispatch | initial weights | loss | gradients | largest relative gradient "
        "difference |",
        "|---|---|---|---|---|---|---|",
    ]
    for model, settings in run["rows"].items():
        for label, row in settings.items():
            loss = "equal" if row["loss_equal"] else f"differs by {row['loss_difference']:.1e}"
            grads = "bitwise equal" if row["grads_equal"] else "differ"
            if "init_equal" not in row:
                init = "not compared"
            else:
                init = "equal" if row["init_equal"] else f"differ by up to {row['largest_init_difference']:.1e}"
            lines.append(
                f"| {model} | {label} | {row['capability']} | {init} | {loss} | {grads} | "
                f"{row['largest_relative_grad_difference']:.1e} |"
            )
    return "\n".join(lines)


DOC_BLOCKS = {"cpu-kernels": lambda: section(NUMBERS)} if NUMBERS.exists() else {}


if __name__ == "__main__":
    main()
