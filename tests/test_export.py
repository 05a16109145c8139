"""Trained weights in timm's own sharing format: local-dir:, offline hf-hub:, overlays, and timm-ll export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import timm
import torch

import timm_ll  # noqa: F401
from timm_ll.export import model_from_checkpoint, save_pretrained

# run in a fresh process that never imports timm_ll: the install's hook registers the models when timm is imported
LOAD = """
import sys, timm, torch
model = timm.create_model(sys.argv[1], pretrained=True).eval()
torch.save(model(torch.load(sys.argv[2])), sys.argv[3])
print(type(model).__module__, "timm_ll" in sys.modules)
"""


def _load_elsewhere(name: str, x: torch.Tensor, tmp_path: Path, **env: str) -> tuple[torch.Tensor, str]:
    torch.save(x, tmp_path / "x.pt")
    out = subprocess.run(
        [sys.executable, "-c", LOAD, name, str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return torch.load(tmp_path / "y.pt"), out.stdout.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A short timm-ll train run on the embedded digits."""
    from timm_ll.app.cli import main

    out = tmp_path_factory.mktemp("run")
    report = out / "report.json"
    argv = ["train", "--model", "ll_plain8", "--data", "digits", "--max-steps", "3", "--monitor-every", "2"]
    assert main([*argv, "--out", str(out), "--json", str(report)]) == 0
    return json.loads(report.read_text())


@pytest.mark.slow
def test_train_writes_a_folder_that_timm_loads_by_local_dir_in_a_fresh_process(trained, tmp_path):
    folder = Path(trained["export"])
    assert {p.name for p in folder.iterdir()} == {"config.json", "model.safetensors", "README.md"}
    config = json.loads((folder / "config.json").read_text())
    assert config["architecture"] == "ll_plain8" and config["num_classes"] == 10
    assert config["pretrained_cfg"]["mean"] and config["pretrained_cfg"]["first_conv"] == "stem.conv"
    card = (folder / "README.md").read_text()
    assert "test accuracy" in card and "lr=0.02" in card and "neighbor_corr" in card and "data: digits" in card
    assert config["timm_ll"]["test_accuracy"] == trained["test_acc"] and config["timm_ll"]["data"] == "digits"
    model, _ = model_from_checkpoint(trained["checkpoint"])
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    got, printed = _load_elsewhere(f"local-dir:{folder}", x, tmp_path)
    assert torch.equal(got, expected)  # bitwise the trained network
    assert printed == "timm_ll.models.cifar True"  # registered by the hook, never imported by the program


@pytest.mark.slow
def test_the_same_files_load_by_hf_hub_offline_from_a_local_cache(trained, tmp_path):
    folder = Path(trained["export"])
    cache = tmp_path / "hub"
    snapshot = cache / "models--someone--ll-plain8-digits" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("config.json", "model.safetensors"):
        (snapshot / name).write_bytes((folder / name).read_bytes())
    (cache / "models--someone--ll-plain8-digits" / "refs").mkdir()
    (cache / "models--someone--ll-plain8-digits" / "refs" / "main").write_text("0" * 40)
    x = torch.randn(2, 3, 32, 32)
    model, _ = model_from_checkpoint(trained["checkpoint"])
    with torch.no_grad():
        expected = model(x)
    got, _ = _load_elsewhere(
        "hf-hub:someone/ll-plain8-digits", x, tmp_path, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1"
    )
    assert torch.equal(got, expected)


@pytest.mark.slow
def test_overlays_load_checkpoints_and_folders(trained, tmp_path):
    model, _ = model_from_checkpoint(trained["checkpoint"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
    for file in (trained["checkpoint"], trained["export"]):
        loaded = timm.create_model("ll_plain8", pretrained=True, pretrained_cfg_overlay=dict(file=file)).eval()
        with torch.no_grad():
            assert torch.equal(loaded(x), expected), file


def test_model_args_travel_with_the_weights(tmp_path):
    model = timm.create_model("ll_plain8", depth=14, num_classes=3).eval()
    save_pretrained(model, tmp_path / "deep")
    loaded = timm.create_model(f"local-dir:{tmp_path / 'deep'}", pretrained=True).eval()
    assert loaded.depth == 14 and loaded.num_classes == 3
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.slow
def test_the_export_command_writes_the_folder_and_names_a_bad_checkpoint(trained, tmp_path, capsys):
    from timm_ll.app.cli import main

    assert main(["export", trained["checkpoint"], str(tmp_path / "exported")]) == 0
    assert "local-dir:" in capsys.readouterr().out
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["architecture"] == "ll_plain8"
    assert "exported from: last.ckpt" in (tmp_path / "exported" / "README.md").read_text()
    assert main(["export", str(tmp_path / "nope.ckpt"), str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert "timm_ll" not in config  # nothing known of the run's accuracy: nothing written


def test_the_export_command_records_the_runs_accuracy(trained, tmp_path, capsys):
    from timm_ll.app.cli import main

    argv = ["export", trained["checkpoint"], str(tmp_path / "exported"), "--test-accuracy", "0.75", "--data", "digits"]
    assert main(argv) == 0
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["timm_ll"] == {"test_accuracy": 0.75, "data": "digits"}
    card = (tmp_path / "exported" / "README.md").read_text()
    assert "test accuracy: 75.00%" in card and "optimizer steps: 3" in card
    model = timm.create_model("local-dir:" + str(tmp_path / "exported"), pretrained=True)  # timm ignores the key
    assert model.num_classes == 10
    assert main(["export", trained["checkpoint"], str(tmp_path / "x"), "--test-accuracy", "75"]) == 2
    assert "as a fraction in [0, 1]" in capsys.readouterr().err
