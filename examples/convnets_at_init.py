"""Shattering of convnets at initialization: the four CIFAR families at depths 20-200, and the ResNet-50 family.

    python examples/convnets_at_init.py     # a few minutes on 2 CPU cores

Runs ``timm-ll shatter`` (128-point line probe between two digits images upscaled to
32x32; 32 points at 224x224 for the ResNet-50 family) and writes docs/figures/convnets_*.png,
docs/convnets_at_init.json and the "convnets-at-init" section of docs/REPRODUCTION.md.
"""

from __future__ import annotations

import json
from pathlib import Path

from timm_ll.cli import main as timm_ll_main
from timm_ll.reporting import machine, write_section  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

DOCS = REPO / "docs"


def _table(results: list[dict]) -> list[str]:
    lines = [
        "| model | neighbor corr. | effective rank | stable rank | spectral slope | precision |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        slope = "n/a (flat)" if r["spectral_slope"] is None else f"{r['spectral_slope']:.2f}"
        lines.append(
            f"| {r['model']} | {r['neighbor_corr']:.3f} | {r['effective_rank']:.1f} | "
            f"{r['stable_rank']:.2f} | {slope} | {r['dtype']} |"
        )
    return lines


def main() -> None:
    cifar_json, imagenet_json = DOCS / "convnets_at_init.json", DOCS / "resnet50_family_at_init.json"
    timm_ll_main(
        [
            "shatter",
            "--depths",
            "20,56,110,200",
            "--json",
            str(cifar_json),
            "--out",
            str(DOCS / "figures" / "convnets_at_init"),
        ]
    )
    timm_ll_main(
        [
            "shatter",
            "--models",
            "ll_resnet50,plain_resnet50,resnet50",
            "--num-points",
            "32",
            "--json",
            str(imagenet_json),
            "--out",
            str(DOCS / "figures" / "resnet50_family_at_init"),
        ]
    )
    cifar, imagenet = json.loads(cifar_json.read_text()), json.loads(imagenet_json.read_text())
    fits = [
        f"{family}: {fit['law']} decay, rate {fit['rate']:.3g}, R² {fit['r2']:.2f}"
        for family, fit in cifar["fits"].items()
        if fit["law"]
    ]
    lines = [
        f"Machine: {machine()}. `python examples/convnets_at_init.py` (the numbers are in "
        "`docs/convnets_at_init.json` and `docs/resnet50_family_at_init.json`).",
        "",
        f"CIFAR families at init, {cifar['num_points']}-point line probe between two digits images (3x32x32), "
        "BN with running statistics (identity at init):",
        "",
        *_table(cifar["results"]),
        "",
        "Fitted decay of the neighbor correlation with depth: " + "; ".join(fits) + ".",
        "",
        "![neighbor correlation vs depth](figures/convnets_at_init/neighbor_corr.png)",
        "![covariance images](figures/convnets_at_init/covariance.png)",
        "",
        f"ResNet-50 family at init (ImageNet size, {imagenet['num_points']}-point probe at 224x224):",
        "",
        *_table(imagenet["results"]),
        "",
        "![gradient traces](figures/resnet50_family_at_init/gradient_traces.png)",
    ]
    write_section(REPO / "docs" / "REPRODUCTION.md", "convnets-at-init", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
