"""A user's ordinary mistakes: one line on stderr, no traceback. The mistakes are made in-process through
``main`` (what the entry point runs); one is made through the installed ``timm-ll`` entry point itself."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import CIFAR_ZIP
from timm_ll.app.cli import main


def _timm_ll() -> str:
    found = shutil.which("timm-ll") or str(Path(sys.executable).parent / "timm-ll")
    if not Path(found).exists():
        pytest.fail("the timm-ll entry point is not installed: run the README's install command")
    return found


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("timm-ll: error: "), stderr
    return lines[0]


def _fails_cleanly(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run ``timm-ll ARGS`` in-process: a non-zero exit status and one error line (any other exception fails
    the test, as a traceback would)."""
    try:
        status = main(list(args))
    except SystemExit as exit_:  # argparse's own refusals
        status = exit_.code
    captured = capsys.readouterr()
    assert status not in (0, None), captured.out
    return _one_error_line(captured.err)


@pytest.mark.slow  # the installed entry point in a subprocess (it imports torch)
def test_the_installed_entry_point_reports_a_mistake_in_one_line():
    result = subprocess.run([_timm_ll(), "shatter", "--depths", "21"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout
    assert "--depths 21" in _one_error_line(result.stderr)


def test_shatter_unregistered_depth_names_the_valid_ones(capsys):
    line = _fails_cleanly(capsys, "shatter", "--depths", "21")
    assert "--depths 21" in line and "20, 32, 44, 56, 110, 200" in line


def test_shatter_unknown_family_names_what_the_user_typed(capsys):
    line = _fails_cleanly(capsys, "shatter", "--families", "foo")
    assert "unknown family 'foo'" in line and "foo20" not in line and "ll_plain" in line and "--models" in line


def test_shatter_unknown_model_suggests_close_names(capsys):
    line = _fails_cleanly(capsys, "shatter", "--models", "resnet_18")
    assert "unknown model 'resnet_18'" in line and "resnet18" in line


def test_train_unknown_model_fails_before_any_data_is_read(tmp_path, capsys):
    # a data source that would fail if it were read: the model must be refused first
    line = _fails_cleanly(capsys, "train", "--model", "nonexistent_model", "--data", str(tmp_path / "no-such-data"))
    assert "unknown model 'nonexistent_model'" in line and "timm.list_models()" in line


def test_train_with_a_missing_data_source_names_the_layout(tmp_path, capsys):
    line = _fails_cleanly(capsys, "train", "--model", "ll_plain8", "--data", str(tmp_path / "missing.zip"))
    assert "missing.zip" in line and "train/<class>" in line


def test_train_warmup_outside_the_run_is_refused_before_any_data_is_read(tmp_path, capsys):
    no_data = str(tmp_path / "no-such-data")
    line = _fails_cleanly(capsys, "train", "--model", "ll_plain8", "--warmup", "1.5", "--data", no_data)
    assert "--warmup 1.5" in line and "(0, 1)" in line


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


def test_help_shows_every_default_and_no_markup(capsys):
    helps = {}
    for command in ("shatter", "train"):
        with pytest.raises(SystemExit) as exit_:
            main([command, "--help"])
        assert exit_.value.code == 0
        out = helps[command] = capsys.readouterr().out
        assert "``" not in out and "../shared" not in out and CIFAR_ZIP.name not in out
        options = _option_help(out)
        for option, text in options.items():
            if option not in ("-h", "--help", "--json", "--model"):
                assert "(default:" in text, f"timm-ll {command} --help: {option} shows no default"
    assert "BN over the grid" in " ".join(helps["shatter"].split())
    assert "timm-ll shatter" not in helps["train"] and "timm-ll train" in helps["train"]


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


def test_a_probe_of_one_point_is_refused_with_the_monitors_own_words(capsys):
    line = _fails_cleanly(capsys, "shatter", "--num-points", "1", "--data", "no-such-folder")
    # refused before the data is read (the folder does not exist), by ShatteringOptions' check of a probe
    assert "--num-points 1: num_points=1: a probe line needs at least 2 points" in line
