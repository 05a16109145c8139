"""The measurer owns a monitored run: batches of one, ragged token batches, failures that never end a run, and
state that loads with ``weights_only=True`` (old checkpoints and committed results included)."""

from __future__ import annotations

import io
import json
import math
import warnings

import lightning.pytorch as L
import pytest
import torch
from torch import nn

from lightning_callbacks import ShatteringMeasurer, ShatteringMonitor, ShatteringResult
from lightning_callbacks.measure import MIN_CHUNK, second_endpoint
from lightning_callbacks.replay import CallRecorder
from tests.conftest import REPO
from tests.lightning_helpers import loader, make_module


class LossRecorder(L.Callback):
    def __init__(self) -> None:
        self.losses: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].detach().clone())


def _fit(monitor: ShatteringMonitor | None, batch_size: int = 8, steps: int = 4):
    L.seed_everything(7, verbose=False)
    module, losses = make_module(L.LightningModule), LossRecorder()
    trainer = L.Trainer(
        callbacks=[losses] + ([monitor] if monitor else []),
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, loader(batch_size=batch_size))
    return module, losses.losses, trainer


def _same_training(a: tuple, b: tuple) -> None:
    (module_a, losses_a, _), (module_b, losses_b, _) = a, b
    assert len(losses_a) == len(losses_b) and all(torch.equal(x, y) for x, y in zip(losses_a, losses_b))
    for (name, x), (_, y) in zip(module_a.state_dict().items(), module_b.state_dict().items()):
        assert torch.equal(x, y), name  # weights and BN running statistics, bitwise


def test_a_batch_of_one_trains_to_the_end_with_readings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monitor = ShatteringMonitor(every_n_steps=2, num_points=8, log_figures=False)
    with pytest.warns(UserWarning, match="a single sample before the first optimizer step.*mirrored"):
        monitored = _fit(monitor, batch_size=1)
    _same_training(monitored, _fit(None, batch_size=1))
    assert [r.step for r in monitor.history] == [0, 1, 2, 4]
    assert all(r.failed is None and r.lines == 1 for r in monitor.history)
    assert all(math.isfinite(r.statistics["neighbor_corr"][0]) for r in monitor.history)
    # the line runs from the first sample to it mirrored (flipped left to right), fixed for the run
    ends = monitor.measurer.probes()[0][[0, -1]].float()
    first = next(iter(loader(batch_size=1)))[0][0]
    assert torch.equal(ends[0], first) and torch.equal(ends[1], first.flip(-1))


def test_a_failing_measurement_warns_once_logs_nan_and_training_goes_on(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def forward_fn(module, probe):
        if monitor.history:  # every measurement from the second on
            raise RuntimeError("injected failure")
        return module(probe)

    monitor = ShatteringMonitor(every_n_steps=2, num_points=8, log_figures=False, forward_fn=forward_fn)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monitored = _fit(monitor)
    _same_training(monitored, _fit(None))
    assert monitored[2].global_step == 4  # the fit ended as it would have
    assert [(r.step, r.failed) for r in monitor.history] == [
        (0, None),
        (1, "RuntimeError: injected failure"),
        (2, "RuntimeError: injected failure"),
        (4, "RuntimeError: injected failure"),
    ]
    assert math.isnan(monitor.last_measurement["shattering/neighbor_corr"])
    assert math.isnan(monitored[2].callback_metrics["shattering/neighbor_corr"])  # logged as NaN
    warned = [str(w.message) for w in caught if "injected failure" in str(w.message)]
    assert len(warned) == 1 and "Training goes on" in warned[0]  # once per cause


def test_micro_batches_give_the_lines_and_ragged_tokens_are_cropped_with_their_masks():
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed, self.head = nn.Embedding(20, 4), nn.Linear(4, 2)

        def forward(self, input_ids, attention_mask):
            return self.head((self.embed(input_ids) * attention_mask[..., None]).mean(1))

    model = Tokens()
    recorder = CallRecorder(model, samples_wanted=4)
    for length in (7, 5, 6, 9, 3):  # one sample a call (a batch of one, accumulated): the fifth is not needed
        ids = torch.arange(length)[None] % 20
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    call = recorder.remove()
    assert call.inputs.shape == (4, 5)  # four samples, cropped to the shortest of them
    assert call.kwargs["attention_mask"]["sample"].shape == (1, 5)  # the mask cropped with them
    assert call.batch_size == 1 and call.embedding == "embed"
    assert not model._forward_pre_hooks and not model.embed._forward_hooks  # nothing left behind


def test_a_single_sample_has_a_second_endpoint_at_a_typical_distance():
    image = torch.arange(12.0).view(1, 3, 4)
    assert torch.equal(second_endpoint(image), image.flip(-1))
    ids = torch.arange(6)
    assert second_endpoint(ids).tolist() == [3, 4, 5, 0, 1, 2]  # another stretch at every position


def test_a_batch_of_one_does_not_make_the_probe_run_point_by_point():
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    sizes: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: sizes.append(args[0].shape[0]))
    with pytest.warns(UserWarning, match="single sample"):
        ShatteringMeasurer(model, num_lines=2, num_points=20).measure(0, torch.randn(1, 4))
    assert sizes == [MIN_CHUNK, MIN_CHUNK, 20 - 2 * MIN_CHUNK]  # one line of 20 points, in chunks of 8


def test_the_state_loads_with_weights_only_and_old_entries_still_read():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    measurer = ShatteringMeasurer(model, num_lines=1, num_points=4, blocks=["1"])
    measurer.measure(0, torch.randn(2, 4))
    buffer = io.BytesIO()
    torch.save(measurer.state_dict(), buffer)
    restored = ShatteringMeasurer(model, num_lines=1, num_points=4, blocks=["1"])
    restored.load_state_dict(torch.load(io.BytesIO(buffer.getvalue()), weights_only=True))
    (before,), (after,) = measurer.history, restored.history
    assert after.scalars() == pytest.approx(before.scalars(), nan_ok=True)
    assert after.blocks[0].kernel == before.blocks[0].kernel and math.isfinite(after.blocks[0].kernel)
    # the committed result files' entries (written before the forward kernel existed) read as results
    for line in (REPO / "docs/results/depth_sweep_cpu-600.jsonl").read_text().splitlines()[:3]:
        for entry in json.loads(line)["shattering"]:
            result = ShatteringResult.from_entry(entry)
            assert result.step == entry["step"] and [b.name for b in result.blocks] == list(entry["layers"])
            assert result.entry()["layers"] == entry["layers"] and result.entry()["stats"] == {
                k: tuple(v) for k, v in entry["stats"].items()
            }


def test_the_adapters_only_translate_events():
    """Each adapter stays under 200 lines without its docstrings, and neither spells an option or its default:
    the protocol, the options and the defaults live in the measurer and ShatteringOptions."""
    import ast

    from lightning_callbacks.options import ShatteringOptions

    defaults = {f"{name}=" for name in vars(ShatteringOptions()) if name != "prefix"}
    for path in (REPO / "lightning_callbacks/shattering.py", REPO / "lightning_callbacks/hf.py"):
        source = path.read_text()
        docstrings = set()
        for node in ast.walk(ast.parse(source)):
            body = getattr(node, "body", None)
            if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
                if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                    docstrings.update(range(body[0].lineno, body[0].end_lineno + 1))
        code = [line for number, line in enumerate(source.splitlines(), 1) if number not in docstrings]
        assert len(code) < 200, path.name
        # an option passed on from the options object is fine; one spelled with a value of its own is not
        spelled = [d for d in defaults if any(d in line and f"{d}self.options." not in line for line in code)]
        assert not spelled, f"{path.name} spells {spelled}"
