"""Zero-import registration: a non-editable install makes timm see the models without `import timm_ll`."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.fixture(scope="module")
def installed_python(tmp_path_factory) -> Path:
    """A fresh venv (seeing this interpreter's torch/timm) with timm-ll installed from a built wheel.

    ``system_site_packages=True`` exposes the *base* interpreter's site-packages only; when the
    tests themselves run inside a virtualenv (the usual install), torch and timm live in that
    outer venv, so its site-packages are appended with a plain path ``.pth`` file. Plain path
    lines do not process the outer directory's own ``.pth`` files, so the outer (editable)
    timm-ll and its hook stay out of the way: the fresh venv's wheel install comes first.
    """
    env_dir = tmp_path_factory.mktemp("venv")
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    wheel_dir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(wheel_dir),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(wheel_dir.glob("timm_ll-*.whl"))
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    outer = [path for path in sys.path if path.endswith("site-packages") and path.startswith(sys.prefix)]
    if sys.prefix != sys.base_prefix and outer:
        (Path(site) / "zz_outer_venv.pth").write_text("\n".join(outer) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
    )
    return python


def _run(python: Path | str, code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TIMM_LL_AUTOREGISTER"} | env
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=full_env, cwd="/")


def _families() -> dict[str, str]:
    """One member of every registered family (the smallest depth), by family: what a child process creates."""
    import re

    import timm

    import timm_ll  # noqa: F401

    members: dict[str, list[str]] = {}
    for name in timm.list_models(module=["cifar", "skipfree_resnet", "toy"]):
        members.setdefault(re.sub(r"\d+$", "", name), []).append(name)
    return {family: min(names, key=lambda n: int(re.sub(r"\D", "", n) or 0)) for family, names in members.items()}


# what a program runs before its first `import timm`: libraries that probe for timm with find_spec on import
# (transformers, and Lightning and torchmetrics through it), a probe of the program's own, and imports of timm's
# parts. `None` marks a library that must be installed for its order to be tested.
IMPORT_ORDERS = {
    # `import lightning.pytorch` runs lightning/__init__.py first, which imports all of Lightning: the same modules in
    # the same order as `import lightning`, so one entry covers both spellings
    "lightning.pytorch": ("import lightning.pytorch", "lightning"),
    "torchmetrics": ("import torchmetrics", "torchmetrics"),
    "transformers": ("import transformers", "transformers"),
    "peft": ("import peft", "peft"),
    "find_spec once": ("import importlib.util; importlib.util.find_spec('timm')", None),
    "find_spec twice": (
        "import importlib.util; importlib.util.find_spec('timm'); importlib.util.find_spec('timm')",
        None,
    ),
    "from timm import create_model": ("from timm import create_model", None),
    "import timm.models": ("import timm.models", None),
}

# after the prelude: timm imported, every family created, the finder gone, and nothing global patched
_CHECK = """
import importlib.machinery, sys
real_exec = importlib.machinery.SourceFileLoader.exec_module
import timm, torch
with torch.device("meta"):  # created by name (what registration gives), without the cost of initializing weights
    for name in {names!r}:
        timm.create_model(name)
assert not any(type(f).__name__ == "_RegisterAfterTimm" for f in sys.meta_path), sys.meta_path
assert importlib.machinery.SourceFileLoader.exec_module is real_exec
assert type(timm.__spec__.loader).__name__ == "SourceFileLoader", timm.__spec__.loader
assert timm.__loader__ is timm.__spec__.loader
print("created", len({names!r}))
"""


def _import_order_check(python: Path | str, order: str) -> None:
    prelude, needs = IMPORT_ORDERS[order]
    if needs is not None and importlib.util.find_spec(needs) is None:
        pytest.skip(f"{needs} is not installed")
    names = sorted(_families().values())
    result = _run(python, prelude + "\n" + _CHECK.format(names=names))
    assert result.returncode == 0, f"{order}: {result.stderr[-3000:]}"
    assert f"created {len(names)}" in result.stdout


@pytest.mark.slow  # one fresh interpreter per import order (importing transformers or Lightning takes seconds)
@pytest.mark.parametrize("order", list(IMPORT_ORDERS))
def test_import_order_in_the_editable_install(order):
    """As the README installs it (`pip install -e .`): the hook in this environment's site-packages."""
    if not _hook_installed_here():
        pytest.skip("timm-ll's hook is not installed in this environment (run the README's pip install -e .)")
    _import_order_check(sys.executable, order)


@pytest.mark.slow  # a fresh venv with a built wheel (module fixture), one interpreter per import order
@pytest.mark.parametrize("order", list(IMPORT_ORDERS))
def test_import_order_in_a_regular_install(installed_python, order):
    _import_order_check(installed_python, order)


def _hook_installed_here() -> bool:
    import sysconfig

    return (Path(sysconfig.get_path("purelib")) / "timm_ll_autoregister.pth").exists()


def test_installed_hook_is_the_source():
    """An editable install copies the hook into site-packages: a stale copy would test old code."""
    import sysconfig

    if not _hook_installed_here():
        pytest.skip("timm-ll's hook is not installed in this environment")
    installed = Path(sysconfig.get_path("purelib")) / "_timm_ll_autoregister.py"
    source = REPO / "hook" / "_timm_ll_autoregister.py"
    assert installed.read_text() == source.read_text(), "the installed hook is stale: run `pip install -e .` again"


# the hook as it is in hook/, put on sys.meta_path in a fresh interpreter whose own start-up copy is switched off
_SOURCE_HOOK = f"""
import importlib.util, os, sys
os.environ.pop("TIMM_LL_AUTOREGISTER")
spec = importlib.util.spec_from_file_location("hook_under_test", {str(REPO / "hook" / "_timm_ll_autoregister.py")!r})
hook = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hook)
assert not any(m.startswith(("timm", "torch")) for m in sys.modules), "the hook imported something heavy"
"""


def _check_with_the_source_hook(*lines: str) -> None:
    """Run ``lines`` in a fresh interpreter after the hook of hook/ (the start-up copy off); they print 'ok'."""
    result = _run(sys.executable, _SOURCE_HOOK + "\n".join([*lines, "print('ok')"]), TIMM_LL_AUTOREGISTER="0")
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-3000:]


def test_probes_before_import_timm_keep_the_registration():
    """The cheap check of the fast tier (one fresh interpreter, about as long as importing torch): two find_spec
    probes, then `import timm` registers the models."""
    _check_with_the_source_hook(
        "importlib.util.find_spec('timm'); importlib.util.find_spec('timm')",
        "assert sum(type(f).__name__ == '_RegisterAfterTimm' for f in sys.meta_path) == 1  # still waiting",
        "import timm",
        "timm.create_model('ll_plain8')",
        "assert not any(type(f).__name__ == '_RegisterAfterTimm' for f in sys.meta_path)",
    )


@pytest.mark.slow  # a fresh interpreter that imports timm
def test_a_failing_plugin_leaves_timm_working_with_a_warning():
    _check_with_the_source_hook(
        "sys.modules['timm_ll'] = None  # makes `import timm_ll` fail",
        "import warnings",
        "with warnings.catch_warnings(record=True) as caught:",
        "    warnings.simplefilter('always')",
        "    import timm",
        "timm.create_model('resnet18')",
        "assert any('could not register' in str(w.message) for w in caught), caught",
    )


def test_hook_is_not_installed_twice_and_skips_when_timm_is_loaded():
    import timm  # noqa: F401

    sys.path.insert(0, str(REPO / "hook"))
    try:
        import _timm_ll_autoregister as hook
    finally:
        sys.path.pop(0)
    assert "timm" in sys.modules
    assert hook.install() is False
