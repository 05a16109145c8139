"""The timm-ll command.

timm-ll shatter measures gradient shattering of models at initialization on a line probe
between two real images and prints a table, writes figures and (with --json) every number.
timm-ll train trains any timm model with a CIFAR recipe in Lightning, with the
ShatteringMonitor, and reports test accuracy.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from pathlib import Path
from typing import Any

from timm_ll.app.recipe import BATCH_SIZE, MONITOR_EVERY, SURVEY_POINTS, Recipe

DATA_HELP = (
    "digits (scikit-learn's 8x8 digits, embedded: no download), cifar10 (torchvision's copy under "
    "~/.cache/timm-ll, downloaded where a network exists), a CIFAR-10-style zip or folder laid out as "
    "train/<class>/*.jpg and test/<class>/*.jpg, or an ImageFolder directory (<class>/*.jpg)"
)
SHATTER_EXAMPLES = """examples:
  timm-ll shatter                                   # 7 CIFAR families x depths 20, 56, 110 on digits
  timm-ll shatter --depths 20,56,110,200 --json shatter.json --out figures/
  timm-ll shatter --models resnet50,vit_small_patch16_224 --num-points 64
  timm-ll shatter --data path/to/cifar10 --bn-mode batch   # your CIFAR-10 copy (folder or zip)
"""
TRAIN_EXAMPLES = """examples:
  timm-ll train --model cifar_resnet20 --data digits --max-steps 200 --json result.json
  timm-ll train --model ll_plain56 --data path/to/cifar10 --epochs 30   # folder or zip: train/<class>/*.jpg
  timm-ll train --model ll_plain56 --data cifar10 --epochs 30           # torchvision's copy
"""
BN_MODE_HELP = (
    "how batch-norm layers normalize the probe: eval = with their running statistics (each probe point "
    "is independent, as at inference); batch = with the probe's own statistics, held fixed in the backward "
    "pass (the paper's 'BN over the grid')"
)
# the paper's four, and the equal-compute skip-free families: LL's and the tailored rectifiers' (the depth-200 result)
DEFAULT_FAMILIES = ("ll_plain", "crelu_plain", "plain", "cifar_resnet", "ll_slim", "tat_plain", "tat_slim")


class UsageError(Exception):
    """A mistake in the command line; ``main`` prints it as one line and exits with status 2."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the examples' layout and shows every option's default."""


def _parse_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _parse_depths(text: str) -> list[int]:
    try:
        return [int(d) for d in _parse_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--depths takes comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="timm-ll", description=__doc__, formatter_class=_HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    shatter = commands.add_parser(
        "shatter",
        help="measure gradient shattering of models at init",
        description="Measure gradient shattering of models at initialization on a line between two real images.",
        formatter_class=_HelpFormatter,
        epilog=SHATTER_EXAMPLES,
    )
    shatter.add_argument(
        "--families",
        type=_parse_list,
        default=",".join(DEFAULT_FAMILIES),
        help="CIFAR families, crossed with --depths",
    )
    shatter.add_argument("--depths", type=_parse_depths, default="20,56,110", help="registered CIFAR depths")
    shatter.add_argument(
        "--models",
        type=_parse_list,
        default="",
        help="any timm model names instead of families x depths (input size from pretrained_cfg)",
    )
    shatter.add_argument("--data", default="digits", help=DATA_HELP)
    shatter.add_argument(
        "--num-points", type=int, default=SURVEY_POINTS, help="points on the line probe (the default keeps it short)"
    )
    shatter.add_argument("--bn-mode", choices=("eval", "batch"), default="eval", help=BN_MODE_HELP)
    shatter.add_argument(
        "--dtype",
        choices=("auto", "float64", "float32"),
        default="auto",
        help="precision of the measurement; auto: float64 for looks-linear models, whose exact cancellation "
        "leaves ~1e-3 relative round-off noise in float32 at depth 56+, float32 for the rest",
    )
    shatter.add_argument("--seed", type=int, default=0, help="seed of the weights and of the two probe images")
    shatter.add_argument("--out", type=Path, default=Path("timm-ll-shatter"), help="folder for the PNG figures")
    shatter.add_argument("--json", type=Path, default=None, help="write every number to this JSON file")

    train = commands.add_parser(
        "train",
        help="train a timm model with a CIFAR recipe and the ShatteringMonitor",
        description="Train any timm model with a CIFAR recipe in Lightning, with the ShatteringMonitor attached.",
        formatter_class=_HelpFormatter,
        epilog=TRAIN_EXAMPLES,
    )
    train.add_argument("--model", required=True, default=argparse.SUPPRESS, help="any timm model name, e.g. ll_plain56")
    train.add_argument("--data", default="digits", help=DATA_HELP + " (its train and test splits)")
    length = train.add_mutually_exclusive_group()
    length.add_argument("--epochs", type=float, default=30.0, help="training length in epochs")
    length.add_argument("--max-steps", type=int, default=None, help="training length in optimizer steps")
    train.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="training batch size")
    # the recipe's defaults, written once (Recipe's module imports no Lightning)
    train.add_argument("--lr", type=float, default=Recipe.lr, help="peak learning rate")
    train.add_argument(
        "--warmup", type=float, default=Recipe.warmup_fraction, help="one-cycle warm-up, a fraction of the run"
    )
    train.add_argument(
        "--weight-decay", type=float, default=Recipe.weight_decay, help="on weights, not on norm scales and biases"
    )
    train.add_argument(
        "--schedule", choices=("onecycle", "cosine"), default=Recipe.schedule, help="learning-rate schedule"
    )
    train.add_argument(
        "--label-smoothing", type=float, default=Recipe.label_smoothing, help="cross-entropy label smoothing"
    )
    train.add_argument("--train-subset", type=int, default=None, help="train on a fixed class-balanced subset")
    train.add_argument("--accelerator", default="auto", help="auto, cpu, gpu (bf16 + channels_last on GPU)")
    train.add_argument("--precision", default=None, help="Lightning precision (None: bf16-mixed on GPU, else 32)")
    train.add_argument(
        "--monitor-every", type=int, default=MONITOR_EVERY, help="ShatteringMonitor period in steps (0: off)"
    )
    train.add_argument(
        "--compile", action="store_true", help="compile the network (~30 s on a CPU; pays for long runs only)"
    )
    train.add_argument("--seed", type=int, default=0, help="seed of the weights, the data order and augmentation")
    train.add_argument("--out", type=Path, default=Path("timm-ll-runs"), help="folder for logs and checkpoints")
    train.add_argument("--json", type=Path, default=None, help="write the result to this JSON file")

    export = commands.add_parser(
        "export",
        help="write a timm-ll train checkpoint in timm's sharing format",
        description="Write the network of a timm-ll train checkpoint (.ckpt) into a folder in timm's own format "
        "(config.json, model.safetensors, README.md), which timm.create_model('local-dir:<folder>', "
        "pretrained=True) loads, and which can be pushed to the Hugging Face Hub as it is.",
        formatter_class=_HelpFormatter,
        epilog="example:\n  timm-ll export timm-ll-runs/ll_plain20/version_0/checkpoints/last.ckpt ll_plain20-digits",
    )
    export.add_argument("checkpoint", type=Path, help="the .ckpt that timm-ll train wrote")
    export.add_argument("folder", type=Path, help="the folder to write (created)")
    export.add_argument(
        "--test-accuracy",
        type=float,
        default=None,
        help="the run's test accuracy as a fraction (e.g. 0.78), written into config.json and the card",
    )
    export.add_argument("--data", default=None, help="the data the run trained and was tested on (e.g. 'CIFAR-10')")
    return parser


# ---- shatter --------------------------------------------------------------------------------
def _unknown_model_message(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else "timm.list_models() lists every name"
    return f"unknown model {name!r}: {hint}"


def check_model_names(names: list[str]) -> None:
    """Raise :class:`UsageError` for any name that is not a registered timm model."""
    import timm

    import timm_ll  # noqa: F401  (registers the models even where the import hook is off)

    for name in names:
        if not timm.is_model(name):
            raise UsageError(_unknown_model_message(name, timm.list_models()))


def shatter_jobs(args: argparse.Namespace) -> list[tuple[str, str | None, int | None]]:
    """``(registered model name, family, depth)`` for each model to measure; bad names raise :class:`UsageError`."""
    from lightning_callbacks import ShatteringOptions
    from timm_ll.models.cifar import FAMILIES, REGISTERED_DEPTHS

    try:  # the monitor's own check of a probe, before any data is read
        ShatteringOptions(num_points=args.num_points)
    except ValueError as error:
        raise UsageError(f"--num-points {args.num_points}: {error}") from None
    if args.models:
        check_model_names(args.models)
        return [(name, None, None) for name in args.models]
    for family in args.families:
        if family not in FAMILIES:
            raise UsageError(
                f"unknown family {family!r}: use {', '.join(FAMILIES)}, or --models with any timm model name"
            )
    for depth in args.depths:
        if depth not in REGISTERED_DEPTHS:
            raise UsageError(
                f"--depths {depth}: use registered CIFAR depths ({', '.join(map(str, REGISTERED_DEPTHS))}); "
                f"other 6n+2 depths: timm.create_model('ll_plain20', depth=...) in Python"
            )
    return [(f"{family}{depth}", family, depth) for family in args.families for depth in args.depths]


def _print_table(console: Any, results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    from rich.table import Table

    table = Table(
        title=f"gradient shattering at init ({args.data}, {args.num_points}-point line probe, bn_mode={args.bn_mode})",
        caption="flat: the gradient is the same at every point (a linear net), so it has no spectrum; "
        "fwd kernel: the forward kernel, the cosine of the logits at the two images (1: mapped to one direction), "
        f"beside the images' own ({results[0]['input_cosine']:.3f}); "
        "tokens: the token kernel, the mean cosine between the last block's spatial positions (1: collapsed)"
        if results
        else None,
    )
    table.add_column("model", no_wrap=True)
    for column in ("neighbor corr.", "eff. rank", "spectral slope", "fwd kernel", "tokens"):
        table.add_column(column, justify="right")
    for r in results:
        slope = "flat" if math.isnan(r["spectral_slope"]) else f"{r['spectral_slope']:.2f}"
        kernel, tokens = f"{r['kernel']:.3f}", f"{r.get('token_kernel', math.nan):.3f}"
        table.add_row(r["model"], f"{r['neighbor_corr']:.3f}", f"{r['effective_rank']:.1f}", slope, kernel, tokens)
    console.print(table)
    for r in results:  # where each failure first shows, block by block (lightning_callbacks.verdict)
        if "verdict" in r:
            console.print(
                f"{r['model']}: {r['verdict']['line'].removeprefix('verdict at step 0: ')}",
                highlight=False,
                soft_wrap=True,
            )


def run_shatter(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import Progress

    from timm_ll.app.data import load_source
    from timm_ll.app.survey import shatter

    console = Console()
    jobs = shatter_jobs(args)
    data = load_source(args.data, "train")
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("measuring", total=len(jobs))

        def measuring(name: str) -> None:
            progress.update(task, description=f"measuring {name}", advance=0 if name == jobs[0][0] else 1)

        report = shatter(
            jobs,
            data,
            out=args.out,
            json_path=args.json,
            data_name=args.data,
            num_points=args.num_points,
            bn_mode=args.bn_mode,
            dtype=args.dtype,
            seed=args.seed,
            on_model=measuring,
        )
    _print_table(console, report["results"], args)
    if args.json is not None:
        console.print(f"numbers: {args.json}")
    console.print(f"figures: {', '.join(report['figures'])}")
    return report


# ---- train ----------------------------------------------------------------------------------
def run_train(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import asdict

    from rich.console import Console

    if args.batch_size < 1:
        raise UsageError(f"--batch-size {args.batch_size}: use a positive integer")
    if not 0 < args.warmup < 1:
        raise UsageError(f"--warmup {args.warmup}: use a fraction of the run in (0, 1)")
    check_model_names([args.model])  # before any data is decoded

    from timm_ll.app.data import load_source
    from timm_ll.app.reporting import write_json
    from timm_ll.app.training import Recipe, balanced_subset, fit_and_test

    console = Console()
    train, test = load_source(args.data, "train"), load_source(args.data, "test")
    if args.train_subset:
        train = balanced_subset(train, args.train_subset, seed=args.seed)
    steps_per_epoch = max(1, len(train) // args.batch_size)
    max_steps = args.max_steps or round(args.epochs * steps_per_epoch)
    recipe = Recipe(
        lr=args.lr,
        warmup_fraction=args.warmup,
        weight_decay=args.weight_decay,
        schedule=args.schedule,
        label_smoothing=args.label_smoothing,
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
        compile=args.compile,
        data_name=args.data,
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
        f"({result.steps} steps, {result.seconds:.0f} s)\n"
        f"logs, figures and checkpoint: {result.log_dir}\n"
        f"the trained network in timm's format: {result.export} "
        f"(timm.create_model('local-dir:{result.export}', pretrained=True))"
    )
    if args.json is not None:
        write_json(args.json, report)
    return report


# ---- export ---------------------------------------------------------------------------------
def run_export(args: argparse.Namespace) -> Path:
    from timm_ll.export import export_checkpoint

    try:
        folder = export_checkpoint(args.checkpoint, args.folder, test_accuracy=args.test_accuracy, data=args.data)
    except (FileNotFoundError, ValueError) as error:
        raise UsageError(str(error)) from None
    print(f"wrote {folder}: load it with timm.create_model('local-dir:{folder}', pretrained=True)")
    return folder


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from timm_ll.app.data import DataSourceError

    try:
        if args.command == "shatter":
            run_shatter(args)
        elif args.command == "train":
            run_train(args)
        elif args.command == "export":
            run_export(args)
    except (UsageError, DataSourceError) as error:
        print(f"timm-ll: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
