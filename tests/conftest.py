"""Shared fixtures and the test tiers.

- The shared data folder comes from ``TIMM_LL_DATA`` (default: ``../shared/data`` beside the checkout,
  where CI lays it); tests that need CIFAR-10 skip without it.
- Tiers: ``python -m pytest -m "not slow"`` is the fast tier a developer runs while working; CI runs
  every test. Both run on two processes (pytest-xdist, ``-n 2`` in ``pyproject.toml``; ``-n 0`` runs
  in one), each with its share of the cores' threads. No test's outcome depends on elapsed time: in
  the fast tier, the unmarked tests whose call took longer than ``TIMM_LL_FAST_LIMIT_S`` (default
  5 s) are listed in a report at the end of the run ("fast-tier upkeep"), so that whoever adds a slow
  test sees it and marks it ``@pytest.mark.slow``; they still pass. A slower machine lists more of
  them, and fails none.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("TIMM_LL_DATA", REPO.parent / "shared" / "data"))
CIFAR_ZIP = DATA / "cifar10-jpeg.zip"
FAST_LIMIT_S = float(os.environ.get("TIMM_LL_FAST_LIMIT_S", "5"))
_OVER_LIMIT = pytest.StashKey[list[tuple[str, float]]]()


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_FastTierUpkeep(config), "timm-ll-fast-tier-upkeep")
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:  # a worker of `-n N`: share the cores instead of every worker's threads contending for all
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # the subprocesses a test starts, too


def _fast_tier(config: pytest.Config) -> bool:
    return "not slow" in (config.getoption("markexpr") or "") or "TIMM_LL_FAST_LIMIT_S" in os.environ


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class _FastTierUpkeep:
    """Collects the unmarked fast-tier tests over the limit where the reports arrive: in the one process, or in
    xdist's controller (from every worker)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call" or not report.passed or "slow" in report.keywords:
            return
        if _fast_tier(self.config) and report.duration > FAST_LIMIT_S:
            self.config.stash.setdefault(_OVER_LIMIT, []).append((report.nodeid, report.duration))


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    over = config.stash.get(_OVER_LIMIT, [])
    if not over:
        return
    terminalreporter.section("fast-tier upkeep")
    terminalreporter.write_line(
        f"{len(over)} unmarked test(s) took longer than the fast tier's {FAST_LIMIT_S:g} s on this machine "
        "(they passed; mark them @pytest.mark.slow or make them faster; TIMM_LL_FAST_LIMIT_S sets the limit):"
    )
    for nodeid, seconds in sorted(over, key=lambda entry: -entry[1]):
        terminalreporter.write_line(f"  {seconds:6.1f} s  {nodeid}")
