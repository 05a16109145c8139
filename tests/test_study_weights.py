"""The long study's exported weights (``weights/``, ``examples/export_study_weights.py``) load through timm as the
README shows and score, on the CIFAR-10 test set, the accuracy written beside them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch

from tests.conftest import CIFAR_ZIP

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
DEPTH_20 = sorted(p for p in WEIGHTS.glob("*20") if (p / "model.safetensors").exists())


def _load(folder: Path) -> torch.nn.Module:
    """As the README loads them: the registered name, pretrained, the file overlaid."""
    file = str(folder / "model.safetensors")
    return timm.create_model(folder.name, pretrained=True, pretrained_cfg_overlay=dict(file=file)).eval()


def test_every_exported_folder_loads_and_records_its_accuracy():
    folders = sorted(p for p in WEIGHTS.iterdir() if p.is_dir())
    assert folders, "weights/ holds no exported network"
    total = sum(f.stat().st_size for folder in folders for f in folder.iterdir())
    assert total < 40 * 2**20  # the budget for the committed folder
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert config["architecture"] == folder.name
        assert 0.5 < config["timm_ll"]["test_accuracy"] < 1.0
        model = _load(folder)
        with torch.no_grad():
            assert torch.isfinite(model(torch.randn(2, 3, 32, 32))).all()


@pytest.fixture(scope="module")
def cifar_test():
    """The CIFAR-10 test set, decoded once for every model's evaluation."""
    from timm_ll.app.data import load_source

    return load_source(str(CIFAR_ZIP), "test")


@pytest.mark.slow
@pytest.mark.skipif(not CIFAR_ZIP.exists(), reason="../shared/data/cifar10-jpeg.zip not present")
@pytest.mark.parametrize("folder", DEPTH_20, ids=lambda p: p.name)
def test_depth_20_weights_score_their_recorded_accuracy_on_the_test_set(folder, cifar_test):
    test = cifar_test
    model = _load(folder)
    cfg = timm.data.resolve_data_config({}, model=model)  # timm's eval normalization from the model's data config
    mean = torch.tensor(cfg["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(cfg["std"]).view(1, -1, 1, 1)
    model = model.to(memory_format=torch.channels_last)  # oneDNN's faster CPU kernels: the same predictions
    correct = 0
    with torch.inference_mode():
        for images, labels in zip(test.images.split(1000), test.labels.split(1000)):
            x = ((images.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)
            correct += int((model(x).argmax(1) == labels).sum())
    recorded = json.loads((folder / "config.json").read_text())["timm_ll"]["test_accuracy"]
    assert len(test) == 10_000
    assert correct / len(test) == pytest.approx(recorded, abs=0.001)  # ten images at most: float round-off
