"""Train-step time, activation memory and parameter count of the four CIFAR families.

    python benchmarks/models.py [--depth 56] [--batch-size 128] [--repeats 5] [--device cpu]
    python benchmarks/models.py --imagenet [--batch-size 8]   # ll_resnet50 vs plain_resnet50 vs resnet50

Writes the "models" (or "models-imagenet") section of docs/PERFORMANCE.md, suffixed with the
device when it is not the CPU.
Activation memory is the bytes of the distinct tensors autograd keeps for backward during one
forward pass (counted with torch.autograd.graph.saved_tensors_hooks), which is what a train
step holds at its peak beside weights and gradients; on CUDA the allocator's peak is reported too.
"""

from __future__ import annotations

import argparse
import gc
from pathlib import Path

import timm
import torch

import timm_ll  # noqa: F401
from timm_ll.reporting import machine, median_time, write_section

REPO = Path(__file__).resolve().parents[1]

FAMILIES = ("plain", "ll_plain", "crelu_plain", "cifar_resnet")
IMAGENET = ("resnet50", "ll_resnet50", "plain_resnet50")


def saved_activation_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def measure(name: str, batch_size: int, repeats: int, device: str) -> dict[str, float]:
    model = timm.create_model(name).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, *model.pretrained_cfg["input_size"], device=device)
    y = torch.randint(0, model.num_classes, (batch_size,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    seconds = median_time(step, repeats)
    peak = float("nan")
    if device == "cuda":
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
        step()
        peak = (torch.cuda.max_memory_allocated() - held) / 2**20  # what one step adds to the weights and state
    return dict(
        step_s=seconds,
        act_mib=saved_activation_bytes(model, x) / 2**20,
        peak_mib=peak,
        params=sum(p.numel() for p in model.parameters()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--imagenet", action="store_true", help="ResNet-50 family at 224x224 instead")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (CIFAR), 8 (ImageNet)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    batch = args.batch_size or (8 if args.imagenet else 128)
    names = IMAGENET if args.imagenet else tuple(f"{f}{args.depth}" for f in FAMILIES)
    rows = {}
    for name in names:
        rows[name] = measure(name, batch, args.repeats, args.device)
        gc.collect()  # free this model before the next one is measured
        if args.device == "cuda":
            torch.cuda.empty_cache()
    base_name = names[0]
    base = rows[base_name]
    title = "ResNet-50 family, 224x224" if args.imagenet else f"CIFAR families at depth {args.depth}"
    lines = [
        f"## {title}, batch {batch} ({args.device})",
        "",
        f"Machine: {machine()}. `python benchmarks/models.py {'--imagenet ' if args.imagenet else ''}"
        f"--device {args.device}`; step time is the median of "
        f"{args.repeats} SGD steps (forward, backward, update) after one warm-up; ratios are against `{base_name}` "
        "from the same run. Activation memory: distinct tensors autograd saves for backward.",
        "",
        f"| model | params | step (s) | step / {base_name} | activations (MiB) | act. / {base_name} |"
        + (" peak CUDA above weights+state (MiB) |" if args.device == "cuda" else ""),
        "|---|---|---|---|---|---|" + ("---|" if args.device == "cuda" else ""),
    ]
    for name, r in rows.items():
        line = (
            f"| {name} | {r['params']:,} | {r['step_s']:.3f} | {r['step_s'] / base['step_s']:.2f}x "
            f"| {r['act_mib']:.1f} | {r['act_mib'] / base['act_mib']:.2f}x |"
        )
        lines.append(line + (f" {r['peak_mib']:.0f} |" if args.device == "cuda" else ""))
    if not args.imagenet:
        ll = rows[f"ll_plain{args.depth}"]
        lines += [
            "",
            f"Targets (issue: model zoo): ll_plain step <= 2.1x plain -> **{ll['step_s'] / base['step_s']:.2f}x**; "
            f"activation memory <= 1.5x plain -> **{ll['act_mib'] / base['act_mib']:.2f}x**.",
        ]
    section = ("models-imagenet" if args.imagenet else "models") + ("" if args.device == "cpu" else f"-{args.device}")
    path = write_section(REPO / "docs" / "PERFORMANCE.md", section, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
