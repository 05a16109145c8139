"""Train-step time, activation memory and parameter count of the four CIFAR families.

    python benchmarks/models.py [--depth 56] [--batch-size 128] [--repeats 5] [--device cpu]

Writes the "models" section of docs/PERFORMANCE.md (or the "models-<device>" one with --device cuda).
Activation memory is the bytes of the distinct tensors autograd keeps for backward during one
forward pass (counted with torch.autograd.graph.saved_tensors_hooks), which is what a train
step holds at its peak beside weights and gradients; on CUDA the allocator's peak is reported too.
"""

from __future__ import annotations

import argparse

import timm
import torch
from _report import machine, median_time, write_section

import timm_ll  # noqa: F401

FAMILIES = ("plain", "ll_plain", "crelu_plain", "cifar_resnet")


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
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    seconds = median_time(step, repeats)
    peak = float("nan")
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        step()
        peak = torch.cuda.max_memory_allocated() / 2**20
    return dict(
        step_s=seconds,
        act_mib=saved_activation_bytes(model, x) / 2**20,
        peak_mib=peak,
        params=sum(p.numel() for p in model.parameters()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    rows = {f: measure(f"{f}{args.depth}", args.batch_size, args.repeats, args.device) for f in FAMILIES}
    base = rows["plain"]
    lines = [
        f"## CIFAR families at depth {args.depth}, batch {args.batch_size} ({args.device})",
        "",
        f"Machine: {machine()}. `python benchmarks/models.py --device {args.device}`; step time is the median of "
        f"{args.repeats} SGD steps (forward, backward, update) after one warm-up; ratios are against `plain` "
        "from the same run. Activation memory: distinct tensors autograd saves for backward.",
        "",
        "| model | params | step (s) | step / plain | activations (MiB) | act. / plain |"
        + (" peak CUDA (MiB) |" if args.device == "cuda" else ""),
        "|---|---|---|---|---|---|" + ("---|" if args.device == "cuda" else ""),
    ]
    for family, r in rows.items():
        line = (
            f"| {family}{args.depth} | {r['params']:,} | {r['step_s']:.3f} | {r['step_s'] / base['step_s']:.2f}x "
            f"| {r['act_mib']:.1f} | {r['act_mib'] / base['act_mib']:.2f}x |"
        )
        lines.append(line + (f" {r['peak_mib']:.0f} |" if args.device == "cuda" else ""))
    ll = rows["ll_plain"]
    lines += [
        "",
        f"Targets (issue: model zoo): ll_plain step <= 2.1x plain -> **{ll['step_s'] / base['step_s']:.2f}x**; "
        f"activation memory <= 1.5x plain -> **{ll['act_mib'] / base['act_mib']:.2f}x**.",
    ]
    section = "models" if args.device == "cpu" else f"models-{args.device}"
    path = write_section("PERFORMANCE.md", section, "\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
