"""The timm zoo at initialization: how shattered is each architecture's input gradient before training?

    python examples/zoo_at_init.py --data path/to/cifar10 [--doc]    # about 15 minutes on 2 CPU cores
    python examples/zoo_at_init.py --preset tiny --data digits       # seconds: checks the logic

About 25 architectures (ResNet, ResNet-D, RegNet, EfficientNet, MobileNetV3, ConvNeXt, ViT,
DeiT, Swin, MLP-Mixer, ResMLP, VGG, DenseNet, and our looks-linear and plain skip-free
ResNet-50s), each created by name at timm's default init and measured as ``timm-ll shatter
--models`` does: a 64-point line between two real images (CIFAR-10, upscaled to 224x224),
the gradient of a fixed random projection of the logits (of the pre-logits features where timm
zero-initializes the classifier, which would make the gradient identically zero). Models with
batch norm are measured
with both ``bn_mode``s: ``eval`` (running statistics: identity at init) and ``batch`` (the
probe's own statistics, the paper's setting). ``--doc`` writes a table sorted by neighbor
correlation and one figure into docs/REPRODUCTION.md (section "zoo-at-init").
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

from matplotlib.figure import Figure
from torch import nn

from lightning_callbacks.plotting import plot_model_bars
from timm_ll.app.reporting import append_result, machine, machines_of, provenance, read_results, write_section

REPO = Path(__file__).resolve().parents[1]
ZOO = (
    "resnet18",
    "resnet50",
    "resnet50d",
    "regnetx_002",
    "regnety_016",
    "efficientnet_b0",
    "mobilenetv3_small_100",
    "mobilenetv3_large_100",
    "convnext_atto",
    "convnext_tiny",
    "vit_tiny_patch16_224",
    "vit_small_patch16_224",
    "deit_tiny_patch16_224",
    "deit_small_patch16_224",
    "swin_tiny_patch4_window7_224",
    "mixer_s16_224",
    "mixer_b16_224",
    "resmlp_12_224",
    "vgg11",
    "vgg11_bn",
    "densenet121",
    "ll_resnet50",
    "plain_resnet50",
    "ll_resnet18",
    "plain_resnet18",
)
PRESETS = {"zoo": dict(models=ZOO, points=64), "tiny": dict(models=("resnet18", "vit_tiny_patch16_224"), points=4)}


def has_batch_norm(name: str) -> bool:
    import timm

    model = timm.create_model(name, pretrained=False)
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def zero_head(name: str) -> bool:
    """Whether timm initializes the model's classifier to zeros."""
    import timm

    head = timm.create_model(name, pretrained=False).get_classifier()
    return isinstance(head, nn.Linear) and not head.weight.any()


def survey(args: argparse.Namespace) -> list[dict]:
    """One row per (model, bn_mode): the statistics of ``timm_ll.app.survey.measure_at_init``, appended as they come."""
    from timm_ll.app.data import load_source
    from timm_ll.app.survey import measure_at_init

    preset = PRESETS[args.preset]
    results_path = args.out / f"zoo_{args.preset}.jsonl"
    results_path.parent.mkdir(parents=True, exist_ok=True)
    rows = read_results(results_path)
    done = {(r["model"], r["bn_mode"]) for r in rows}
    data = load_source(args.data, "train")
    for name in preset["models"]:
        for bn_mode in ("eval", "batch") if has_batch_norm(name) else ("eval",):
            if (name, bn_mode) in done:
                continue
            start = time.perf_counter()
            options = dict(num_points=preset["points"], bn_mode=bn_mode, dtype="auto", seed=0)
            # a zero-initialized classifier (MLP-Mixer, ResMLP) makes the gradient identically zero, which
            # reads as flat: those models are read out from their pre-logits features (num_classes=0)
            kwargs = {"num_classes": 0} if zero_head(name) else {}
            row, _ = measure_at_init(name, data, **options, **kwargs)
            row["readout"] = "pre-logits" if kwargs else "logits"
            seconds = round(time.perf_counter() - start, 1)
            row = dict(row, bn_mode=bn_mode, seconds=seconds, machine=machine(), provenance=provenance())
            rows.append(append_result(results_path, row))
            print(f"{name} ({bn_mode}): neighbor correlation {row['neighbor_corr']:.3f}", flush=True)
    return rows


def _slope_text(slope: float | None) -> str:
    return "flat" if slope is None or math.isnan(slope) else f"{slope:.2f}"


def table(rows: list[dict]) -> list[str]:
    """Sorted by the eval-mode neighbor correlation, highest (smoothest) first, ties by name (a stable order)."""
    by = {(r["model"], r["bn_mode"]): r for r in rows}
    models = sorted({r["model"] for r in rows}, key=lambda m: (-by[(m, "eval")]["neighbor_corr"], m))
    lines = [
        "| model | neighbor corr. (eval BN) | (batch BN) | effective rank | spectral slope | precision |",
        "|---|---|---|---|---|---|",
    ]
    for model in models:
        row, batch = by[(model, "eval")], by.get((model, "batch"))
        slope = _slope_text(row["spectral_slope"])
        batch_corr = "-" if batch is None else f"{batch['neighbor_corr']:.3f}"
        marked = f"{model}*" if row.get("readout") == "pre-logits" else model
        lines.append(
            f"| {marked} | {row['neighbor_corr']:.3f} | {batch_corr} "
            f"| {row['effective_rank']:.1f} | {slope} | {row['dtype']} |"
        )
    return lines


def figure(rows: list[dict]) -> Figure:
    fig = Figure(figsize=(11.0, 0.6 + 0.3 * len({r["model"] for r in rows})), layout="constrained")
    for index, bn_mode in enumerate(("eval", "batch")):
        values = {r["model"]: r["neighbor_corr"] for r in rows if r["bn_mode"] == bn_mode}
        title = "eval-mode BN (and models without BN)" if bn_mode == "eval" else "batch-statistics BN"
        plot_model_bars(values, ax=fig.add_subplot(1, 2, index + 1), title=title)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="zoo")
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10-jpeg.zip"))
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "timm-ll-zoo")
    parser.add_argument("--doc", action="store_true", help="write the table and figure into docs/")
    args = parser.parse_args()
    start = time.perf_counter()
    rows = survey(args)
    figures = REPO / "docs" / "figures" if args.doc else args.out
    figures.mkdir(parents=True, exist_ok=True)
    figure(rows).savefig(figures / "zoo_at_init.png", dpi=100)
    text = section(rows, PRESETS[args.preset]["points"])
    print(text + f"\n({time.perf_counter() - start:.0f} s)")
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "zoo-at-init", text)


def section(rows: list[dict], points: int) -> str:
    """The docs section of the zoo survey: its setting, the table (smoothest first) and the figure."""
    seconds = sum(r["seconds"] for r in rows)
    lines = [
        f"Machine: {machines_of(rows)}. `python examples/zoo_at_init.py --doc` ({seconds / 60:.0f} minutes of "
        f"measurement): {points}-point line between two CIFAR-10 training images upscaled "
        "to each model's input size (224x224), timm's default init, the gradient of a fixed random projection of "
        "the logits (of the pre-logits features where timm zero-initializes the classifier, marked *); looks-linear "
        "models in float64 (`--dtype auto`). Sorted by "
        "the eval-mode neighbor correlation; *batch BN* normalizes with the probe's statistics (the paper's setting).",
        "",
        *table(rows),
        "",
        "![the zoo at init](figures/zoo_at_init.png)",
    ]
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    "zoo-at-init": lambda: section(
        read_results(REPO / "docs" / "results" / "zoo_at_init.jsonl"), PRESETS["zoo"]["points"]
    )
}


if __name__ == "__main__":
    main()
