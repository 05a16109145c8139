import json
import zipfile
from pathlib import Path

import pytest
import torch

from tests.conftest import CIFAR_ZIP
from timm_ll.app.cli import main
from timm_ll.app.data import DataSourceError, load_source


def test_digits_is_embedded_and_upscaled():
    train, test = load_source("digits", "train"), load_source("digits", "test")
    assert train.images.shape[1:] == (3, 32, 32) and train.images.dtype == torch.uint8
    assert len(train) + len(test) == 1797 and train.classes == [str(i) for i in range(10)]


def _jpeg_bytes(color: int) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (color, color, color)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_cifar_style_zip_and_folder(tmp_path):
    path = tmp_path / "tiny.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for split in ("train", "test"):
            for cls, color in (("cat", 10), ("dog", 200)):
                archive.writestr(f"{split}/{cls}/0001.jpg", _jpeg_bytes(color))
    data = load_source(str(path), "test")
    assert data.classes == ["cat", "dog"] and data.labels.tolist() == [0, 1]
    assert abs(int(data.images[1].float().mean()) - 200) < 5
    folder = tmp_path / "folder"
    for cls in ("a", "b"):
        (folder / cls).mkdir(parents=True)
        (folder / cls / "x.jpg").write_bytes(_jpeg_bytes(50))
    assert len(load_source(str(folder))) == 2  # an ImageFolder


def test_bad_sources_name_the_file_and_the_layout(tmp_path):
    with pytest.raises(DataSourceError, match="neither 'digits'"):
        load_source(str(tmp_path / "missing.zip"))
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"not a zip")
    with pytest.raises(DataSourceError, match=r"corrupt\.zip is not a readable zip.*train/<class>"):
        load_source(str(corrupt))
    wrong = tmp_path / "wrong.zip"
    with zipfile.ZipFile(wrong, "w") as archive:
        archive.writestr("images/cat/1.jpg", _jpeg_bytes(1))
    with pytest.raises(DataSourceError, match="no images under train/<class>/"):
        load_source(str(wrong))
    broken = tmp_path / "broken.zip"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("train/cat/1.jpg", b"garbage")
    with pytest.raises(DataSourceError, match="cannot decode image .*broken.zip:train/cat/1.jpg"):
        load_source(str(broken))


def test_torchvision_cifar10_without_network_suggests_a_local_path(tmp_path, monkeypatch):
    import urllib.error

    import torchvision.datasets

    def offline(root, train, download):  # what torchvision raises with no network; never download in tests
        assert download is True and root == str(tmp_path)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(DataSourceError, match=r"URLError.*point --data at a local copy laid out as train/<class>"):
        load_source("cifar10", data_root=tmp_path)


@pytest.mark.slow  # decodes the 10,000 test images
@pytest.mark.skipif(not CIFAR_ZIP.exists(), reason="../shared/data/cifar10-jpeg.zip not present")
def test_shared_cifar_zip():
    data = load_source(str(CIFAR_ZIP), "test")
    assert data.images.shape == (10000, 3, 32, 32) and len(data.classes) == 10


@pytest.mark.slow  # six models and their figures; the fast tier keeps the any-model check
def test_shatter_command_small(tmp_path, capsys):
    out_json = tmp_path / "s.json"
    code = main(
        [
            "shatter",
            "--families",
            "ll_plain,plain",
            "--depths",
            "8,20,32",
            "--num-points",
            "16",
            "--json",
            str(out_json),
            "--out",
            str(tmp_path / "figs"),
        ]
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["schema"] == "timm-ll/shatter/1" and report["num_points"] == 16
    rows = {r["model"]: r for r in report["results"]}
    assert set(rows) == {f"{f}{d}" for f in ("ll_plain", "plain") for d in (8, 20, 32)}
    assert all(rows[f"ll_plain{d}"]["neighbor_corr"] == 1.0 for d in (8, 20, 32))
    assert rows["ll_plain8"]["dtype"] == "float64" and rows["plain8"]["dtype"] == "float32"
    assert set(report["fits"]) == {"ll_plain", "plain"}
    for key in ("effective_rank", "stable_rank", "spectral_slope", "depth", "family", "input_size"):
        assert key in rows["plain20"]
    assert {p.split("/")[-1] for p in report["figures"]} == {
        "neighbor_corr.png",
        "gradient_traces.png",
        "covariance.png",
    }
    printed = capsys.readouterr().out
    assert "ll_plain32" in printed and "fwd kernel" in printed
    # the forward kernel: a deep plain ReLU net maps the two images to almost one direction, the LL net does not
    assert rows["plain32"]["kernel"] > 0.99 > rows["ll_plain32"]["kernel"]
    assert 0 < rows["plain32"]["input_cosine"] < 1


def test_shatter_any_timm_model_and_errors(tmp_path, capsys):
    assert main(["shatter", "--models", "resnet18", "--num-points", "4", "--out", str(tmp_path)]) == 0
    assert "resnet18" in capsys.readouterr().out
    assert {p.name for p in tmp_path.glob("*.png")} == {"neighbor_corr.png", "gradient_traces.png", "covariance.png"}
    assert main(["shatter", "--data", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 2
    assert "neither 'digits'" in capsys.readouterr().err


@pytest.mark.slow
def test_lightning_cli_example_selects_ll_plain56_by_name(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples/lightning_cli/train.py"),
            "fit",
            "--config",
            str(REPO / "examples/lightning_cli/config.yaml"),
            "--trainer.max_steps",
            "2",
            "--model.max_steps",
            "2",
            "--model.model_kwargs",
            "{depth: 8}",
            "--trainer.callbacks.init_args.num_points",  # the config's monitor (the last callback): a small probe
            "8",
            "--trainer.default_root_dir",
            str(tmp_path),
            "--trainer.enable_progress_bar",
            "false",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    config = next(tmp_path.rglob("config.yaml")).read_text()
    assert "model_name: ll_plain56" in config and "ShatteringMonitor" in config and "num_points: 8" in config
    # ImageSourceDataModule forwards its loader arguments to InMemoryImages: the CLI still sees each of them
    assert "source: digits" in config and "batch_size: 128" in config and "resident: false" in config


@pytest.mark.slow
def test_monitor_example_adds_the_callback_in_one_line(tmp_path):
    import importlib.util

    from tests.conftest import REPO

    spec = importlib.util.spec_from_file_location("example", REPO / "examples/monitor_in_existing_module.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    measured = example.main(["--model", "resnet18", "--max-steps", "3", "--out", str(tmp_path)])
    assert {"shattering/neighbor_corr", "shattering/effective_rank"} <= set(measured)


@pytest.mark.slow
def test_train_command_small_and_its_checkpoint_loads_in_timm(tmp_path):
    import timm

    out_json = tmp_path / "t.json"
    code = main(
        [
            "train",
            "--model",
            "cifar_resnet20",
            "--data",
            "digits",
            "--max-steps",
            "4",
            "--batch-size",
            "32",
            "--monitor-every",
            "2",
            "--out",
            str(tmp_path / "runs"),
            "--json",
            str(out_json),
        ]
    )
    assert code == 0
    report = json.loads(out_json.read_text())
    assert report["schema"] == "timm-ll/train/1" and report["steps"] == 4 and 0.0 <= report["test_acc"] <= 1.0
    assert report["log_dir"].endswith("cifar_resnet20/version_0") and report["architecture"] == "cifar_resnet20"
    loaded = timm.create_model(
        "cifar_resnet20", pretrained=True, pretrained_cfg_overlay=dict(file=report["checkpoint"])
    )
    saved = torch.load(report["checkpoint"], weights_only=True)["state_dict"]
    torch.testing.assert_close(loaded.fc.weight, saved["model.fc.weight"])


@pytest.mark.slow
def test_fit_and_test_creates_the_registered_model_and_keeps_one_folder(tmp_path):
    from timm_ll.app.training import fit_and_test

    data = load_source("digits", "test")
    result = fit_and_test(
        "ll_plain8", data, data, max_steps=2, batch_size=32, out_dir=str(tmp_path), monitor_every=1, progress=False
    )
    assert result.model == "ll_plain8" and result.architecture == "ll_plain8"
    assert result.log_dir.endswith("ll_plain8/version_0")
    folder = Path(result.log_dir)
    assert [p.name for p in tmp_path.joinpath("ll_plain8").iterdir()] == ["version_0"]
    assert (folder / "metrics.csv").exists() and list(folder.glob("events.out.tfevents.*"))
    assert result.checkpoint == f"{result.log_dir}/checkpoints/last.ckpt" and Path(result.checkpoint).exists()
    assert {p.name for p in (folder / "shattering").glob("*.png")} >= {"gradient_traces.png", "covariance_init.png"}
