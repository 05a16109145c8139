"""Shared fixtures and the test tiers.

- The shared data folder comes from ``TIMM_LL_DATA`` (default: ``../shared/data`` beside the checkout,
  where CI lays it); tests that need CIFAR-10 skip without it.
- Tiers: ``python -m pytest -m "not slow"`` is the fast tier a developer runs while working; CI runs
  every test. In the fast tier, an unmarked test whose call takes longer than ``TIMM_LL_FAST_LIMIT_S``
  (default 5 s) fails, so that the tier stays fast as tests are added: mark it ``@pytest.mark.slow``.
  The full run does not apply the limit (a loaded machine must not fail CI on timing alone), unless
  ``TIMM_LL_FAST_LIMIT_S`` is set.
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


def _fast_tier(config: pytest.Config) -> bool:
    return "not slow" in (config.getoption("markexpr") or "") or "TIMM_LL_FAST_LIMIT_S" in os.environ


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    if call.when != "call" or not report.passed or item.get_closest_marker("slow") or not _fast_tier(item.config):
        return
    if call.duration > FAST_LIMIT_S:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} took {call.duration:.1f} s, more than the fast tier's {FAST_LIMIT_S:g} s: mark it "
            "@pytest.mark.slow (or make it faster); TIMM_LL_FAST_LIMIT_S sets the limit"
        )
