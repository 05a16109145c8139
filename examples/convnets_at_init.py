"""Shattering of convnets at initialization: the four CIFAR families at depths 20-200, and the ResNet-50 family.

    python examples/convnets_at_init.py [--doc]    # a few minutes on 2 CPU cores

Runs ``timm-ll shatter`` (128-point line probe between two digits images upscaled to
32x32; 32 points at 224x224 for the ResNet-50 family). With ``--doc`` it writes the figures
under docs/figures/, docs/convnets_at_init.json, docs/resnet50_family_at_init.json and the
"convnets-at-init" section of docs/REPRODUCTION.md; otherwise everything goes to a temporary
folder and the section is printed.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from timm_ll.app.reporting import machine, provenance, write_section  # noqa: E402

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


def _finish_report(path: Path) -> dict:
    """The report at ``path``, naming the machine it ran on, its figure paths rewritten relative to the
    repository (no machine path in docs)."""
    report = json.loads(path.read_text())
    report["machine"] = machine()
    report["provenance"] = provenance()
    report["figures"] = [
        str(Path(f).resolve().relative_to(REPO)) if Path(f).resolve().is_relative_to(REPO) else Path(f).name
        for f in report["figures"]
    ]
    path.write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--doc", action="store_true", help="write the numbers, figures and section into docs/")
    parser.add_argument(
        "--redraw", action="store_true", help="only redraw the depth figure in docs/ from the committed JSON"
    )
    args = parser.parse_args()
    if args.redraw:
        print(redraw(DOCS / "convnets_at_init.json", DOCS / "figures" / "convnets_at_init"))
        return
    docs = DOCS if args.doc else Path(tempfile.mkdtemp(prefix="timm-ll-convnets-"))
    cifar_json, imagenet_json = docs / "convnets_at_init.json", docs / "resnet50_family_at_init.json"
    from timm_ll.app.data import load_source
    from timm_ll.app.survey import family_jobs, shatter
    from timm_ll.models.cifar import FAMILIES

    data = load_source("digits", "train")  # the command's default data
    shatter(
        family_jobs([f for f in FAMILIES if f != "ll_slim"], [20, 56, 110, 200]),
        data,
        out=docs / "figures" / "convnets_at_init",
        json_path=cifar_json,
        data_name="digits",
    )
    jobs = [(name, None, None) for name in ("ll_resnet50", "plain_resnet50", "resnet50")]
    out = docs / "figures" / "resnet50_family_at_init"
    shatter(jobs, data, out=out, json_path=imagenet_json, data_name="digits", num_points=32)
    _finish_report(cifar_json)
    _finish_report(imagenet_json)
    text = section(cifar_json, imagenet_json)
    if args.doc:
        write_section(REPO / "docs" / "REPRODUCTION.md", "convnets-at-init", text)
    print(text)


def current_fits(results: list[dict]) -> dict[str, dict]:
    """Each family's decay law, fitted again from the committed readings by today's ``fit_decay`` (which needs
    four positive readings: the JSON's stored fits were made when three sufficed)."""
    from lightning_callbacks import functional as F

    fits = {}
    for family in dict.fromkeys(r["family"] for r in results):
        rows = [r for r in results if r["family"] == family]
        law, rate, r2 = F.fit_decay([r["depth"] for r in rows], [r["neighbor_corr"] for r in rows])
        fits[family] = dict(law=law, rate=rate, r2=r2)
    return fits


def redraw(cifar_json: Path, folder: Path) -> Path:
    """The depth figure again from the committed readings, without measuring (the other figures need the
    gradients, which the JSON does not keep)."""
    from timm_ll.app.survey import FIGURE_NAMES, depth_curves_figure

    results = json.loads(cifar_json.read_text())["results"]
    path = folder / FIGURE_NAMES[0]
    depth_curves_figure(results, current_fits(results)).savefig(path, dpi=110)
    return path


def section(cifar_json: Path, imagenet_json: Path) -> str:
    """The docs section, from the two JSON reports: both tables, the fitted laws and the figures."""
    cifar, imagenet = json.loads(cifar_json.read_text()), json.loads(imagenet_json.read_text())
    from lightning_callbacks import functional as F

    def fit_text(family: str) -> str:
        # a law only where one holds (R² >= 0.9, a nonzero rate): "constant" or "no law fits" otherwise
        rows = [r for r in cifar["results"] if r["family"] == family]
        fit = F.fit_decay([r["depth"] for r in rows], [r["neighbor_corr"] for r in rows])
        return f"{family}: {fit.describe()}{fit.unfitted_note()}"

    fits = [fit_text(family) for family in current_fits(cifar["results"])]
    lines = [
        f"Machine: {cifar['machine']}. `python examples/convnets_at_init.py --doc` (the numbers are in "
        "`docs/convnets_at_init.json` and `docs/resnet50_family_at_init.json`).",
        "",
        f"CIFAR families at init, {cifar['num_points']}-point line probe between two digits images (3x32x32), "
        "BN with running statistics (identity at init):",
        "",
        *_table(cifar["results"]),
        "",
        "Fitted decay of the neighbor correlation with depth (a law where R² >= 0.9): " + "; ".join(fits) + ".",
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
    return "\n".join(lines)


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {
    "convnets-at-init": lambda: section(DOCS / "convnets_at_init.json", DOCS / "resnet50_family_at_init.json")
}


if __name__ == "__main__":
    main()
