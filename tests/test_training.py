import json
import shutil

import lightning.pytorch as L
import pytest
import torch

from timm_ll.app.data import ImageData, load_source
from timm_ll.app.resident import DeviceBatches
from timm_ll.app.training import InMemoryImages, fit_and_test


def _indices(batches: DeviceBatches) -> list[int]:
    # the images are their own indices, so a batch names the samples it drew
    return [int(i) for images, _ in batches for i in images]


def _batches(n: int = 10, **kwargs) -> DeviceBatches:
    images = torch.arange(n)
    return DeviceBatches(images, images % 3, **({"batch_size": 4, "shuffle": True} | kwargs))


def test_device_batches_cover_an_epoch_and_reshuffle_each_epoch():
    batches = _batches()
    assert len(batches) == 3  # 4 + 4 + 2
    first, second = _indices(batches), _indices(batches)
    assert sorted(first) == sorted(second) == list(range(10))
    assert first != second  # a new permutation every epoch
    assert _indices(_batches()) == first  # the same seed gives the same batches
    assert _indices(_batches(seed=1)) != first
    images, labels = next(iter(batches))
    assert torch.equal(labels, images % 3)  # labels stay with their images


def test_device_batches_drop_last_and_keep_order_for_evaluation():
    train = _batches(drop_last=True)
    assert len(train) == 2 and len(_indices(train)) == 8
    assert _indices(_batches(shuffle=False)) == list(range(10))


def test_device_batches_share_an_epoch_between_ranks():
    shares = [_indices(_batches(n=11, rank=rank, world_size=2, seed=5)) for rank in (0, 1)]
    assert len(shares[0]) == len(shares[1]) == 5  # equal shares: the eleventh sample is dropped
    assert not set(shares[0]) & set(shares[1])


def test_device_batches_refuse_bad_input():
    with pytest.raises(ValueError, match="one label per image"):
        DeviceBatches(torch.zeros(4), torch.zeros(3), 2, shuffle=False)
    with pytest.raises(ValueError, match="rank=2"):
        _batches(rank=2, world_size=2)
    with pytest.raises(ValueError, match="positive batch size"):
        _batches(batch_size=0)


def test_resident_data_refuses_loader_workers():
    data = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4) % 2, ["a", "b"])
    with pytest.raises(ValueError, match="num_workers=0"):
        InMemoryImages(data, data, resident=True, num_workers=2)
    with pytest.raises(RuntimeError, match="attach the DataModule to a Trainer"):
        InMemoryImages(data, data, resident=True).train_dataloader()


def test_the_datamodule_takes_splits_or_a_source_and_says_so_otherwise():
    data = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4) % 2, ["a", "b"])
    for wrong in (dict(), dict(train=data, test=data, source="digits"), dict(train=data, test=None)):
        with pytest.raises(ValueError, match="train= and test=, or a data source as source="):
            InMemoryImages(**wrong)
    module = InMemoryImages(source="digits", train_subset=100, batch_size=16)
    module.setup("fit")  # the source is read when the Trainer sets the module up
    assert len(module.train_data) == 100 and len(module.test_data) > 0 and len(module.mean) == 3


def test_the_moved_validation_run_still_runs_under_its_old_name_with_a_warning(monkeypatch):
    import timm_ll.app.run as run
    import timm_ll.app.training as training
    from timm_ll.app.run import TrainResult

    calls = []

    def fake_fit(name, train, val, **kwargs):
        calls.append((name, kwargs["monitor_every"], kwargs["max_steps"]))
        return TrainResult(
            model=name, architecture=name, test_acc=0.75, test_loss=1.0, steps=3, seconds=1.0, params=1, log_dir="x",
            checkpoint=None,
        )  # fmt: skip

    monkeypatch.setattr(run, "fit_and_test", fake_fit)
    data = ImageData(torch.zeros(4, 3, 8, 8, dtype=torch.uint8), torch.arange(4) % 2, ["a", "b"])
    with pytest.warns(DeprecationWarning, match="examples/validation.py"):
        row = training.validation_run("ll_plain8", data, data, max_steps=3, out_dir="unused")
    assert calls == [("ll_plain8", None, 3)] and row["val_error"] == 0.25 and row["train_images"] == 4
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        training.nothing  # noqa: B018


class _Batches(L.Callback):
    """Records the type of the training loader and the device and dtype of every training batch."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, torch.dtype]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self.seen.append((type(trainer.train_dataloader).__name__, str(batch[0].device), batch[0].dtype))


def test_fit_with_resident_data_trains_from_device_batches(tmp_path):
    from timm_ll.app.training import ImageClassifier

    data = load_source("digits", "test")
    module = ImageClassifier("cifar_resnet8", max_steps=6)
    recorder = _Batches()
    trainer = L.Trainer(
        max_steps=6,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[recorder],
        limit_val_batches=0,
    )
    datamodule = InMemoryImages(data, data, batch_size=32, resident=True)
    trainer.fit(module, datamodule=datamodule)
    # the batches come from DeviceBatches and reach the step as normalized floats
    assert recorder.seen == [("DeviceBatches", "cpu", torch.float32)] * 6
    metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    assert 0.0 <= metrics["test/acc"] <= 1.0
    assert list(datamodule._on_device) == [("train", "cpu"), ("test", "cpu")]  # one copy per split


@pytest.mark.slow
@pytest.mark.skipif(
    not any(shutil.which(cxx) for cxx in ("g++", "c++", "clang++")),
    reason="torch.compile's CPU code generation needs a C++ compiler",
)
@pytest.mark.slow
def test_fit_and_test_compiles_the_network_and_keeps_the_checkpoint_keys(tmp_path, monkeypatch):
    # the wiring of compile=True (in-place Module.compile, checkpoint keys, the monitor beside compiled steps) with
    # dynamo's eager backend: inductor's code generation would cost a minute here and is not what is tested (the
    # CReLU under inductor is tests/test_crelu_memory.py's)
    compile_in_place = torch.nn.Module.compile
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compile_in_place(self, backend="eager", **kw))
    data = load_source("digits", "test")
    result = fit_and_test(
        "cifar_resnet8", data, data, max_steps=2, batch_size=32, out_dir=str(tmp_path), progress=False, compile=True
    )
    assert result.steps == 2 and 0.0 <= result.test_acc <= 1.0
    keys = torch.load(result.checkpoint, weights_only=True)["state_dict"]
    assert "model.fc.weight" in keys and not any("_orig_mod" in k for k in keys)  # loads in timm as it is
    assert result.shattering  # the monitor measured the network beside the compiled steps


def test_runs_log_csv_alone_where_tensorboard_is_not_installed(tmp_path, monkeypatch):
    import importlib.util

    from timm_ll.app.training import run_loggers

    assert [type(x).__name__ for x in run_loggers(str(tmp_path), "a")] == ["CSVLogger", "TensorBoardLogger"]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if "tensorboard" in name else real(name, *a))
    assert [type(x).__name__ for x in run_loggers(str(tmp_path), "b")] == ["CSVLogger"]  # the lean install


class _PowerCut(L.Callback):
    """Ends the process's run at a given step, as a session's end or a reboot would (after the epoch-end checkpoint
    before it was written)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise SystemExit("power cut")


@pytest.mark.slow  # three short trainings with the monitor on
def test_a_cut_off_run_resumes_from_its_last_checkpoint_bitwise(tmp_path):
    from safetensors.torch import load_file

    data = load_source("digits", "test")  # 360 images: 11 steps of 32 an epoch
    kwargs = dict(
        max_steps=30, batch_size=32, progress=False, run_name="seed3", seed=3,
        monitor_every=5, monitor_options=dict(num_lines=2, num_points=8),
    )  # fmt: skip
    whole = fit_and_test("cifar_resnet8", data, data, out_dir=str(tmp_path / "whole"), **kwargs)
    cut = tmp_path / "cut"
    with pytest.raises(SystemExit):
        fit_and_test("cifar_resnet8", data, data, out_dir=str(cut), callbacks=[_PowerCut(17)], **kwargs)
    assert (cut / "cifar_resnet8" / "seed3" / "checkpoints" / "last.ckpt").exists()  # from the end of epoch 1
    resumed = fit_and_test("cifar_resnet8", data, data, out_dir=str(cut), resume=True, **kwargs)
    assert resumed.resumed_from == 11 and whole.resumed_from is None
    assert resumed.log_dir.endswith("cifar_resnet8/seed3")  # the run's own folder, not version_N
    assert (resumed.test_acc, resumed.test_loss, resumed.steps) == (whole.test_acc, whole.test_loss, whole.steps)
    first, second = (load_file(f"{r.export}/model.safetensors") for r in (whole, resumed))
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert resumed.curves == whole.curves  # the earlier part's logged steps are kept
    assert [e["step"] for e in resumed.shattering] == [e["step"] for e in whole.shattering]
    # the monitor's readings too, exactly (as JSON: NaN where a block has no token axis compares equal)
    assert json.dumps(resumed.shattering) == json.dumps(whole.shattering)
    assert resumed.seconds > 0
