"""The framework-free measurer: a plain loop, every output type, statuses, checkpointing, import weight."""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_callbacks import ShatteringMeasurer
from lightning_callbacks import functional as F
from tests.conftest import REPO


class ConvBlock(nn.Module):
    def __init__(self, in_chs: int) -> None:
        super().__init__()
        self.conv, self.bn = nn.Conv2d(in_chs, 8, 3, padding=1), nn.BatchNorm2d(8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class DictNet(nn.Module):
    """A BN net called with a dict batch (``model(**batch)``) that returns the loss first when given labels,
    as a Hugging Face model does."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(ConvBlock(c) for c in (3, 8, 8)))
        self.head = nn.Linear(8, 4)

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        logits = self.head(self.blocks(pixel_values).mean((2, 3)))
        out: dict[str, torch.Tensor] = OrderedDict()
        if labels is not None:
            out["loss"] = nn.functional.cross_entropy(logits, labels)
        out["logits"] = logits
        return out


def _batches(n: int = 6, size: int = 8):
    gen = torch.Generator().manual_seed(0)
    return [
        {
            "pixel_values": torch.randn(size, 3, 8, 8, generator=gen),
            "labels": torch.randint(0, 4, (size,), generator=gen),
        }
        for _ in range(n)
    ]


def _readme_loop(with_measurer: bool = True) -> str:
    """The README's plain-loop snippet; without the measurer, the same loop minus the measurer's lines."""
    readme = (REPO / "README.md").read_text()
    snippet = next(block for block in readme.split("```python")[1:] if "ShatteringMeasurer(model" in block)
    lines = snippet.split("```")[0].splitlines()
    return "\n".join(line for line in lines if with_measurer or ("measurer" not in line and "result" not in line))


def _train(with_measurer: bool) -> tuple[dict[str, torch.Tensor], dict]:
    torch.manual_seed(0)
    model = DictNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    namespace = dict(model=model, loader=_batches(), optimizer=optimizer, print=lambda *a: None)
    exec(_readme_loop(with_measurer), namespace)
    return {k: v.clone() for k, v in model.state_dict().items()}, namespace


def test_the_readme_plain_loop_measures_per_block_on_schedule_and_is_invisible():
    with_state, namespace = _train(True)
    without_state, _ = _train(False)
    for name, value in without_state.items():
        assert torch.equal(with_state[name], value), name  # weights and BN running statistics, bitwise
    measurer = namespace["measurer"]
    assert [e.step for e in measurer.history] == [0, 1, 2, 5, 6]  # the schedule's steps, and the end
    at_init = measurer.history[0].entry()["layers"]
    assert list(at_init) == ["blocks.0", "blocks.1", "blocks.2"]  # forward order
    assert all(-1 <= v <= 1 for v in at_init.values())
    result = namespace["result"]
    assert {"shattering/neighbor_corr", "shattering/neighbor_corr/blocks.2"} <= set(result.scalars())


def test_output_selection_prefers_logits_and_never_takes_a_scalar():
    n, logits = 5, torch.randn(5, 3)
    loss = torch.tensor(1.0)
    assert F.per_sample_output(OrderedDict(loss=loss, logits=logits), n) is logits
    assert F.per_sample_output((loss, logits), n) is logits
    assert F.per_sample_output({"aux": loss, "out": [loss, {"deep": logits}]}, n) is logits
    assert F.per_sample_output(torch.randn(15, 2), n).shape == (5, 6)  # (n * T, ...) regrouped
    assert F.per_sample_output((loss, torch.randint(0, 3, (5,))), n) is None  # integer ids are no output


def test_a_network_without_per_sample_output_names_what_it_found_and_the_way_out():
    class LossOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 2)

        def forward(self, x):
            return {"loss": self.linear(x).pow(2).mean()}

    measurer = ShatteringMeasurer(LossOnly(), num_lines=1, num_points=4)
    with pytest.raises(ValueError, match=r"dict holding output\['loss'\] \(\).*readout=.*forward_fn="):
        measurer.measure(0, torch.randn(2, 4))
    # a readout of the caller's own gets the whole output: the way out
    own = ShatteringMeasurer(
        LossOnly(), num_lines=1, num_points=4, chunk_size=4, readout=lambda out: out["loss"].expand(4)
    )
    assert own.measure(0, torch.randn(2, 4)).statistics


class Branchy(nn.Module):
    """A trunk, an auxiliary branch whose output is stored but unused, and a dead branch (ReLU of a
    negative number: its gradient is exactly zero)."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(4, 8), nn.Tanh())
        self.unused = nn.Linear(8, 8)
        self.dead = nn.Linear(8, 8)
        self.head = nn.Linear(8, 2)
        self.kept: torch.Tensor | None = None

    def forward(self, x):
        h = self.trunk(x)
        self.kept = self.unused(h)  # stored, never reaches the output
        dead = torch.relu(-self.dead(h).abs() - 1.0)  # always 0: a gradient of exactly zero
        return self.head(h + dead)


def test_an_unused_branch_is_missing_and_a_dead_branch_is_zero_never_smooth():
    measurer = ShatteringMeasurer(Branchy(), blocks=["trunk", "unused", "dead"], num_lines=2, num_points=8)
    result = measurer.measure(0, torch.randn(4, 4))
    status = {b.name: b.status for b in result.blocks}
    # the trunk reaches the output through a linear head: the same non-zero gradient everywhere
    assert status == {"trunk": "flat", "unused": "missing", "dead": "zero"}
    readings = {b.name: b.neighbor_corr for b in result.blocks}
    assert math.isnan(readings["unused"]) and math.isnan(readings["dead"]) and readings["trunk"] == 1.0
    assert result.scalars()["shattering/neighbor_corr/dead"] != 1.0
    assert measurer.history[0].entry()["status"] == {"unused": "missing", "dead": "zero"}


def test_flat_is_one_and_zero_is_not():
    assert F.neighbor_correlation(torch.ones(8, 3)).item() == 1.0 and F.gradient_status(torch.ones(8, 3)) == "flat"
    assert math.isnan(F.neighbor_correlation(torch.zeros(8, 3)).item())
    assert F.gradient_status(torch.zeros(8, 3)) == "zero" and not F.is_flat(torch.zeros(8, 3))
    assert F.gradient_status(torch.full((8, 3), math.nan)) == "non-finite"
    assert F.gradient_status(torch.zeros(8, 3), reached=False) == "missing"
    assert F.gradient_status(torch.randn(8, 3)) == "measured"


class Checkpointed(nn.Module):
    def __init__(self, use: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(6, 6), nn.Tanh()) for _ in range(3))
        self.use = use

    def forward(self, x):
        for block in self.blocks:
            x = checkpoint(block, x, use_reentrant=False) if self.use else block(x)
        return x


def test_activation_checkpointing_is_measured_as_without_it():
    torch.manual_seed(0)
    plain = Checkpointed(use=False)
    checkpointed = Checkpointed(use=True)
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(4, 6)
    results = [ShatteringMeasurer(m, num_lines=2, num_points=8).measure(0, x) for m in (plain, checkpointed)]
    assert results[0].scalars() == pytest.approx(results[1].scalars(), rel=1e-12, nan_ok=True)
    # the last block's output is the network's: its gradient is the readout's, flat
    statuses = [b.status for b in results[1].blocks]
    assert statuses[-1] == "flat" and set(statuses[:-1]) == {"measured"} and len(statuses) == 6


def test_timm_grad_checkpointing_is_measured_as_without_it():
    import timm

    import timm_ll  # noqa: F401

    x = torch.randn(4, 3, 32, 32)
    model = timm.create_model("cifar_resnet8", num_classes=4)
    first = ShatteringMeasurer(model, num_lines=2, num_points=8).measure(0, x).scalars()
    model.set_grad_checkpointing(True)
    second = ShatteringMeasurer(model, num_lines=2, num_points=8).measure(0, x).scalars()
    assert second == pytest.approx(first, rel=1e-9, nan_ok=True)


def test_state_dict_keeps_the_lines_the_call_and_the_schedule():
    model = DictNet()
    measurer = ShatteringMeasurer(model, num_lines=2, num_points=8, every_n_steps=4)
    batch = _batches(1)[0]
    measurer.measure(0, **batch)
    resumed = ShatteringMeasurer(model, num_lines=2, num_points=8, every_n_steps=4)
    resumed.load_state_dict(measurer.state_dict())
    assert resumed.ready and torch.equal(resumed.probes()[1], measurer.probes()[1])
    assert not resumed.due(0) and resumed.due(4)
    # no batch needed: the call was kept; equal exactly (NaN where a block has no token axis)
    assert resumed.measure(4).scalars() == pytest.approx(measurer.measure(4).scalars(), rel=0, abs=0, nan_ok=True)


def test_bad_options_and_a_measure_without_a_call_say_what_to_do():
    with pytest.raises(ValueError, match="num_points"):
        ShatteringMeasurer(DictNet(), num_points=1)
    with pytest.raises(TypeError, match="nn.Module"):
        ShatteringMeasurer("resnet18")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match=r"measure\(step, \*\*batch\)"):
        ShatteringMeasurer(DictNet()).measure(0)


def test_too_few_samples_for_the_lines_warns_and_measures_fewer():
    measurer = ShatteringMeasurer(DictNet(), num_lines=4, num_points=4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = measurer.measure(0, torch.randn(3, 3, 8, 8))
    assert result.lines == 2 and any("enough for 2 of the 4" in str(w.message) for w in caught)


def test_a_one_line_result_is_the_functional_statistics_in_float64_exactly():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3))
    ends = torch.randn(2, 6)
    result = ShatteringMeasurer(model, num_lines=1, num_points=16, blocks=None).measure(0, ends)
    expected = F.gradient_statistics(result.gradients)
    kernel = result.statistics.pop("kernel")
    assert {k: v[0] for k, v in result.statistics.items()} == expected  # no float32 rounding on the way
    # the forward kernel is the cosine of the outputs at the line's two ends (the samples themselves)
    with torch.no_grad():
        outputs = model(ends.double().float())
    assert kernel == (pytest.approx(F.endpoint_cosine(outputs).item(), abs=1e-6), 0.0)


@pytest.mark.slow
def test_the_readme_plain_loop_measures_a_transformer_per_layer_and_is_invisible():
    transformers = pytest.importorskip("transformers")

    def train(with_measurer: bool):
        torch.manual_seed(0)
        config = transformers.GPT2Config(n_layer=3, n_embd=32, n_head=2, vocab_size=64, n_positions=16)
        model = transformers.GPT2LMHeadModel(config)  # dropout on: the measurement must not move the RNG
        gen = torch.Generator().manual_seed(1)
        ids = [torch.randint(0, 64, (8, 12), generator=gen) for _ in range(6)]
        namespace = dict(
            model=model,
            loader=[{"input_ids": x, "labels": x} for x in ids],  # the loss first in the ModelOutput
            optimizer=torch.optim.AdamW(model.parameters(), lr=1e-3),
            print=lambda *a: None,
        )
        exec(_readme_loop(with_measurer), namespace)
        return {k: v.clone() for k, v in model.state_dict().items()}, namespace

    (with_state, namespace), (without_state, _) = train(True), train(False)
    for name, value in without_state.items():
        assert torch.equal(with_state[name], value), name
    at_init = namespace["measurer"].history[0].entry()["layers"]
    assert list(at_init) == [f"transformer.h.{i}" for i in range(3)]
    assert all(-1 <= v <= 1 for v in at_init.values())
