"""Cost of the zero-import hook at Python start-up (no timm imported).

    python benchmarks/startup.py [--runs 20]

Reads ``python -X importtime -c pass``: the hook module's own import time at start-up, against
the whole start-up's imports. Writes docs/results/startup.json and the "startup" block of docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

from timm_ll.app.reporting import machine, machine_of, publish

REPO = Path(__file__).resolve().parents[1]


def import_times() -> tuple[int, int]:
    """(hook's cumulative import time, all top-level imports' cumulative time), in microseconds."""
    err = subprocess.run([sys.executable, "-X", "importtime", "-c", "pass"], capture_output=True, text=True).stderr
    hook, total = 0, 0
    for line in err.splitlines():
        if not line.startswith("import time:") or "|" not in line or "cumulative" in line:
            continue
        _, cumulative, raw_name = line[len("import time:") :].split("|")
        if not raw_name.startswith("  "):  # top-level entries: one space of indent, nested ones have more
            total += int(cumulative)
        if raw_name.strip() == "_timm_ll_autoregister":
            hook = int(cumulative)
    return hook, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    samples = [import_times() for _ in range(args.runs)]
    if not any(h for h, _ in samples):
        raise SystemExit("the hook was not imported at start-up: install timm-ll (pip install -e .) first")
    measured = dict(machine=machine(), runs=args.runs, samples_us=samples)
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "startup"))


def section(numbers: Path) -> str:
    """The block from the measured import times (``docs/results/startup.json``)."""
    run = json.loads(numbers.read_text())
    hook = statistics.median(h for h, _ in run["samples_us"])
    total = statistics.median(t for _, t in run["samples_us"])
    lines = [
        "## Start-up cost of the zero-import hook",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/startup.py`: `python -X importtime -c pass`, median of "
        f"{run['runs']} runs. The hook module `_timm_ll_autoregister` (imported by its `.pth` file) takes "
        f"**{hook:.0f} µs**, against {total / 1000:.1f} ms for all the imports of a bare start-up "
        f"({100 * hook / total:.1f}%). It imports only `os` and `sys`, both already loaded.",
    ]
    return "\n".join(lines)


NUMBERS = REPO / "docs" / "results" / "startup.json"
# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"startup": lambda: section(NUMBERS)}


if __name__ == "__main__":
    main()
