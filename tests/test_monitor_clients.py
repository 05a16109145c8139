"""The monitor on LightningModules nobody here wrote, with default arguments (offline data only).

Each client is fitted a few steps with ``ShatteringMonitor()`` and must log the input-level keys
and (where the network has blocks) a per-block profile.
"""

from __future__ import annotations

import lightning.pytorch as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel, RandomDataset
from lightning.pytorch.demos.transformer import LightningTransformer
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_callbacks import ShatteringMonitor

INPUT_KEYS = {f"shattering/{k}" for k in ("neighbor_corr", "neighbor_corr_std", "effective_rank", "stable_rank")}


@pytest.fixture(autouse=True)
def _in_tmp_path(tmp_path, monkeypatch):
    # logger=False: the Trainer's root, where the monitor writes its PNGs, is the working directory
    monkeypatch.chdir(tmp_path)


def _fit(module: L.LightningModule, loader: DataLoader, monitor: ShatteringMonitor | None, steps: int = 3) -> None:
    trainer = L.Trainer(
        callbacks=[monitor] if monitor else [],
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(module, loader)


def _profile(monitor: ShatteringMonitor) -> dict[str, float]:
    return {k.split("neighbor_corr/", 1)[1]: v for k, v in monitor.last_measurement.items() if "neighbor_corr/" in k}


def test_boring_model():
    monitor = ShatteringMonitor()
    _fit(BoringModel(), DataLoader(RandomDataset(32, 64), batch_size=8), monitor)
    assert INPUT_KEYS <= set(monitor.last_measurement)


class _Tokens(Dataset):
    """Random (inputs, target) token blocks, the shape of Lightning's WikiText2 demo data."""

    def __init__(self, vocab: int = 100, length: int = 12, size: int = 64) -> None:
        self.data = torch.randint(0, vocab, (size, length + 1), generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int):
        return self.data[index, :-1], self.data[index, 1:]


class _OfflineTransformer(LightningTransformer):
    def prepare_data(self) -> None:  # the demo downloads WikiText2; the tests bring their own tokens
        pass


def _transformer_weights(with_monitor: bool) -> dict[str, torch.Tensor]:
    L.seed_everything(5, verbose=False)
    module = _OfflineTransformer(vocab_size=100)
    _fit(module, DataLoader(_Tokens(), batch_size=8), ShatteringMonitor(num_points=8) if with_monitor else None)
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.slow  # a 2+2-layer transformer at the defaults (256 points); the dict-batch encoder test stays fast
def test_lightning_transformer_gets_a_line_in_embedding_space_and_a_block_profile():
    L.seed_everything(5, verbose=False)
    monitor = ShatteringMonitor()
    _fit(_OfflineTransformer(vocab_size=100), DataLoader(_Tokens(), batch_size=8), monitor)
    assert INPUT_KEYS <= set(monitor.last_measurement)
    profile = _profile(monitor)
    assert {"transformer.encoder.layers.0", "transformer.encoder.layers.1"} <= set(profile)
    assert {"transformer.decoder.layers.0", "transformer.decoder.layers.1"} <= set(profile)
    assert monitor.measurer.probes()[0].shape == (64, 12, 200)  # 64 points between two sequences' embeddings


@pytest.mark.slow
def test_lightning_transformer_training_is_unchanged_by_the_monitor():
    with_monitor, without = _transformer_weights(True), _transformer_weights(False)
    for name in without:
        assert torch.equal(with_monitor[name], without[name]), name


class _TokenClassifier(nn.Module):
    def __init__(self, vocab: int = 50, dim: int = 32, depth: int = 2) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        layer = nn.TransformerEncoderLayer(dim, nhead=4, dim_feedforward=64, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Linear(dim, 3)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(self.embed(input_ids), src_key_padding_mask=~attention_mask.bool())
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.head((hidden * mask).sum(1) / mask.sum(1))


class _DictBatches(L.LightningModule):
    """An HF-style client: dict batches of input_ids and attention_mask, keyword call."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _TokenClassifier()

    def training_step(self, batch, batch_idx):
        logits = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        return nn.functional.cross_entropy(logits, batch["labels"])

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class _DictDataset(Dataset):
    def __init__(self, size: int = 32, length: int = 10) -> None:
        gen = torch.Generator().manual_seed(1)
        self.ids = torch.randint(0, 50, (size, length), generator=gen)
        self.mask = torch.ones(size, length, dtype=torch.long)
        self.mask[::2, -3:] = 0  # padded sequences
        self.labels = torch.randint(0, 3, (size,), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return {"input_ids": self.ids[i], "attention_mask": self.mask[i], "labels": self.labels[i]}


@pytest.mark.slow  # a transformer trained a few steps; the fast tier keeps the other clients
def test_transformer_encoder_with_dict_batches_and_keyword_call():
    monitor = ShatteringMonitor()
    _fit(_DictBatches(), DataLoader(_DictDataset(), batch_size=8), monitor)
    assert INPUT_KEYS <= set(monitor.last_measurement)
    assert {"encoder.layers.0", "encoder.layers.1"} <= set(_profile(monitor))


@pytest.mark.slow
def test_timm_vit():
    import timm

    class ViTClassifier(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, num_classes=4)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.01)

    gen = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(16, 3, 32, 32, generator=gen), torch.randint(0, 4, (16,), generator=gen))
    monitor = ShatteringMonitor()
    _fit(ViTClassifier(), DataLoader(data, batch_size=8), monitor, steps=2)
    assert INPUT_KEYS <= set(monitor.last_measurement)
    assert {f"blocks.{i}" for i in range(12)} <= set(_profile(monitor))


class _LSTMClassifier(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(40, 16)
        self.lstm = nn.LSTM(16, 24, num_layers=2, batch_first=True)
        self.head = nn.Linear(24, 2)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embed(ids))
        return self.head(output[:, -1])

    def training_step(self, batch, batch_idx):
        ids, y = batch
        return nn.functional.cross_entropy(self(ids), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _lstm_data() -> DataLoader:
    gen = torch.Generator().manual_seed(2)
    data = TensorDataset(torch.randint(0, 40, (32, 9), generator=gen), torch.randint(0, 2, (32,), generator=gen))
    return DataLoader(data, batch_size=8)


@pytest.mark.slow  # a recurrent net trained a few steps
def test_lstm():
    monitor = ShatteringMonitor()
    _fit(_LSTMClassifier(), _lstm_data(), monitor)
    assert INPUT_KEYS <= set(monitor.last_measurement)
    assert {"embed", "lstm", "head"} <= set(_profile(monitor))  # the LSTM's output sequence, not its state


def test_a_wrong_embedding_or_forward_fn_names_what_was_found_and_training_goes_on():
    wrong_embedding = ShatteringMonitor(embedding="encoder")
    with pytest.warns(UserWarning, match=r"embedding='encoder'.*the nn.Embedding modules that ran: embed"):
        _fit(_LSTMClassifier(), _lstm_data(), wrong_embedding, steps=1)
    wrong = ShatteringMonitor(probe=torch.randn(8, 9, 16), forward_fn=lambda module, probe: "logits")
    with pytest.warns(UserWarning, match=r"forward_fn=.*returned str"):
        _fit(_LSTMClassifier(), _lstm_data(), wrong, steps=1)
    assert [(r.step, r.failed is not None) for r in wrong.history] == [(0, True), (1, True)]  # and it went on
    with pytest.raises(TypeError, match="forward_fn must be a callable"):
        ShatteringMonitor(forward_fn="forward")


def test_an_explicit_forward_fn_is_used():
    calls = []

    def forward_fn(module, probe):
        calls.append(probe.shape[0])
        return module.head(module.lstm(probe)[0][:, -1])

    class Embedded(_LSTMClassifier):
        def training_step(self, batch, batch_idx):
            ids, y = batch
            return nn.functional.cross_entropy(self.head(self.lstm(self.embed(ids).detach())[0][:, -1]), y)

    gen = torch.Generator().manual_seed(3)
    probe = torch.randn(16, 9, 16, generator=gen).cumsum(0)
    monitor = ShatteringMonitor(probe=probe, forward_fn=forward_fn, blocks=["lstm"])
    _fit(Embedded(), _lstm_data(), monitor, steps=1)
    assert calls and "shattering/neighbor_corr/lstm" in monitor.last_measurement


class _HFModule(L.LightningModule):
    """The most common way a transformer is trained in Lightning: the loss from the model, labels in the batch."""

    def __init__(self) -> None:
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        self.model = GPT2LMHeadModel(GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=100, n_positions=16))

    def training_step(self, batch, batch_idx):
        return self.model(**batch).loss  # a ModelOutput whose first entry is the scalar loss

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=1e-3)


class _LabelledTokens(_Tokens):
    def __getitem__(self, index: int):
        ids = self.data[index, :-1]
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids}


def _hf_weights(with_monitor: bool):
    L.seed_everything(5, verbose=False)
    module = _HFModule()
    monitor = ShatteringMonitor(num_lines=2, num_points=8, every_n_steps=2) if with_monitor else None
    _fit(module, DataLoader(_LabelledTokens(), batch_size=8), monitor)
    return {k: v.clone() for k, v in module.state_dict().items()}, monitor


@pytest.mark.slow
def test_a_module_returning_the_models_own_loss_is_measured_per_layer_and_invisibly():
    pytest.importorskip("transformers")
    (with_monitor, monitor), (without, _) = _hf_weights(True), _hf_weights(False)
    for name in without:
        assert torch.equal(with_monitor[name], without[name]), name
    assert INPUT_KEYS <= set(monitor.last_measurement)
    profile = _profile(monitor)
    assert {f"transformer.h.{i}" for i in range(3)} <= set(profile)
    assert all(-1 <= v <= 1 for v in profile.values())
