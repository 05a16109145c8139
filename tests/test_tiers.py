"""The fast tier's guard: unmarked slow tests are reported at the end of ``-m "not slow"``, never failed."""

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


@pytest.fixture
def sample(pytester: pytest.Pytester, monkeypatch) -> pytest.Pytester:
    monkeypatch.setenv("TIMM_LL_FAST_LIMIT_S", "0.3")
    pytester.makeconftest((REPO / "tests" / "conftest.py").read_text())
    pytester.makeini("[pytest]\nmarkers =\n    slow: slow")
    pytester.makepyfile(test_sample=SUITE)
    return pytester


def test_the_fast_tier_reports_an_unmarked_test_over_the_limit_and_passes_it(sample: pytest.Pytester):
    fast = sample.runpytest("-m", "not slow", "-p", "no:cacheprovider")
    fast.assert_outcomes(passed=2, deselected=1)  # no outcome depends on elapsed time
    assert fast.ret == 0
    fast.stdout.fnmatch_lines(
        [
            "*fast-tier upkeep*",
            "1 unmarked test(s) took longer than the fast tier's 0.3 s on this machine*",
            "*s  test_sample.py::test_unmarked_and_slow",
        ]
    )
    assert "test_quick" not in fast.stdout.str().split("fast-tier upkeep")[1]  # only the tests over the limit


def test_marked_tests_and_quick_runs_have_no_report(sample: pytest.Pytester, monkeypatch):
    marked = sample.runpytest("-p", "no:cacheprovider", "test_sample.py::test_marked_and_slow")
    marked.assert_outcomes(passed=1)  # a marked test is never listed
    assert "fast-tier upkeep" not in marked.stdout.str()
    monkeypatch.setenv("TIMM_LL_FAST_LIMIT_S", "60")
    roomy = sample.runpytest("-m", "not slow", "-p", "no:cacheprovider")
    roomy.assert_outcomes(passed=2, deselected=1)
    assert "fast-tier upkeep" not in roomy.stdout.str()


def _setup_times():
    import importlib.util

    spec = importlib.util.spec_from_file_location("setup_times", REPO / "benchmarks" / "setup_times.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ci_runs_the_readme_commands_verbatim_and_the_main_job_without_test_extras():
    install, tests = _setup_times().readme_commands()  # what the setup-times benchmark measures too
    assert install == "pip install -e . && timm-ll shatter"  # no extra: the main job needs none
    assert tests.startswith('pip install -e ".[dev]" && ') and tests.endswith("python -m pytest -q")
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert ci_lines.index(install) < ci_lines.index(tests)  # verbatim, in the README's order


@pytest.mark.slow
def test_the_report_comes_back_from_parallel_workers(sample: pytest.Pytester):
    parallel = sample.runpytest("-m", "not slow", "-p", "no:cacheprovider", "-n", "2")
    parallel.assert_outcomes(passed=2)  # the marked test deselected (xdist counts no deselection)
    assert parallel.ret == 0
    parallel.stdout.fnmatch_lines(["*fast-tier upkeep*", "*s  test_sample.py::test_unmarked_and_slow"])
