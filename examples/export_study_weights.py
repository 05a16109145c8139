"""Export the long study's seed-0 networks as loadable weights: ``weights/<model>/`` in timm's sharing format.

    python examples/export_study_weights.py OUT [--results docs/results/depth_study_cpu-long.jsonl]

``OUT`` is the long study's output folder (``examples/long_study.sh``'s third argument), which holds each run's
checkpoint. For every committed row of the study at seed 0 whose model is ``cifar_resnet``, ``tat_slim`` or
``ll_slim`` at depth 20 or 110, this runs ``timm-ll export`` on the run's checkpoint with the row's test accuracy
(written into ``config.json`` and the card) into ``weights/<model>/`` (``config.json``, ``model.safetensors``,
``README.md``); rows already exported are left as they are. Load one with

    timm.create_model("cifar_resnet20", pretrained=True,
                      pretrained_cfg_overlay=dict(file="weights/cifar_resnet20/model.safetensors"))

``tests/test_study_weights.py`` evaluates the depth-20 ones on the CIFAR-10 test set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WEIGHTS = REPO / "weights"
FAMILIES = ("cifar_resnet", "tat_slim", "ll_slim")
DEPTHS = (20, 110)
DATA = "CIFAR-10 (trained on its 50,000 training images, tested on its 10,000 test images)"


def wanted(row: dict) -> bool:
    """A row whose network the README promises as loadable weights."""
    return row.get("seed") == 0 and row.get("family") in FAMILIES and row.get("depth") in DEPTHS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="the long study's output folder (its runs' checkpoints)")
    parser.add_argument("--results", type=Path, default=REPO / "docs" / "results" / "depth_study_cpu-long.jsonl")
    args = parser.parse_args(argv)
    rows = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    for row in filter(wanted, rows):
        folder = WEIGHTS / row["model"]
        if (folder / "model.safetensors").exists():
            print(f"{folder.relative_to(REPO)}: already exported")
            continue
        checkpoint = args.out / row["checkpoint"]
        command = [sys.executable, "-m", "timm_ll.app.cli", "export", str(checkpoint), str(folder)]
        command += ["--test-accuracy", str(row["test_acc"]), "--data", DATA]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
