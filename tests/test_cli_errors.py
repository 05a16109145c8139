"""A user's ordinary mistakes, through the installed ``timm-ll`` entry point: one line on stderr, no traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CIFAR_ZIP


def _timm_ll() -> str:
    found = shutil.which("timm-ll") or str(Path(sys.executable).parent / "timm-ll")
    if not Path(found).exists():
        pytest.fail("the timm-ll entry point is not installed: run the README's install command")
    return found


def _fails_cleanly(*args: str) -> str:
    result = subprocess.run([_timm_ll(), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("timm-ll: error: "), result.stderr
    return lines[0]


@pytest.mark.slow  # the installed entry point in a subprocess
def test_shatter_unregistered_depth_names_the_valid_ones():
    line = _fails_cleanly("shatter", "--depths", "21")
    assert "--depths 21" in line and "20, 32, 44, 56, 110, 200" in line


@pytest.mark.slow  # the installed entry point in a subprocess
def test_shatter_unknown_family_names_what_the_user_typed():
    line = _fails_cleanly("shatter", "--families", "foo")
    assert "unknown family 'foo'" in line and "foo20" not in line and "ll_plain" in line and "--models" in line


@pytest.mark.slow  # the installed entry point in a subprocess
def test_shatter_unknown_model_suggests_close_names():
    line = _fails_cleanly("shatter", "--models", "resnet_18")
    assert "unknown model 'resnet_18'" in line and "resnet18" in line


@pytest.mark.slow
def test_train_unknown_model_fails_before_any_data_is_read(tmp_path):
    # a data source that would fail if it were read: the model must be refused first
    line = _fails_cleanly("train", "--model", "nonexistent_model", "--data", str(tmp_path / "no-such-data"))
    assert "unknown model 'nonexistent_model'" in line and "timm.list_models()" in line


@pytest.mark.slow
def test_train_with_a_missing_data_source_names_the_layout(tmp_path):
    line = _fails_cleanly("train", "--model", "ll_plain8", "--data", str(tmp_path / "missing.zip"))
    assert "missing.zip" in line and "train/<class>" in line


def _option_help(help_text: str) -> dict[str, str]:
    """Each option's help paragraph in argparse's output, keyed by its long flag."""
    options: dict[str, str] = {}
    current = None
    for line in help_text.splitlines():
        if line.startswith("  -"):
            current = line.split()[0].split(",")[0]
            options[current] = line
        elif current and line.startswith("      "):
            options[current] += " " + line.strip()
        else:
            current = None
    return options


@pytest.mark.slow
def test_help_shows_every_default_and_no_markup():
    helps = {}
    for command in ("shatter", "train"):  # one start of the entry point per command: each imports torch
        out = subprocess.run([_timm_ll(), command, "--help"], capture_output=True, text=True, check=True).stdout
        helps[command] = out
        assert "``" not in out and "../shared" not in out and CIFAR_ZIP.name not in out
        options = _option_help(out)
        for option, text in options.items():
            if option not in ("-h", "--help", "--json", "--model"):
                assert "(default:" in text, f"timm-ll {command} --help: {option} shows no default"
    assert "BN over the grid" in " ".join(helps["shatter"].split())
    assert "timm-ll shatter" not in helps["train"] and "timm-ll train" in helps["train"]


def test_train_warmup_outside_the_run_is_refused_before_any_data_is_read(tmp_path):
    line = _fails_cleanly("train", "--model", "ll_plain8", "--warmup", "1.5", "--data", str(tmp_path / "no-such-data"))
    assert "--warmup 1.5" in line and "(0, 1)" in line


def test_train_defaults_are_the_recipe_defaults():
    from timm_ll.app.cli import build_parser
    from timm_ll.app.training import Recipe

    args = build_parser().parse_args(["train", "--model", "ll_plain8"])
    recipe = Recipe()
    assert (args.lr, args.warmup, args.weight_decay, args.schedule, args.label_smoothing) == (
        recipe.lr,
        recipe.warmup_fraction,
        recipe.weight_decay,
        recipe.schedule,
        recipe.label_smoothing,
    )
