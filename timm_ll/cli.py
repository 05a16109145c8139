"""The ``timm-ll`` command.

``timm-ll shatter`` measures gradient shattering of models at initialization on a line
probe between two real images and prints a table, writes figures and (with ``--json``)
every number. ``timm-ll train`` trains any timm model with a CIFAR recipe in Lightning, with
the ShatteringMonitor, and reports test accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

EPILOG = """examples:
  timm-ll shatter                                   # 4 CIFAR families x depths 20, 56, 110 on digits
  timm-ll shatter --depths 20,56,110,200 --json shatter.json --out figures/
  timm-ll shatter --models resnet50,vit_small_patch16_224 --num-points 64
  timm-ll shatter --data ../shared/data/cifar10-jpeg.zip --bn-mode batch
  timm-ll train --model ll_plain56 --data ../shared/data/cifar10-jpeg.zip --epochs 30
  timm-ll train --model cifar_resnet20 --data digits --max-steps 200 --json result.json
"""
DEFAULT_FAMILIES = ("ll_plain", "crelu_plain", "plain", "cifar_resnet")


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_depths(text: str) -> list[int]:
    try:
        return [int(d) for d in _parse_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depths takes comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="timm-ll", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG
    )
    commands = parser.add_subparsers(dest="command", required=True)
    shatter = commands.add_parser(
        "shatter",
        help="measure gradient shattering of models at init",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    shatter.add_argument(
        "--families",
        type=_parse_list,
        default=list(DEFAULT_FAMILIES),
        help="CIFAR families, crossed with --depths (default: %(default)s)",
    )
    shatter.add_argument("--depths", type=_parse_depths, default=[20, 56, 110], help="default: 20,56,110")
    shatter.add_argument(
        "--models",
        type=_parse_list,
        default=[],
        help="any timm model names instead of families x depths (input size from pretrained_cfg)",
    )
    shatter.add_argument(
        "--data", default="digits", help="digits (embedded), a CIFAR-style zip/folder, an ImageFolder dir, or cifar10"
    )
    shatter.add_argument(
        "--num-points",
        type=int,
        default=128,
        help="points on the line probe (default 128 keeps the default run under a minute on 2 cores)",
    )
    shatter.add_argument("--bn-mode", choices=("eval", "batch"), default="eval")
    shatter.add_argument(
        "--dtype",
        choices=("auto", "float64", "float32"),
        default="auto",
        help="precision of the measurement; auto (default): float64 for looks-linear models, whose "
        "exact cancellation leaves ~1e-3 relative round-off noise in float32 at depth 56+, "
        "float32 for the rest",
    )
    shatter.add_argument("--seed", type=int, default=0)
    shatter.add_argument("--out", type=Path, default=Path("timm-ll-shatter"), help="folder for the PNG figures")
    shatter.add_argument("--json", type=Path, default=None, help="write every number to this JSON file")

    train = commands.add_parser(
        "train",
        help="train a timm model with a CIFAR recipe and the ShatteringMonitor",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=EPILOG,
    )
    train.add_argument("--model", required=True, help="any timm model name, e.g. ll_plain56")
    train.add_argument("--data", default="digits", help="same sources as for shatter (train and test splits)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=None, help="training length in epochs (default 30)")
    length.add_argument("--max-steps", type=int, default=None, help="training length in optimizer steps")
    train.add_argument("--batch-size", type=int, default=128)
    train.add_argument("--lr", type=float, default=0.1)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--schedule", choices=("onecycle", "cosine"), default="onecycle")
    train.add_argument("--label-smoothing", type=float, default=0.0)
    train.add_argument("--train-subset", type=int, default=None, help="train on a fixed class-balanced subset")
    train.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (bf16 + channels_last on GPU)")
    train.add_argument("--precision", default=None, help="Lightning precision (default: bf16-mixed on GPU, else 32)")
    train.add_argument("--monitor-every", type=int, default=500, help="ShatteringMonitor period in steps (0: off)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", type=Path, default=Path("timm-ll-runs"), help="folder for logs and checkpoints")
    train.add_argument("--json", type=Path, default=None, help="write the result to this JSON file")
    return parser


def _probe_images(data: Any, input_size: tuple[int, int, int], mean: Any, std: Any, seed: int) -> Any:
    import torch
    import torch.nn.functional as F

    gen = torch.Generator().manual_seed(seed)
    first, second = torch.randperm(len(data), generator=gen)[:2].tolist()
    images = data.images[[first, second]].float().div(255)
    channels, height, width = input_size
    if images.shape[1] != channels:
        images = images.mean(1, keepdim=True).repeat(1, channels, 1, 1)
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    mean_t = torch.tensor(mean[:channels] if len(mean) >= channels else [mean[0]] * channels).view(1, -1, 1, 1)
    std_t = torch.tensor(std[:channels] if len(std) >= channels else [std[0]] * channels).view(1, -1, 1, 1)
    return (images - mean_t) / std_t


def run_shatter(args: argparse.Namespace) -> dict[str, Any]:
    import timm
    import torch
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    import timm_ll  # noqa: F401  (registers the models even where the import hook is off)
    from lightning_callbacks import functional as F
    from timm_ll.data import load_source

    console = Console()
    if args.num_points < 2:
        raise SystemExit(f"--num-points {args.num_points}: a probe needs at least 2 points")
    jobs: list[tuple[str, str, int | None]] = (
        [(name, name, None) for name in args.models]
        if args.models
        else [(f"{family}{depth}", family, depth) for family in args.families for depth in args.depths]
    )
    known = set(timm.list_models())
    for name, family, _depth in jobs:
        base = name if args.models else f"{family}20"
        if base not in known:
            raise SystemExit(
                f"unknown model {base!r}: use a timm model name (timm.list_models()) or one of the "
                f"families {', '.join(DEFAULT_FAMILIES)}"
            )
    data = load_source(args.data, "train")
    results: list[dict[str, Any]] = []
    grads_by_model: dict[str, Any] = {}
    start = time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(jobs))
        for name, family, depth in jobs:
            progress.update(task, description=f"measuring {name}")
            torch.manual_seed(args.seed)
            kwargs = {} if depth is None else {"depth": depth}
            model = timm.create_model(f"{family}20" if depth is not None else name, **kwargs)
            looks_linear = getattr(model, "looks_linear", False)  # CifarNet and SkipFreeResNet both say
            dtype = (
                getattr(torch, args.dtype)
                if args.dtype != "auto"
                else (torch.float64 if looks_linear else torch.float32)
            )
            model = model.to(dtype)
            cfg = model.pretrained_cfg
            ends = _probe_images(data, cfg["input_size"], cfg["mean"], cfg["std"], args.seed).to(dtype)
            probe = F.line_probe(ends[0], ends[1], args.num_points)
            # bound memory on large inputs (224x224 timm models): samples are independent in eval mode
            chunk = max(1, (2**22) // probe[0].numel()) if args.bn_mode == "eval" else None
            grads = F.input_gradients(model, probe, bn_mode=args.bn_mode, chunk_size=chunk).input
            grads_by_model[name] = grads
            results.append(
                dict(
                    model=name,
                    family=family,
                    depth=depth,
                    input_size=list(cfg["input_size"]),
                    dtype=str(dtype)[6:],
                    neighbor_corr=F.neighbor_correlation(grads).item(),
                    effective_rank=F.effective_rank(grads).item(),
                    stable_rank=F.stable_rank(grads).item(),
                    spectral_slope=F.spectral_slope(grads).item(),
                )
            )
            progress.advance(task)
    fits = {}
    if not args.models:
        for family in args.families:
            rows = [r for r in results if r["family"] == family]
            law, rate, r2 = F.fit_decay([r["depth"] for r in rows], [r["neighbor_corr"] for r in rows])
            fits[family] = dict(law=law, rate=rate, r2=r2)
    table = Table(
        title=f"gradient shattering at init ({args.data}, {args.num_points}-point line probe, bn_mode={args.bn_mode})"
    )
    for column in ("model", "neighbor corr.", "effective rank", "spectral slope"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in results:
        slope = "flat" if math.isnan(r["spectral_slope"]) else f"{r['spectral_slope']:.2f}"  # no spectrum
        table.add_row(r["model"], f"{r['neighbor_corr']:.3f}", f"{r['effective_rank']:.1f}", slope)
    console.print(table)
    figures = write_figures(args.out, results, grads_by_model, fits)
    report = dict(
        schema="timm-ll/shatter/1",
        data=args.data,
        num_points=args.num_points,
        bn_mode=args.bn_mode,
        dtype=args.dtype,
        seed=args.seed,
        seconds=round(time.perf_counter() - start, 2),
        results=results,
        fits=fits,
        figures=[str(p) for p in figures],
    )
    if args.json is not None:
        _write_json(args.json, report)
        console.print(f"numbers: {args.json}")
    console.print(f"figures: {', '.join(str(p) for p in figures)}")
    return report


def _write_json(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(report), indent=2))


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def write_figures(out: Path, results: list[dict[str, Any]], grads: dict[str, Any], fits: dict[str, Any]) -> list[Path]:
    """Neighbor correlation vs depth per family (with fits), gradient traces and covariance images."""
    from matplotlib.figure import Figure  # bare Figures: no pyplot, no backend needed

    from lightning_callbacks.plotting import (
        fitted_law_curve,
        plot_covariance,
        plot_depth_curves,
        plot_gradient_traces,
    )

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    if fits:
        curves, fitted = {}, {}
        for family, fit in fits.items():
            rows = [r for r in results if r["family"] == family]
            depths = [r["depth"] for r in rows]
            values = [r["neighbor_corr"] for r in rows]
            curves[family] = (depths, values)
            curve = fitted_law_curve(depths, values, fit["law"], fit["rate"])
            if curve is not None:
                fitted[family] = curve
        fig = plot_depth_curves(curves, fits=fitted, title="neighbor correlation vs depth (dashed: fitted law)")
        paths.append(out / "neighbor_corr_vs_depth.png")
        fig.savefig(paths[-1], dpi=110)
    names = list(grads)
    cols = min(3, len(names))
    rows = math.ceil(len(names) / cols)
    for kind, plot in (("gradient_traces", plot_gradient_traces), ("covariance", plot_covariance)):
        fig = Figure(figsize=(4.2 * cols, 3.2 * rows), layout="constrained")
        for i, name in enumerate(names):
            plot(grads[name], ax=fig.add_subplot(rows, cols, i + 1), title=name)
        paths.append(out / f"{kind}.png")
        fig.savefig(paths[-1], dpi=90)
    return paths


def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from rich.console import Console

    from timm_ll.data import load_source
    from timm_ll.training import Recipe, balanced_subset, fit_and_test

    if args.batch_size < 1:
        raise SystemExit(f"--batch-size {args.batch_size}: use a positive integer")
    console = Console()
    train, test = load_source(args.data, "train"), load_source(args.data, "test")
    if args.train_subset:
        train = balanced_subset(train, args.train_subset, seed=args.seed)
    steps_per_epoch = max(1, len(train) // args.batch_size)
    max_steps = args.max_steps or round((args.epochs if args.epochs is not None else 30) * steps_per_epoch)
    recipe = Recipe(
        lr=args.lr, weight_decay=args.weight_decay, schedule=args.schedule, label_smoothing=args.label_smoothing
    )
    console.print(f"training {args.model} on {args.data}: {len(train)} images, {max_steps} steps of {args.batch_size}")
    result = fit_and_test(
        args.model,
        train,
        test,
        max_steps=max_steps,
        batch_size=args.batch_size,
        recipe=recipe,
        out_dir=str(args.out),
        accelerator=args.accelerator,
        precision=args.precision,
        monitor_every=args.monitor_every or None,
        seed=args.seed,
    )
    report = dict(
        schema="timm-ll/train/1",
        data=args.data,
        train_images=len(train),
        batch_size=args.batch_size,
        recipe=asdict(recipe),
        **asdict(result),
    )
    console.print(
        f"[bold]{args.model}: test accuracy {100 * result.test_acc:.2f}%[/bold] "
        f"({result.steps} steps, {result.seconds:.0f} s); logs in {result.log_dir}"
    )
    if args.json is not None:
        _write_json(args.json, report)
    return report


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from timm_ll.data import DataSourceError

    try:
        if args.command == "shatter":
            run_shatter(args)
        elif args.command == "train":
            run_train(args)
    except DataSourceError as error:
        print(f"timm-ll: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
