"""Run timm's own per-model test suite (vendored test_models.py) on timm-ll's models only.

timm parametrizes its tests with ``timm.list_models(...)`` at import time; we narrow that
function to our models while the test module is collected (and restore it afterwards),
then deselect the tests that
are pinned to timm's own models (``resnet18``, ``convnext_atto``...).
Set ``TIMM_LL_SUITE=all`` to run every registered depth instead of one per family.
"""

from __future__ import annotations

import os

import pytest
import timm

import timm_ll  # noqa: F401  (registers the models)

# + ll_resnet50 (full suite only), plain_resnet18
_ONE_PER_FAMILY = {"ll_plain20", "crelu_plain20", "plain20", "cifar_resnet20", "ll_slim20", "tat_plain20", "tat_slim20"}
_OUR_MODULES = ("cifar", "skipfree_resnet")
_ALL_OURS = set(timm.list_models(module=_OUR_MODULES))
SUITE_MODELS = (
    _ALL_OURS
    if os.environ.get("TIMM_LL_SUITE") == "all"
    else {name for name in _ALL_OURS if name in _ONE_PER_FAMILY or name in ("ll_resnet50", "plain_resnet18")}
)
_timm_list_models = timm.list_models


def _our_list_models(*args, **kwargs):
    return [name for name in _timm_list_models(*args, **kwargs) if name.split(".")[0] in SUITE_MODELS]


timm.list_models = _our_list_models

_TIMM_MARKERS = (
    "base",
    "cfg",
    "cfg_nonstd",
    "forward",
    "backward",
    "torchscript",
    "features",
    "fxforward",
    "fxbackward",
    "timeout(seconds): per-test time limit (enforced only with pytest-timeout)",
)


def pytest_configure(config: pytest.Config) -> None:
    for marker in _TIMM_MARKERS:
        config.addinivalue_line("markers", marker)


# ImageNet-size: the full suite runs timm's tests on it; the fast tier covers its builder with plain_resnet18
_FULL_SUITE_ONLY = {"ll_resnet50"}


@pytest.hookimpl(tryfirst=True)  # mark before ``-m "not slow"`` selects
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    timm.list_models = _timm_list_models  # parametrization is done: give other tests timm's own function back
    keep, drop = [], []
    for item in items:
        if not str(item.fspath).endswith(os.path.join("timm_suite", "test_models.py")):
            keep.append(item)
            continue
        params = getattr(getattr(item, "callspec", None), "params", {})
        name = params.get("model_name")
        base = name.split(".")[0] if isinstance(name, str) else None
        (keep if base in SUITE_MODELS else drop).append(item)
        if base in _FULL_SUITE_ONLY:
            item.add_marker(pytest.mark.slow)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
