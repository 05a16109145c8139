"""The Hugging Face Trainer callback on transformers built from configs (no download), trained with labels."""

from __future__ import annotations

import math

import pytest
import torch

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from transformers import (  # noqa: E402
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    Trainer,
    TrainingArguments,
)

from lightning_callbacks import ShatteringCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token sequences with labels: next tokens (causal LM) or a class (sequence classifier)."""

    def __init__(self, task: str, size: int = 48, length: int = 16, vocab: int = 96) -> None:
        gen = torch.Generator().manual_seed(0)
        self.ids = torch.randint(0, vocab, (size, length), generator=gen)
        self.classes = torch.randint(0, 3, (size,), generator=gen)
        self.task = task

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        labels = self.ids[index] if self.task == "lm" else self.classes[index]
        return {"input_ids": self.ids[index], "attention_mask": torch.ones_like(self.ids[index]), "labels": labels}


def causal_lm() -> torch.nn.Module:
    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=96, n_positions=32))


def sequence_classifier() -> torch.nn.Module:
    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=3,
        hidden_size=32,
        num_attention_heads=2,
        intermediate_size=64,
        vocab_size=96,
        max_position_embeddings=32,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


MODELS = {"lm": (causal_lm, "transformer.h"), "classifier": (sequence_classifier, "bert.encoder.layer")}


def _args(tmp_path, steps: int, **kwargs) -> TrainingArguments:
    defaults = dict(
        output_dir=str(tmp_path),
        max_steps=steps,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        logging_steps=1000,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        seed=0,
        data_seed=0,
        disable_tqdm=True,
    )
    return TrainingArguments(**(defaults | kwargs))


def _train(tmp_path, task: str, monitor: bool, steps: int = 4, **kwargs):
    build, _ = MODELS[task]
    model = build()
    trainer = Trainer(model=model, args=_args(tmp_path, steps, **kwargs), train_dataset=Tokens(task))
    callback = ShatteringCallback.attach(trainer, every_n_steps=2, num_lines=2, num_points=8) if monitor else None
    trainer.train()
    return model, callback


@pytest.mark.slow
@pytest.mark.parametrize("task", ["lm", "classifier"])
def test_the_trainer_callback_measures_per_layer_through_tensorboard_and_is_invisible(tmp_path, task):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, callback = _train(tmp_path / "a", task, True, report_to=["tensorboard"])
    plain, _ = _train(tmp_path / "b", task, False)
    for (name, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name  # bitwise the same training
    measured = [entry.step for entry in callback.history]
    assert measured == [0, 1, 2, 4]  # init (before any update), the log-spaced start, every 2, the end
    blocks = [f"{MODELS[task][1]}.{i}" for i in range(3)]
    assert set(blocks) <= set(callback.history[0].entry()["layers"])
    events = next((tmp_path / "a").rglob("events.out.tfevents.*")).parent
    accumulator = EventAccumulator(str(events)).Reload()
    tags = set(accumulator.Tags()["scalars"])
    for block in blocks:  # the Trainer's TensorBoard callback writes every training key under "train/"
        tag = f"train/shattering/neighbor_corr/{block}"
        assert tag in tags
        assert [event.step for event in accumulator.Scalars(tag)] == measured
    at_init = accumulator.Scalars("train/shattering/neighbor_corr")[0]
    assert at_init.step == 0 and -1 <= at_init.value <= 1 and not math.isnan(at_init.value)
    assert (tmp_path / "a" / "shattering" / "summary.png").exists()


@pytest.mark.slow
def test_resuming_from_a_trainer_checkpoint_keeps_the_lines_and_the_schedule(tmp_path, capsys):
    from lightning_callbacks import verdict

    model, first = _train(tmp_path, "lm", True, steps=3, save_strategy="steps", save_steps=3)
    # the verdict of the last measurement, printed as one line when training ends
    assert f"shattering: {verdict(first.history[-1]).line()}" in capsys.readouterr().out.splitlines()
    assert (tmp_path / "checkpoint-3" / "shattering.pt").exists()
    build, _ = MODELS["lm"]
    trainer = Trainer(model=build(), args=_args(tmp_path, 6), train_dataset=Tokens("lm"))
    resumed = ShatteringCallback.attach(trainer, every_n_steps=2, num_lines=2, num_points=8)
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-3"))
    assert resumed.measurer.lines.endpoints is not None
    assert torch.equal(resumed.measurer.lines.endpoints, first.measurer.lines.endpoints)  # the same lines
    # 0, 1, 2 were measured before the checkpoint at step 3 (saved before the first run's end reading);
    # then 4 and the end (6): nothing repeated, nothing of the schedule lost
    assert [entry.step for entry in resumed.history] == [0, 1, 2, 4, 6]


@pytest.mark.parametrize("given", ["instance", pytest.param("class", marks=pytest.mark.slow)])  # class: full suite
def test_the_hf_convention_logs_into_the_log_history_and_says_how_to_reach_the_reporting(tmp_path, given):
    callback = ShatteringCallback(every_n_steps=2, num_lines=2, num_points=8) if given == "instance" else None
    args, data = _args(tmp_path, 2, report_to=["tensorboard"]), Tokens("lm")
    trainer = Trainer(model=causal_lm(), args=args, train_dataset=data, callbacks=[callback or ShatteringCallback])
    with pytest.warns(UserWarning, match=r"not to tensorboard; ShatteringCallback\.attach\(trainer, \.\.\.\) logs"):
        trainer.train()
    readings = [e for e in trainer.state.log_history if "shattering/neighbor_corr" in e]
    assert [e["step"] for e in readings] == [0, 1, 2]  # init, the log-spaced start, the end
    assert all(-1 <= e["shattering/kernel"] <= 1 for e in readings)
    assert (tmp_path / "shattering" / "summary.png").exists()


@pytest.mark.slow
def test_a_batch_of_one_with_gradient_accumulation_trains_to_the_end_with_readings(tmp_path):
    micro = dict(per_device_train_batch_size=1, gradient_accumulation_steps=4)
    model, callback = _train(tmp_path / "a", "lm", True, steps=3, **micro)
    plain, _ = _train(tmp_path / "b", "lm", False, steps=3, **micro)
    for (name, a), (_, b) in zip(model.state_dict().items(), plain.state_dict().items()):
        assert torch.equal(a, b), name  # bitwise the same training
    assert [r.step for r in callback.history] == [0, 1, 2, 3]
    assert all(r.failed is None and math.isfinite(r.statistics["neighbor_corr"][0]) for r in callback.history)
    # the four micro-batches before the first optimizer step gave four samples: two disjoint lines
    assert callback.history[0].lines == 2 and callback.measurer.call.inputs.shape[0] == 4
