"""Zero-import registration: a non-editable install makes timm see the models without `import timm_ll`."""

from __future__ import annotations

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


def _run(python: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k != "TIMM_LL_AUTOREGISTER"} | env
    return subprocess.run([python, "-c", code], capture_output=True, text=True, env=full_env, cwd="/")


@pytest.mark.slow
def test_timm_sees_the_models_without_importing_timm_ll(installed_python):
    result = _run(
        installed_python,
        "import sys, timm; m = timm.create_model('ll_plain56'); "
        "import timm_ll, _timm_ll_autoregister as h; print(timm_ll.__file__); print(h.__file__)",
    )
    assert result.returncode == 0, result.stderr
    venv_root = str(installed_python.parent.parent)
    # both the hook and the package come from the non-editable install in the fresh venv
    assert all(line.startswith(venv_root) for line in result.stdout.split()), result.stdout


@pytest.mark.slow  # a fresh venv with a built wheel (module fixture)
def test_env_switch_turns_the_hook_off(installed_python):
    result = _run(
        installed_python,
        "import sys, timm; assert 'timm_ll' not in sys.modules; "
        "assert 'll_plain56' not in timm.list_models('ll_*'); print('off')",
        TIMM_LL_AUTOREGISTER="0",
    )
    assert result.returncode == 0 and "off" in result.stdout, result.stderr


@pytest.mark.slow  # a fresh venv with a built wheel (module fixture)
def test_startup_without_timm_imports_nothing_heavy(installed_python):
    result = _run(installed_python, "import sys; print(sorted(m for m in sys.modules if 'torch' in m or 'timm' in m))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['_timm_ll_autoregister']"


def test_hook_is_not_installed_twice_and_skips_when_timm_is_loaded():
    import timm  # noqa: F401

    sys.path.insert(0, str(REPO / "hook"))
    try:
        import _timm_ll_autoregister as hook
    finally:
        sys.path.pop(0)
    assert "timm" in sys.modules
    assert hook.install() is False
