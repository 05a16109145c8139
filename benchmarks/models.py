"""Train-step time, activation memory, peak memory and parameter count of the model families.

    python benchmarks/models.py [--depth 56] [--batch-size 128] [--repeats 15] [--device cpu]
    python benchmarks/models.py --imagenet [--batch-size 8]   # ll_resnet50 vs plain_resnet50 vs resnet50

Each looks-linear model is measured three times in the same run: as it is (the CReLU -> conv pair
keeps the CReLU's input for backward and recomputes the concatenation), "before", with
``timm_ll.set_crelu_recompute(model, False)`` (the concatenation kept, as the package did before
issue 10), and with the CReLU and CReLU-conv classes of commit ``OLD_COMMIT`` (read from git: the
pair's code before issue 39's rework; same parameters, swapped class by class).
Step times are medians over ``--repeats`` steps with the models alternated step by step, so
that a slow phase of the machine hits every model alike.

- Activation memory: bytes of the distinct tensors autograd keeps for backward during one
  forward pass (counted with ``torch.autograd.graph.saved_tensors_hooks``): exact.
- Peak memory: on CPU, the growth of the peak resident set size over one train step, in a fresh
  process per model (it includes the first step's gradients and momentum buffers); on CUDA,
  ``max_memory_allocated`` above what was held before the step.

Writes the numbers to docs/results/models.json (or models-imagenet.json) and the "models" (or
"models-imagenet") block of docs/PERFORMANCE.md, suffixed with the device when it is not the CPU.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import timm
import torch

import timm_ll  # noqa: F401
from timm_ll.app.reporting import machine, machine_of, publish

REPO = Path(__file__).resolve().parents[1]

FAMILIES = ("plain", "ll_plain", "crelu_plain", "cifar_resnet")
IMAGENET = ("resnet50", "ll_resnet50", "plain_resnet50")
BEFORE = " (before)"  # suffix of a looks-linear model measured with the concatenation kept
OLD_COMMIT = "d0c4c85"  # the CReLU-conv pair before issue 39 (a tensor attribute and a global switch)
OLD = f" ({OLD_COMMIT})"  # suffix of a looks-linear model measured with that commit's CReLU and CReLU-conv classes
CHANNELS_LAST = " [channels-last]"  # suffix of a model and batch in the channels-last memory format


def model_of(label: str) -> str:
    """The timm name a row's label measures: ``"tat_slim110 (d0c4c85)"``, ``"plain56 [channels-last]"`` ->
    the name before the first space."""
    return label.split(" ")[0]


def with_old_crelu_classes(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with every CReLU and CReLUConv*d switched to ``OLD_COMMIT``'s classes (same parameters)."""
    source = subprocess.run(
        ["git", "show", f"{OLD_COMMIT}:timm_ll/layers.py"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    spec = importlib.util.spec_from_loader(f"timm_ll_layers_{OLD_COMMIT}", loader=None)
    old = importlib.util.module_from_spec(spec)
    exec(compile(source, f"{OLD_COMMIT}:timm_ll/layers.py", "exec"), old.__dict__)
    for module in model.modules():
        if isinstance(module, timm_ll.CReLU):
            module.__class__ = old.CReLU
        elif type(module).__name__.startswith("CReLUConv"):
            module.__class__ = getattr(old, type(module).__name__)
    return model


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


class Subject:
    """One row: a model, its optimizer and data, and whether the CReLU recomputation is on."""

    def __init__(self, label: str, batch_size: int, device: str) -> None:
        self.label, self.name = label, model_of(label)
        self.model = timm.create_model(self.name).to(device).train()
        if BEFORE in label:
            timm_ll.set_crelu_recompute(self.model, False)
        if OLD in label:
            with_old_crelu_classes(self.model)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)
        self.x = torch.randn(batch_size, *self.model.pretrained_cfg["input_size"], device=device)
        if CHANNELS_LAST in label:
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, self.model.num_classes, (batch_size,), device=device)
        self.times: list[float] = []

    def step(self) -> None:
        self.opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()
        self.opt.step()

    def timed_step(self) -> None:
        sync = torch.cuda.synchronize if self.x.is_cuda else (lambda: None)
        sync()
        start = time.perf_counter()
        self.step()
        sync()
        self.times.append(time.perf_counter() - start)

    def activation_bytes(self) -> int:
        return saved_activation_bytes(self.model, self.x)

    def cuda_peak_mib(self) -> float:
        self.opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        held = torch.cuda.memory_allocated()
        self.step()
        return (torch.cuda.max_memory_allocated() - held) / 2**20


def cpu_peak_mib(label: str, batch_size: int) -> float:
    """Peak RSS growth of one train step of ``label`` in a fresh process (see the module docstring).

    The peak is Linux's VmHWM, reset to the current RSS through ``/proc/self/clear_refs`` just
    before the step (a child's ``ru_maxrss`` would start at its parent's size).
    """
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import models; "
        "s = models.Subject(sys.argv[2], int(sys.argv[3]), 'cpu'); "
        "kib = lambda key: int(next(l for l in open('/proc/self/status') if l.startswith(key)).split()[1]); "
        "open('/proc/self/clear_refs', 'w').write('5'); base = kib('VmRSS:'); s.step(); "
        "print((kib('VmHWM:') - base) / 1024)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), label, str(batch_size)],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.strip().splitlines()[-1])


def measure(labels: list[str], batch_size: int, repeats: int, device: str) -> dict[str, dict[str, float]]:
    subjects = [Subject(label, batch_size, device) for label in labels]
    for subject in subjects:
        subject.step()  # warm-up
    for _ in range(repeats):
        for subject in subjects:  # alternated step by step
            subject.timed_step()
    rows = {}
    for s in subjects:
        rows[s.label] = dict(
            step_s=statistics.median(s.times),
            act_mib=s.activation_bytes() / 2**20,
            peak_mib=s.cuda_peak_mib() if device == "cuda" else float("nan"),
            params=sum(p.numel() for p in s.model.parameters()),
        )
    del subjects
    gc.collect()
    if device == "cpu":
        for label in labels:
            rows[label]["peak_mib"] = cpu_peak_mib(label, batch_size)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=56)
    parser.add_argument("--imagenet", action="store_true", help="ResNet-50 family at 224x224 instead")
    parser.add_argument("--batch-size", type=int, default=None, help="default 128 (CIFAR), 8 (ImageNet)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    batch = args.batch_size or (8 if args.imagenet else 128)
    names = list(IMAGENET if args.imagenet else (f"{f}{args.depth}" for f in FAMILIES))
    ll_name = "ll_resnet50" if args.imagenet else f"ll_plain{args.depth}"
    labels = names[:2] + [ll_name + OLD, ll_name + BEFORE] + names[2:]
    name = block_name(args.imagenet, args.device)
    numbers = REPO / "docs" / "results" / f"{name}.json"
    measured = dict(
        machine=machine(),
        imagenet=args.imagenet,
        depth=args.depth,
        batch_size=batch,
        repeats=args.repeats,
        device=args.device,
        base=names[0],
        ll=ll_name,
        step_target=2.05,  # issue 39 (2.1 before it)
        rows=measure(labels, batch, args.repeats, args.device),
    )
    print(publish(numbers, measured, section, REPO / "docs" / "PERFORMANCE.md", name))
    print(f"wrote {numbers.relative_to(REPO)} and the {name!r} block of docs/PERFORMANCE.md")


def block_name(imagenet: bool, device: str) -> str:
    """The docs block (and results file) of a run: ``models`` or ``models-imagenet``, suffixed with a non-CPU device."""
    return ("models-imagenet" if imagenet else "models") + ("" if device == "cpu" else f"-{device}")


def section(numbers: Path) -> str:
    """The block of one run, from its measured numbers (``docs/results/<block>.json``)."""
    run = json.loads(numbers.read_text())
    rows, base_name, ll_name, repeats = run["rows"], run["base"], run["ll"], run["repeats"]
    base = rows[base_name]
    title = "ResNet-50 family, 224x224" if run["imagenet"] else f"CIFAR families at depth {run['depth']}"
    peak_what = "peak CUDA above weights (MiB)" if run["device"] == "cuda" else "peak RSS growth (MiB)"
    lines = [
        f"## {title}, batch {run['batch_size']} ({run['device']})",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/models.py {'--imagenet ' if run['imagenet'] else ''}"
        f"--device {run['device']} --repeats {repeats}`; step time is the median of {repeats} SGD steps "
        f"(forward, backward, update) after one warm-up, the models alternated step by step; ratios are against "
        f"`{base_name}` from the same run. *(before)*: the same model with the CReLU concatenation kept for "
        "backward (`set_crelu_recompute(model, False)`), as the package did before issue 10; "
        "*(<commit>)*: the same model with that commit's CReLU and CReLU-conv classes, where a run has that row. "
        "Activations: distinct tensors autograd saves for backward (exact). Peak: see `benchmarks/models.py`.",
        "",
        f"| model | params | step (s) | step / {base_name} | activations (MiB) | act. / {base_name} "
        f"| {peak_what} | peak / {base_name} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['params']:,} | {r['step_s']:.3f} | {r['step_s'] / base['step_s']:.2f}x "
            f"| {r['act_mib']:.1f} | {r['act_mib'] / base['act_mib']:.2f}x "
            f"| {r['peak_mib']:.0f} | {r['peak_mib'] / base['peak_mib']:.2f}x |"
        )
    ll, before = rows[ll_name], rows[ll_name + BEFORE]
    old = next(
        (
            rows[label] | dict(label=label)
            for label in rows
            if label.startswith(ll_name + " (") and label != ll_name + BEFORE
        ),
        None,
    )
    step_target = run.get("step_target", 2.1)
    lines += [
        "",
        f"Targets (LL at plain memory): activations of {ll_name} <= 1.1x {base_name} -> "
        f"**{ll['act_mib'] / base['act_mib']:.2f}x** (before: {before['act_mib'] / base['act_mib']:.2f}x)"
        + (
            f"; step <= {step_target}x {base_name} -> **{ll['step_s'] / base['step_s']:.2f}x** "
            f"(before, same run: {before['step_s'] / base['step_s']:.2f}x"
            + (f"; {old['label']}: {old['step_s'] / base['step_s']:.2f}x" if old else "")
            + ")."
            if not run["imagenet"]
            else "."
        ),
    ]
    return "\n".join(lines)


# The H100 run of 2026-11-27 came back as Markdown (kept in docs/results/ as the script printed its table, without
# the log line it wrote after it), before the results were kept as numbers and before the CReLU recomputation
# landed. Its block renders that output with its target line named for what it was, without the peak column (see
# below), and with what the reader needs to read it.
_LEGACY_NOTES = {
    False: "`ll_plain56`'s activation memory here is 1.50x `plain56`'s; block `models` has it since",
    True: "`ll_resnet50`'s activation memory here is 1.37x `resnet50`'s; block `models-imagenet` has it since",
}


def _legacy_section(raw: Path, imagenet: bool) -> str:
    lines = [
        line.replace("Targets (issue: model zoo):", "The targets set at the time:")
        for line in raw.read_text().strip().splitlines()
    ]
    # that run's last column, "peak CUDA", was an allocator peak never reset between models (it rises in run order):
    # no one model's number, so it is left out of the table
    lines = [line.rsplit("|", 2)[0] + "|" if line.startswith("|") else line for line in lines]
    table_end = max(i for i, line in enumerate(lines) if line.startswith("|")) + 1
    peak_note = (
        "That run also logged a peak CUDA memory per model, left out here: its allocator peak was not reset "
        "between models (the values rise in run order), so it was no one model's peak; the activations column "
        "compares the models."
    )
    predates = (
        f"*Measured on 2026-11-27, before the CReLU recomputation (the CReLU -> conv pair keeps only the CReLU's "
        f"input for backward): {_LEGACY_NOTES[imagenet]}. Not measured again: `benchmarks/device_run.sh` has not "
        "been run with `BENCH=1` on a GPU since.*"
    )
    return "\n".join([*lines[:table_end], "", peak_note, *lines[table_end:], "", predates])


def _doc_blocks() -> dict:
    results, blocks = REPO / "docs" / "results", {}
    for imagenet in (False, True):
        for device in ("cpu", "cuda"):
            name = block_name(imagenet, device)
            if (results / f"{name}.json").exists():
                blocks[name] = lambda path=results / f"{name}.json": section(path)
            elif (results / f"{name}.md").exists():
                blocks[name] = lambda path=results / f"{name}.md", imagenet=imagenet: _legacy_section(path, imagenet)
    return blocks


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = _doc_blocks()


if __name__ == "__main__":
    main()
