"""Cost of the shattering measurement: one measurement in training steps, and its overhead beside Cockpit's.

    pip install -e ".[bench,hf]"     # Cockpit and BackPACK for the side-by-side; transformers for GPT-2
    python benchmarks/monitor_overhead.py [--repeats 15] [--fit-repeats 5] [--steps 640]

0. One measurement against its bare pass: ``functional.input_gradients`` on the same points (the
   same lines, input and every block, eval mode, the measurer's chunks), and against itself
   without the forward kernel (the block outputs at the lines' endpoints not kept, nothing to add
   up); ``--repeats`` rounds, the actions back to back in each and their order rotated from round to
   round; the ratios are medians of the per-round ratios, shown with their range.
1. One measurement at the defaults (4 lines x 64 points, input and every block, all statistics;
   ``ShatteringMeasurer.measure``, what every adapter pays before its figures) against one
   training step of the same model on 256 samples (as many as the probe has points), alternated,
   medians: ``ll_plain20`` and ``cifar_resnet20`` (AdamW-free SGD, 32x32 images) and a GPT-2
   configuration of 4 layers, width 128, 4 heads, vocabulary 8192, 64-token sequences (AdamW;
   a sample is a sequence, trained and measured with its labels, as the Hugging Face convention has it).
2. Its overhead over a 10,000-step run at the default schedule (20 measurements), from those
   medians and the median SGD step at the recipe's batch of 128 (the CIFAR nets).
3. Side by side with Cockpit (Schneider et al. 2021) in its "economy" configuration, both at
   every 64 steps, on one BN-free convnet (BackPACK needs one) and one loop: the same manual-
   optimization LightningModule, with nothing, with our monitor, or with Cockpit's context
   around the backward pass; fits alternated, medians.

Writes the "monitor" section of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as L
import timm
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import timm_ll  # noqa: F401
from lightning_callbacks import ShatteringMeasurer, ShatteringMonitor
from lightning_callbacks import functional as F
from lightning_callbacks.measure import MIN_CHUNK, early_steps
from timm_ll.app.reporting import machine, machine_of, publish

REPO = Path(__file__).resolve().parents[1]


def _trainer(**kwargs: Any) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**(defaults | kwargs))


GPT2_SHAPE = dict(n_layer=4, n_embd=128, n_head=4, vocab_size=8192, n_positions=64)
VIT_NAME = "vit_tiny_32"
# subjects built from a timm name with arguments: a timm ViT at CIFAR size (4x4 patches: 65 tokens of width 192)
TIMM_SUBJECTS = {VIT_NAME: ("vit_tiny_patch16_224", dict(img_size=32, patch_size=4))}


def _subject(name: str) -> tuple[nn.Module, Any, Any, torch.optim.Optimizer]:
    """(network, its call on ``n`` samples as (args, kwargs), the loss of that call, optimizer)."""
    torch.manual_seed(0)
    if name == "gpt2":
        from transformers import GPT2Config, GPT2LMHeadModel

        net = GPT2LMHeadModel(GPT2Config(**GPT2_SHAPE, bos_token_id=0, eos_token_id=0))
        ids = torch.randint(0, GPT2_SHAPE["vocab_size"], (256, 64))

        def call(n: int) -> tuple[tuple, dict]:
            return (), {"input_ids": ids[:n], "labels": ids[:n]}

        def loss(n: int) -> torch.Tensor:
            return net(**call(n)[1]).loss

        return net, call, loss, torch.optim.AdamW(net.parameters(), lr=1e-4)
    timm_name, kwargs = TIMM_SUBJECTS.get(name, (name, {}))
    net = timm.create_model(timm_name, num_classes=10, **kwargs)
    x, y = torch.randn(256, 3, 32, 32), torch.randint(0, 10, (256,))
    return (
        net,
        lambda n: ((x[:n],), {}),
        lambda n: nn.functional.cross_entropy(net(x[:n]), y[:n]),
        torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9),
    )


class _WithoutKernel(ShatteringMeasurer):
    """The measurer with the forward kernel left out: no endpoint outputs kept, so none added up."""

    def _gradients(self, measured: nn.Module, probe: torch.Tensor, chunk: int | None, keep: list[int]) -> Any:
        return super()._gradients(measured, probe, chunk, [])


def abba(actions: dict[str, Any], a: str, b: str, rounds: int) -> dict[str, list[float]]:
    """Seconds of ``actions[a]`` and ``actions[b]`` over ``rounds`` rounds in ABBA order (a, b, then b, a...), so
    that neither always runs first: a small difference is not lost in drift of the machine's pace."""
    pairs: dict[str, list[float]] = {a: [], b: []}
    for round_ in range(rounds):
        for key in (a, b) if round_ % 2 == 0 else (b, a):
            start = time.perf_counter()
            actions[key]()
            pairs[key].append(time.perf_counter() - start)
    return pairs


def token_costs(measurer: ShatteringMeasurer, rounds: int, actions: dict[str, Any]) -> dict[str, Any]:
    """What the token kernel and the verdict add to one measurement: ``rounds`` pairs of the measurement with and
    without the token kernel (``token_kernel=False``), ABBA; the token statistic's own time (every block's
    ``token_readings`` at every line's two ends, on the activations one measurement keeps) and the verdict's,
    medians of 20."""
    from lightning_callbacks import verdict
    from lightning_callbacks.lines import share_gradients

    pairs = abba(actions, "measure", "no_tokens", rounds)
    measured = F.unwrap_compiled(measurer.model)
    lines = share_gradients(measured, measurer.probes(), **measurer._gradient_options(measured))
    mask = measurer.call.token_mask() if measurer.call is not None else None
    result = measurer.history[-1]

    def median_of(action: Any, repeats: int = 20) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    ends_by_block: dict[str, list[torch.Tensor]] = {}
    for line in lines:
        for name, activations in line.activations.items():
            ends_by_block.setdefault(name, []).append(activations)

    def statistic() -> None:  # as the measurer reads them: each block's lines in one batched computation
        for ends in ends_by_block.values():
            F.token_readings_of_lines(ends, measurer.options.token_layout, mask)

    return dict(token_pairs=pairs, token_statistic=median_of(statistic), verdict=median_of(lambda: verdict(result)))


def measurement_vs_step(name: str, repeats: int, kernel_rounds: int) -> dict[str, Any]:
    """Seconds of one default measurement, of its bare pass, of it without the forward kernel and of training
    steps on 256 and 128 samples: every repeat (alternated) and the medians; then ``kernel_rounds`` more pairs
    of the measurement with and without the kernel alone (the kernel's cost is small beside the rounds' spread)."""
    net, call, loss, optimizer = _subject(name)
    args, kwargs = call(128)  # the lines between samples of a training batch of 128: the probe runs in chunks of 128
    measurer = ShatteringMeasurer(net)  # the defaults: 4 lines x 64 points, auto blocks
    measurer.measure(0, *args, **kwargs)
    without_kernel = _WithoutKernel(net)
    without_kernel.measure(0, *args, **kwargs)
    without_tokens = ShatteringMeasurer(net, token_kernel=False)
    without_tokens.measure(0, *args, **kwargs)
    probe = torch.cat(measurer.probes()).to(next(net.parameters()).dtype)
    measured = F.unwrap_compiled(net)
    forward_fn = measurer.call.forward_fn(measured)
    chunk = max(measurer.batch_size, MIN_CHUNK)

    def bare() -> None:
        F.input_gradients(measured, probe, blocks=measurer.block_names, chunk_size=chunk, forward_fn=forward_fn)

    def step(batch: int) -> None:
        optimizer.zero_grad(set_to_none=True)
        loss(batch).backward()
        optimizer.step()

    actions = {
        "measure": lambda: measurer.measure(1),
        "bare": bare,
        "no_kernel": lambda: without_kernel.measure(1),
        "step256": lambda: step(256),
        "step128": lambda: step(128),
    }
    times: dict[str, list[float]] = {key: [] for key in actions}
    for action in actions.values():
        action()  # warm-up
    order = list(actions)
    for round_ in range(repeats):
        # alternated, and rotated each round: every action follows every other one as often (a measurement
        # right after a training step would otherwise always meet colder caches than one after the bare pass)
        for key in order[round_ % len(order) :] + order[: round_ % len(order)]:
            start = time.perf_counter()
            actions[key]()
            times[key].append(time.perf_counter() - start)
    pairs = abba(actions, "measure", "no_kernel", kernel_rounds)
    medians = {key: statistics.median(values) for key, values in times.items()}
    tokens = token_costs(measurer, kernel_rounds, {**actions, "no_tokens": lambda: without_tokens.measure(1)})
    return medians | {"every": times, "kernel_pairs": pairs} | tokens


def bn_free_net() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    )


class ManualLoop(L.LightningModule):
    """One SGD loop for all three runs; ``cockpit`` wraps the backward pass in Cockpit's context."""

    def __init__(self, cockpit_every: int | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.model = bn_free_net()
        self.cockpit = None
        if cockpit_every:
            from backpack import extend
            from cockpit import Cockpit
            from cockpit.utils import configuration, schedules

            self.model = extend(self.model)
            self.loss_fn = extend(nn.CrossEntropyLoss())
            schedule = schedules.linear(cockpit_every)
            self.cockpit = Cockpit(
                self.model.parameters(), quantities=configuration.configuration("economy", track_schedule=schedule)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        x, y = batch
        optimizer.zero_grad()
        logits = self(x)
        loss = nn.functional.cross_entropy(logits, y)
        if self.cockpit is None:
            self.manual_backward(loss)
        else:
            step = self.global_step
            info = {
                "batch_size": x.shape[0],
                "individual_losses": nn.functional.cross_entropy(logits, y, reduction="none"),
                "loss": loss,
                "optimizer": optimizer.optimizer,
            }
            with self.cockpit(step, info=info):
                loss.backward(create_graph=self.cockpit.create_graph(step))
        optimizer.step()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01, momentum=0.9)


def fit_seconds(kind: str, steps: int) -> float:
    L.seed_everything(0, verbose=False)
    data = DataLoader(TensorDataset(torch.randn(4096, 3, 32, 32), torch.randint(0, 10, (4096,))), batch_size=128)
    callbacks = (
        [ShatteringMonitor(every_n_steps=64, log_spaced_start=False, log_figures=kind == "ours+figures")]
        if kind.startswith("ours")
        else []
    )
    module = ManualLoop(cockpit_every=64 if kind == "cockpit" else None)
    trainer = _trainer(max_steps=steps, callbacks=callbacks, default_root_dir=tempfile.mkdtemp())
    start = time.perf_counter()
    with contextlib.redirect_stdout(None):
        trainer.fit(module, data)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=15, help="alternated repeats of each measurement and step")
    parser.add_argument(
        "--kernel-rounds", type=int, default=40, help="pairs of the measurement with and without the forward kernel"
    )
    parser.add_argument("--fit-repeats", type=int, default=5, help="alternated repeats of each side-by-side fit")
    parser.add_argument("--steps", type=int, default=640, help="steps of each side-by-side fit (10 measurements)")
    parser.add_argument("--models", default=f"ll_plain20,cifar_resnet20,gpt2,{VIT_NAME}")
    args = parser.parse_args()

    costs = {name: measurement_vs_step(name, args.repeats, args.kernel_rounds) for name in args.models.split(",")}
    count = len(set(early_steps(1000)) | set(range(0, 10_001, 1000)))
    try:
        import cockpit  # noqa: F401

        kinds = ("base", "ours", "ours+figures", "cockpit")
    except ImportError:
        print('Cockpit is not installed (pip install -e ".[bench]"): the side-by-side is skipped')
        kinds = ("base", "ours", "ours+figures")
    fits: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(args.fit_repeats):
        for kind in kinds:  # alternated, so drift in machine load hits every loop alike
            fits[kind].append(fit_seconds(kind, args.steps))
    measured = dict(
        machine=machine(),
        repeats=args.repeats,
        kernel_rounds=args.kernel_rounds,
        fit_repeats=args.fit_repeats,
        steps=args.steps,
        measurements=count,
        costs=costs,
        fits=fits,
    )
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "monitor"))


def section(numbers: Path) -> str:
    """The block from the measured times (``docs/results/monitor.json``): ratios, extrapolation, side-by-side."""
    run = json.loads(numbers.read_text())
    costs, fits, count, repeats, steps = run["costs"], run["fits"], run["measurements"], run["repeats"], run["steps"]
    fit_repeats = run.get("fit_repeats", repeats)
    kinds = list(fits)
    base = statistics.median(fits["base"])
    overhead = {kind: 100 * (statistics.median(fits[kind]) / base - 1) for kind in kinds if kind != "base"}
    # Cockpit's comparison paired by round: each round's overhead ratio, then their median
    rounds = list(zip(fits["base"], fits["ours"], fits.get("cockpit", [])))
    paired = [(ours / b - 1) / (cockpit / b - 1) for b, ours, cockpit in rounds if cockpit > b]

    lines = [
        "## ShatteringMonitor cost",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/monitor_overhead.py --repeats {repeats} "
        + (f"--kernel-rounds {run['kernel_rounds']} " if "kernel_rounds" in run else "")
        + f"--fit-repeats {fit_repeats} --steps {steps}`.",
        "",
        *_bare_pass_lines(costs, repeats),
        "One measurement at the defaults (`ShatteringMeasurer.measure`: 4 lines x 64 points = 256, input and "
        "every block, all statistics; the adapters' figures are not in it, see the side-by-side below) against one "
        "training step of the same model on 256 samples (for GPT-2 a sample is a 64-token sequence, with its "
        "labels), and the overhead over a 10,000-step run at the default schedule "
        f"({count} measurements: step 0, the log-spaced start, then every 1000) against training steps of 128 "
        f"samples, extrapolated from those two medians (not a 10,000-step run); medians of {repeats}, "
        "alternated:",
        "",
        "| model | measurement (s) | step at 256 (s) | measurement / step | target | step at 128 (s) "
        "| overhead at 10k steps (extrapolated) |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {"ll_plain20": 0.7, "gpt2": 1.0}
    for name, c in costs.items():
        run_overhead = 100 * count * c["measure"] / (10_000 * c["step128"])
        target = f"<= {targets[name]:.1f}x" if name in targets else "-"
        lines.append(
            f"| {name} | {c['measure']:.3f} | {c['step256']:.3f} | **{c['measure'] / c['step256']:.2f}x** | {target} "
            f"| {c['step128']:.3f} | **{run_overhead:.2f}%** |"
        )
    lines += [
        "",
        "Targets: one measurement <= 0.7x a training step of as many samples for `ll_plain20` (a forward pass and "
        "an input-only backward pass are about two thirds of a step), <= 1.0x for the GPT-2 configuration.",
        "",
        f"Side by side at every 64 steps, {steps}-step fits of a BN-free 3-conv net (32x32, batch 128), "
        "one manual-optimization loop, medians of "
        f"{fit_repeats} fits alternated. *ours*: the monitor's statistics, as Cockpit's economy configuration "
        "computes quantities and leaves plotting to a separate tool; *ours+figures*: with its PNGs at init and "
        "at the end too (no figure logger in these fits). Without either "
        f"{base:.2f} s; "
        + "; ".join(f"{kind} {statistics.median(fits[kind]):.2f} s (**{overhead[kind]:+.1f}%**)" for kind in overhead)
        + ". Every fit (s): "
        + "; ".join(f"{kind} {', '.join(f'{t:.2f}' for t in fits[kind])}" for kind in kinds)
        + ".",
    ]
    if paired:
        lines += [
            "",
            "Target: ours <= half of Cockpit's overhead. Paired by round (each round's fits ran back to back), the "
            "overhead ratios ours/Cockpit are " + ", ".join(f"{r:.2f}" for r in paired) + f": median "
            f"**{statistics.median(paired):.2f}**. (The ratio of the medians, ours {overhead['ours']:+.1f}% against "
            f"Cockpit {overhead['cockpit']:+.1f}%, is {overhead['ours'] / overhead['cockpit']:.2f}; pairing by round "
            "keeps a slow round from counting against one side only.)",
            "",
            _resolution(fits),
        ]
    return "\n".join(lines)


def _bare_pass_lines(costs: dict[str, Any], repeats: int) -> list[str]:
    """What one measurement costs over its bare pass, and what the forward kernel adds (when measured): the
    median of the ratios paired by round (the three ran back to back in each round), with their range."""
    rows = {name: c for name, c in costs.items() if "bare" in c}
    if not rows:
        return []

    def spread(values: list[float], fmt: str = ".3f") -> str:
        return f"{min(values):{fmt}} to {max(values):{fmt}}"

    pairs = next(iter(rows.values())).get("kernel_pairs")  # the kernel's own rounds, where they were run
    kernel_source = (
        f". What the kernel adds comes from {len(pairs['measure'])} further rounds of the measurement with and "
        "without it alone, in alternating order (its cost is small beside the spread of a round):"
        if pairs
        else ":"
    )
    lines = [
        "One measurement against its bare pass, `functional.input_gradients` on the same 256 points (the same "
        "lines, input and every block, eval mode, the measurer's chunks), and against itself without the forward "
        f"kernel; {repeats} rounds, the actions in each round back to back and their order rotated from round to "
        "round; the ratios are the median of the per-round ratios, with their range; times are medians, with the "
        "range of every round" + kernel_source,
        "",
        "| model | measurement (s) | bare pass (s) | measurement / bare | target | without the kernel (s) "
        "| the kernel adds | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    token_rows = []
    for name, c in rows.items():
        every = c["every"]
        over_bare = [m / b for m, b in zip(every["measure"], every["bare"])]
        with_and_without = c.get("kernel_pairs", every)  # the kernel's own rounds where they were run
        kernel = [100 * (m / k - 1) for m, k in zip(with_and_without["measure"], with_and_without["no_kernel"])]
        lines.append(
            f"| {name} | {c['measure']:.3f} ({spread(every['measure'])}) | {c['bare']:.3f} ({spread(every['bare'])}) "
            f"| **{statistics.median(over_bare):.2f}x** ({spread(over_bare, '.2f')}) | <= 1.15x "
            f"| {c['no_kernel']:.3f} ({spread(every['no_kernel'])}) "
            f"| **{statistics.median(kernel):+.1f}%** ({spread(kernel, '+.1f')}) | < 3% |"
        )
        if "token_pairs" in c:
            pairs = c["token_pairs"]
            added = [100 * (m / t - 1) for m, t in zip(pairs["measure"], pairs["no_tokens"])]
            token_rows.append(
                f"| {name} | {statistics.median(pairs['measure']):.3f} | {statistics.median(pairs['no_tokens']):.3f} "
                f"| **{statistics.median(added):+.1f}%** ({spread(added, '+.1f')}) | < 3% "
                f"| {1000 * c['token_statistic']:.2f} | {1e6 * c['verdict']:.0f} |"
            )
    if token_rows:
        rounds = len(next(c["token_pairs"] for c in rows.values() if "token_pairs" in c)["measure"])
        lines += [
            "",
            f"What the token kernel and the verdict add to one measurement: {rounds} rounds of the measurement with "
            "and without the token kernel (`token_kernel=False`), in ABBA order, medians and the median of the "
            "per-round ratios with their range; the token statistic's own time (every block's token readings at "
            "every line's two ends, on what one measurement keeps) and the verdict's, medians of 20:",
            "",
            "| model | measurement (s) | without the token kernel (s) | the token kernel adds | target "
            "| token statistic (ms) | verdict (µs) |",
            "|---|---|---|---|---|---|---|",
            *token_rows,
        ]
    return lines + [""]


def _resolution(fits: dict[str, list[float]]) -> str:
    """What the side-by-side can tell: the baseline fits' own spread against the overheads it compares."""
    base = fits["base"]
    spread = max(base) - min(base)
    extra = {kind: statistics.median(fits[kind]) - statistics.median(base) for kind in ("ours", "cockpit")}
    resolved = spread < abs(extra["cockpit"] - extra["ours"])
    return (
        f"What this comparison can tell: the baseline fits alone span {spread:.2f} s (fastest to slowest of "
        f"{len(base)}), against median overheads of {extra['ours']:.2f} s (ours) and {extra['cockpit']:.2f} s "
        "(Cockpit). "
        + (
            "The difference between the two overheads is larger than that spread."
            if resolved
            else "That spread is larger than the difference between the two overheads, so these rounds do not "
            "resolve which tool costs less on this small net, nor whether ours is within half of Cockpit's: "
            "that needs more rounds, or runs interleaved step by step, with the spread shown."
        )
    )


NUMBERS = REPO / "docs" / "results" / "monitor.json"
# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"monitor": lambda: section(NUMBERS)}


if __name__ == "__main__":
    main()
