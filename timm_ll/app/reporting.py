"""Helpers for the benchmarks and the reproduction scripts: the machine's name, timing, results files, a docs section.

The results they write into ``docs/`` name the machine they came from (:func:`machine`) and
replace only their own marked section of a Markdown page (:func:`write_section`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "machine",
    "provenance",
    "machine_of",
    "machines_of",
    "read_results",
    "append_result",
    "budget_of",
    "seed_of",
    "error_points",
    "recipe_of",
    "model_kwargs_of",
    "input_statistic",
    "monitor_summary",
    "MonitorSummary",
    "format_reading",
    "write_section",
    "read_sections",
    "write_json",
    "publish",
]


def machine() -> str:
    """One line naming the machine a benchmark ran on."""
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU only, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"
    return f"{platform.processor() or platform.machine()}; {device}; torch {torch.__version__}; {date.today()}"


def _git(*args: str) -> str | None:
    """A git command's output in the checkout this package runs from (None outside one, or without git)."""
    import subprocess

    try:
        done = subprocess.run(
            ["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _cpu_model() -> str:
    """The processor's model name (Linux's /proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(precision: str | None = None) -> dict[str, Any]:
    """What produced a result, for a results row or a benchmark block: the commit the code ran at (and whether
    its tracked files had uncommitted changes), the library versions, the processor and the instruction set
    torch's CPU kernels dispatch to (``torch.backends.cpu.get_cpu_capability()``: two processors that differ
    here may round differently), the thread count, and the GPU and precision where one was used."""
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return dict(
        commit=commit,
        dirty=None if status is None else bool(status),
        versions={name: installed(name) for name in ("torch", "timm", "lightning", "torchmetrics")},
        cpu=_cpu_model(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(),
        threads=torch.get_num_threads(),
        device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        precision=precision,
    )


def machine_of(run: dict) -> str:
    """A benchmark block's machine line: :func:`machine`'s, and where the run recorded its :func:`provenance`
    (runs from 2b0b3c1 on), the commit, the libraries and the processor's kernels."""
    prov = run.get("provenance")
    if not prov:
        return run["machine"]
    commit = "no commit" if prov["commit"] is None else f"commit {prov['commit'][:7]}"
    if prov.get("dirty"):
        commit += " with uncommitted changes"
    versions = ", ".join(f"{name} {version}" for name, version in prov["versions"].items() if version)
    return (
        f"{run['machine']} ({commit}; {versions}; {prov['cpu']}, {prov['cpu_capability']} kernels, "
        f"{prov['threads']} threads{'' if prov['device'] == 'cpu' else ', ' + prov['device']})"
    )


def machines_of(rows: list[dict]) -> str:
    """The machine line of a results file whose rows may come from several days (a study resumed over
    sessions): one :func:`machine` line when they share it, else each machine with the span of its dates,
    so a block never dates all its rows by the first."""
    spans: dict[str, list[str]] = {}
    for row in rows:
        # machine() ends with "; <date>": split it off so that days of one machine fold into a span
        name, _, day = row["machine"].rpartition("; ")
        spans.setdefault(name or row["machine"], []).append(day if name else "")
    parts = []
    for name, days in spans.items():
        first, last = min(days), max(days)
        parts.append(name if not first else f"{name}; {first}" if first == last else f"{name}; {first} to {last}")
    return " / ".join(parts)


def error_points(row: dict) -> float:
    """A results row's test error in percentage points (rows record ``test_acc`` as a fraction)."""
    return 100 * (1 - row["test_acc"])


def read_results(path: Path | str) -> list[dict]:
    """The rows of a JSON lines results file; none if it does not exist yet (a study that starts afresh)."""
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def append_result(path: Path | str, row: dict) -> dict:
    """Append ``row`` as one JSON line (a study that is cut short keeps every finished row) and return it
    as :func:`read_results` will read it back (tuples become lists), so a resumed study sees the same rows."""
    line = json.dumps(row)
    with Path(path).open("a") as handle:
        handle.write(line + "\n")
    return json.loads(line)


def budget_of(row: dict) -> str:
    """A depth-sweep row's budget: ``"equal-steps"`` or ``"equal-time"`` (rows of older sweeps, which had no
    equal-time runs, do not say)."""
    return row.get("budget", "equal-steps")


def seed_of(row: dict) -> int:
    """A study row's seed (rows of studies from before seeds were varied do not say: they ran with seed 0)."""
    return row.get("seed", 0)


def recipe_of(row: dict) -> dict | None:
    """A study row's recipe (peak LR and warm-up), part of what makes a run: a doubled-LR run of the same
    model and seed is another run. Rows of the oldest sweep do not say (None: they match no recipe given now)."""
    return row.get("recipe")


def model_kwargs_of(row: dict) -> dict:
    """A study row's extra ``timm.create_model`` keywords, part of what makes a run (rows from before they were
    recorded had none)."""
    return row.get("model_kwargs") or {}


def step_ratio(step_times: dict, model: str, reference: str) -> float:
    """How many steps of ``reference`` fit in the time of one step of ``model``, from one run of
    ``benchmarks/step_times.py`` (its medians, so both come from the same machine state)."""
    rows = step_times["rows"]
    return rows[model]["step_s"] / rows[reference]["step_s"]


def input_statistic(entry: dict, key: str = "neighbor_corr") -> float:
    """One monitor reading of a study row's ``shattering`` history: the input-level statistic's mean over the
    probe lines (NaN where the step has no reading, e.g. non-finite gradients)."""
    value = entry["stats"].get(key)
    return float(value[0]) if value is not None else math.nan


@dataclass(frozen=True)
class MonitorSummary:
    """What the monitor read (an input-level statistic) over one run: at init, the lowest and highest readings
    after init with their steps (None if no step after init has a reading), and at the end."""

    init: float
    lowest: tuple[float, int] | None
    highest: tuple[float, int] | None
    end: float


def monitor_summary(row: dict, key: str = "neighbor_corr") -> MonitorSummary:
    """The monitor's readings of a study row's ``shattering`` history, summed up (NaN readings, from a
    gradient with no reading, are left out of the lowest and highest)."""
    readings = sorted((entry["step"], input_statistic(entry, key)) for entry in row["shattering"])
    after = [(value, step) for step, value in readings[1:] if not math.isnan(value)]
    return MonitorSummary(
        init=readings[0][1],
        lowest=min(after, default=None),
        highest=max(after, key=lambda reading: reading[0], default=None),
        end=readings[-1][1],
    )


def format_reading(reading: tuple[float, int] | None, template: str = "{value:.3f} ({step})") -> str:
    """One of :class:`MonitorSummary`'s readings with its step, or "no reading"."""
    return "no reading" if reading is None else template.format(value=reading[0], step=reading[1])


def write_section(path: Path | str, name: str, markdown: str) -> Path:
    """Replace (or append) the block between ``<!-- BEGIN name -->`` and ``<!-- END name -->`` in a Markdown file."""
    path = Path(path)
    text = path.read_text() if path.exists() else f"# {path.stem.title()}\n"
    block = f"<!-- BEGIN {name} -->\n{markdown.strip()}\n<!-- END {name} -->"
    pattern = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else f"{text.rstrip()}\n\n{block}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def read_sections(path: Path | str) -> dict[str, str]:
    """Every marked block of a Markdown file: name -> the text :func:`write_section` put between its markers."""
    found = re.finditer(r"<!-- BEGIN (\S+) -->\n?(.*?)\n?<!-- END \1 -->", Path(path).read_text(), re.S)
    return {match[1]: match[2] for match in found}


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON (non-finite floats become null), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_json_safe(report), indent=2))


def publish(numbers: Path, measured: dict[str, Any], render: Callable[[Path], str], page: Path, block: str) -> str:
    """Write a measurement's numbers (``docs/results/...``), then the page's ``block`` rendered from that file
    (never from memory: the committed block is exactly what the committed numbers give); return the block."""
    write_json(numbers, {**measured, "provenance": measured.get("provenance") or provenance()})
    text = render(numbers)
    write_section(page, block, text)
    return text


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value


def __getattr__(name: str) -> Any:
    """``median_time`` (removed in 670fe3a) still works, with a warning (``timm_ll.deprecations``)."""
    if name == "median_time":
        from timm_ll.deprecations import median_time

        return median_time
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
