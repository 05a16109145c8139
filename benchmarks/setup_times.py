"""How long the README's commands take on this machine: the main job's install, the fast tier, the full suite.

    python benchmarks/setup_times.py            # all three (about 20 minutes on 2 CPU cores), then the block
    python benchmarks/setup_times.py --skip-install

1. The README's first command (``pip install -e . && timm-ll shatter``), verbatim, in a fresh virtualenv in a
   fresh clone of this checkout's HEAD: its wall time, the size of the virtualenv's site-packages, and which
   of the test extras' packages it installed (none, if the install is lean).
2. The fast tier (``python -m pytest -q -m "not slow"``) and the full suite (``python -m pytest -q``), in the
   environment this script runs in (the project's virtualenv with the ``dev`` extra): wall time and pytest's
   own closing line (how many tests passed, were skipped, deselected).

Run it with nothing else running: the numbers are what a user of a machine like this one waits. They go to
``docs/results/setup_times.json`` and the ``setup-times`` block of ``docs/PERFORMANCE.md``, which the README
quotes. ``pip`` reads packages from the machine's configured index (its cache makes a rerun faster than a
first install; the block says which).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere

from timm_ll.app.reporting import machine, machine_of, publish  # noqa: E402

NUMBERS = REPO / "docs" / "results" / "setup_times.json"
# the targets set for the two test tiers on this project's machine (seconds)
TARGETS = {"fast": 90, "full": 360}
# packages of the dev extra that the main job must not need (the first README command must not install them)
TEST_ONLY = ("pytest", "transformers", "accelerate", "scipy", "dks", "tensorboard", "jsonargparse")


def readme_commands() -> list[str]:
    """The README's two set-up commands: the first two ``bash`` blocks of its Install section."""
    commands = (REPO / "README.md").read_text().split("## Install", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", commands, flags=re.S)[:2]]


def _du_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink()) / 2**20


def measure_install(command: str) -> dict:
    """The README's first command in a fresh virtualenv, in a fresh clone of HEAD."""
    scratch = Path(tempfile.mkdtemp(prefix="timm-ll-setup-"))
    try:
        clone, venv = scratch / "clone", scratch / "venv"
        subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        env = dict(os.environ, VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
        env.pop("PYTHONPATH", None)
        start = time.perf_counter()
        done = subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if done.returncode:
            raise SystemExit(f"the README's first command failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        site = next((venv / "lib").glob("python*/site-packages"))
        installed = {p.name.split("-")[0].lower().replace("_", "-") for p in site.glob("*.dist-info")}
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
        return dict(
            command=command,
            seconds=seconds,
            site_packages_mib=_du_mib(site),
            test_only_installed=sorted(installed & set(TEST_ONLY)),
            # each row says when and at which commit it was measured: a rerun may keep this one (--skip-install)
            commit=head.stdout.strip(),
            date=time.strftime("%Y-%m-%d"),
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def measure_tests(args: list[str]) -> dict:
    """One pytest run of this checkout in this environment: wall time and pytest's closing line."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    lines = [line for line in done.stdout.splitlines() if re.search(r"\d+ (passed|failed)", line)]
    # how many tests the run selects (xdist's closing line counts no deselected ones): collected in one process
    listed = subprocess.run([*command, "--collect-only", "-n", "0"], cwd=REPO, capture_output=True, text=True)
    collected = [line for line in listed.stdout.splitlines() if "collected" in line]
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True)
    return dict(
        command="python -m pytest -q" + (" " + " ".join(f'"{a}"' if " " in a else a for a in args) if args else ""),
        # the code measured: the tiers may be measured at different commits (--skip-full)
        commit=head.stdout.strip() + (" with uncommitted changes" if dirty.stdout.strip() else ""),
        seconds=seconds,
        summary=lines[-1].strip("= ") if lines else "",
        collected=re.sub(r" in [0-9.]+s$", "", collected[-1].strip()) if collected else "",
        returncode=done.returncode,
    )


def section(numbers: Path) -> str:
    """The block, from the measured numbers."""
    run = json.loads(numbers.read_text())
    lines = [
        "## The README's commands on this machine",
        "",
        f"Machine: {machine_of(run)}. `python benchmarks/setup_times.py`, nothing else running.",
        "",
        "| what | command | wall time | result |",
        "|---|---|---|---|",
    ]
    install = run.get("install")
    if install:
        extras = ", ".join(install["test_only_installed"]) or "none"
        lines.append(
            f"| main job, fresh virtualenv and clone | `{install['command']}` | {install['seconds']:.0f} s "
            f"| {install['site_packages_mib']:,.0f} MiB of site-packages; test extras' packages installed: "
            f"{extras}; "
            + (
                f"at commit {install['commit']}, {install['date']}"
                if install.get("commit")
                else "its commit not recorded (measured before rows kept one)"
            )
            + " |"
        )
    for key, what in (("fast", "fast tier"), ("full", "full suite")):
        tests = run.get(key)
        if tests:
            status = "" if tests["returncode"] == 0 else f" (exit status {tests['returncode']})"
            verdict = "met" if tests["seconds"] <= TARGETS[key] else "missed"
            lines.append(
                f"| {what} | `{tests['command']}` | {tests['seconds']:.0f} s ({tests['seconds'] / 60:.1f} min); "
                f"target {TARGETS[key]} s ({TARGETS[key] / 60:g} minutes): {verdict} | {tests['summary']}{status}"
                + (f"; {tests['collected']}" if tests.get("collected") else "")
                + (f"; at commit {tests['commit']}" if tests.get("commit") else "")
                + " |"
            )
    if install:
        lines += [
            "",
            "pip installed from this machine's package index and its cache; a first install on a machine without "
            "the cache downloads torch and takes longer.",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-install", action="store_true", help="keep the committed install measurement")
    parser.add_argument("--skip-tests", action="store_true", help="keep the committed test measurements")
    parser.add_argument("--skip-full", action="store_true", help="keep the committed full-suite measurement")
    args = parser.parse_args()
    measured = json.loads(NUMBERS.read_text()) if NUMBERS.exists() else {}
    install_command, _ = readme_commands()
    if not args.skip_install:
        measured["install"] = measure_install(install_command)
    if not args.skip_tests:
        measured["fast"] = measure_tests(["-m", "not slow"])
        if not args.skip_full:
            measured["full"] = measure_tests([])
    measured["machine"] = machine()
    print(publish(NUMBERS, measured, section, REPO / "docs" / "PERFORMANCE.md", "setup-times"))


# docs blocks this script writes, regenerated from the committed results (tests/test_docs_drift.py)
DOC_BLOCKS = {"setup-times": lambda: section(NUMBERS)}


if __name__ == "__main__":
    main()
