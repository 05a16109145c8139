"""The fast tier's guard: an unmarked slow test fails in ``-m "not slow"``, a marked one does not."""

from __future__ import annotations

import pytest

from tests.conftest import REPO

pytest_plugins = ["pytester"]

SUITE = """
import time
import pytest

def test_quick():
    pass

def test_unmarked_and_slow():
    time.sleep(0.6)

@pytest.mark.slow
def test_marked_and_slow():
    time.sleep(0.6)
"""


def test_the_fast_tier_fails_an_unmarked_test_over_the_limit(pytester: pytest.Pytester, monkeypatch):
    monkeypatch.setenv("TIMM_LL_FAST_LIMIT_S", "0.3")
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow")
    pytester.makepyfile(test_sample=SUITE)
    fast = pytester.runpytest("-m", "not slow", "-p", "no:cacheprovider")
    fast.assert_outcomes(passed=1, failed=1, deselected=1)
    fast.stdout.fnmatch_lines(["*test_unmarked_and_slow took *more than the fast tier's 0.3 s: mark it*"])
    every = pytester.runpytest("-p", "no:cacheprovider", "test_sample.py::test_marked_and_slow")
    every.assert_outcomes(passed=1)  # a marked test is never held to the limit
