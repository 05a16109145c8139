"""The token kernel (``lightning_callbacks.functional.tokens``) through the measurer: rank collapse in attention
without skips, none with skips or with identity-at-init attention, a conv net's spatial tokens, padding left out.
Every reading is checked against a direct computation of the cosines on the same inputs."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lightning_callbacks import ShatteringMeasurer
from lightning_callbacks import functional as F

T, D = 12, 16


class Attention(nn.Module):
    """Self-attention over ``(n, T, D)``; ``skip``: add the input back; ``shaped``: He & Hofmann's (2024) shaped
    attention ``x + (softmax(q k^T) - uniform) x`` with zero query weights, which is the identity at init."""

    def __init__(self, skip: bool = False, shaped: bool = False) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(D, 2, batch_first=True)
        self.skip, self.shaped = skip, shaped
        self.query = nn.Linear(D, D, bias=False)
        if shaped:
            nn.init.zeros_(self.query.weight)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.shaped:
            scores = self.query(x) @ x.transpose(1, 2) / math.sqrt(D)
            attention = scores.softmax(-1) - 1.0 / x.shape[1]
            return x + attention @ x
        out = self.attn(x, x, x, key_padding_mask=None if mask is None else mask == 0, need_weights=False)[0]
        return x + out if self.skip else out


class Stack(nn.Module):
    def __init__(self, depth: int, **kwargs) -> None:
        super().__init__()
        self.layers = nn.ModuleList(Attention(**kwargs) for _ in range(depth))
        self.head = nn.Linear(D, 3)

    def forward(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x, attention_mask)
        keep = torch.ones(x.shape[:2]) if attention_mask is None else attention_mask.float()
        return self.head((x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True))


def direct_token_kernel(tokens: torch.Tensor) -> float:
    """The mean cosine between distinct rows of ``tokens`` ``(T, D)``, from the full cosine matrix."""
    unit = tokens.double() / tokens.double().norm(dim=1, keepdim=True)
    cosines = unit @ unit.T
    count = tokens.shape[0]
    return float((cosines.sum() - cosines.diagonal().sum()) / (count * (count - 1)))


def outputs_at(model: nn.Module, names: list[str], *args, **kwargs) -> dict[str, torch.Tensor]:
    """Every named block's output on the given call (eval mode, no gradient)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(name).register_forward_hook(lambda m, a, out, name=name: seen.__setitem__(name, out))
        for name in names
    ]
    with torch.no_grad():
        model(*args, **kwargs)
    for hook in hooks:
        hook.remove()
    return seen


def measure(model: nn.Module, x: torch.Tensor, **kwargs):
    blocks = [name for name, _ in model.named_children() if name != "head"]
    if hasattr(model, "layers"):
        blocks = [f"layers.{i}" for i in range(len(model.layers))]
    model.eval()
    result = ShatteringMeasurer(model, num_lines=1, num_points=8, blocks=blocks).measure(0, x, **kwargs)
    return {b.name: b for b in result.blocks}


def test_attention_without_skips_collapses_the_tokens_and_with_skips_does_not():
    torch.manual_seed(0)
    x = torch.randn(4, T, D)
    plain, skipped = Stack(6), Stack(6, skip=True)
    collapsed, kept = measure(plain, x), measure(skipped, x)
    for model, readings in ((plain, collapsed), (skipped, kept)):
        direct = outputs_at(model, list(readings), x[:2])  # the line's endpoints: samples 0 and 1
        for name, reading in readings.items():
            expected = sum(direct_token_kernel(out) for out in direct[name]) / 2
            assert reading.token_status == "measured"
            assert reading.token_kernel == pytest.approx(expected, abs=1e-5), name
    assert collapsed["layers.2"].token_kernel > 0.99  # one direction within three layers
    assert all(kept[name].token_kernel < 0.5 for name in kept)  # the skips keep the tokens apart
    assert collapsed["layers.5"].token_rank < kept["layers.5"].token_rank


def test_identity_at_init_attention_keeps_the_inputs_token_kernel_at_every_depth():
    torch.manual_seed(0)
    x = torch.randn(4, T, D)
    readings = measure(Stack(8, shaped=True), x)
    at_input = (direct_token_kernel(x[0]) + direct_token_kernel(x[1])) / 2
    assert [r.token_kernel for r in readings.values()] == pytest.approx([at_input] * 8, abs=1e-9)


def test_a_conv_nets_tokens_are_its_spatial_positions():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("cifar_resnet8").eval()
    x = torch.randn(4, 3, 32, 32)
    result = ShatteringMeasurer(model, num_lines=1, num_points=8).measure(0, x)
    direct = outputs_at(model, [b.name for b in result.blocks], x[:2])
    spatial = [block for block in result.blocks if direct[block.name].dim() == 4]
    assert len(spatial) >= 4  # the stem and the stages' blocks
    for block in result.blocks:
        outs = direct[block.name]
        if block not in spatial:
            assert block.token_status == "no token axis"
            continue
        expected = sum(direct_token_kernel(out.flatten(1).T) for out in outs) / 2
        assert block.token_kernel == pytest.approx(expected, abs=1e-6), block.name
        ranks = [float(F.effective_rank(out.flatten(1).T.double())) / min(out.flatten(1).shape) for out in outs]
        assert block.token_rank == pytest.approx(sum(ranks) / 2, rel=1e-6)


def test_padding_is_left_out():
    """A padded batch (its padding masked) reads as the same tokens unpadded."""
    torch.manual_seed(0)
    model = Stack(3)
    x = torch.randn(4, T, D)
    padded = torch.cat([x, torch.randn(4, 5, D)], dim=1)
    mask = torch.cat([torch.ones(4, T, dtype=torch.long), torch.zeros(4, 5, dtype=torch.long)], dim=1)
    plain = measure(model, x)
    masked = measure(model, padded, attention_mask=mask)
    for name in plain:
        assert masked[name].token_kernel == pytest.approx(plain[name].token_kernel, abs=1e-5), name
    unmasked = measure(model, padded)  # the same padded batch with no mask: the padding counts, and differs
    assert unmasked["layers.0"].token_kernel != pytest.approx(plain["layers.0"].token_kernel, abs=1e-3)


def test_no_token_axis_reads_nan_with_a_status_and_the_option_turns_it_off():
    mlp = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))
    result = ShatteringMeasurer(mlp, num_lines=1, num_points=8, blocks=["0", "2"]).measure(0, torch.randn(4, 6))
    assert all(math.isnan(b.token_kernel) and b.token_status == "no token axis" for b in result.blocks)
    assert "shattering/token_kernel/0" in result.scalars()  # logged as NaN, with the status in the entry
    assert result.entry()["tokens"]["0"][2] == "no token axis"
    off = ShatteringMeasurer(mlp, num_lines=1, num_points=8, blocks=["0"], token_kernel=False).measure(
        0, torch.randn(4, 6)
    )
    assert off.blocks[0].token_status == "off" and not any("token" in key for key in off.scalars())
    with pytest.raises(ValueError, match="token_layout"):
        ShatteringMeasurer(mlp, token_layout="TND")


def test_channels_first_layout_and_single_token():
    sample = torch.randn(D, T)  # (D, T): a 1-d conv's channels first
    as_ntd = F.token_reading(sample.T.contiguous())
    assert F.token_reading(sample, layout="NDT").kernel == pytest.approx(as_ntd.kernel)
    assert F.token_reading(torch.randn(1, D)).status == "one token"
    assert F.token_reading(torch.randn(D)).status == "no token axis"


def test_the_token_readings_survive_a_checkpoint_entry():
    from lightning_callbacks import ShatteringResult

    torch.manual_seed(0)
    result = ShatteringMeasurer(Stack(2), num_lines=1, num_points=8, blocks=["layers.0", "layers.1"]).measure(
        0, torch.randn(4, T, D)
    )
    again = ShatteringResult.from_entry(result.entry())
    assert [(b.token_kernel, b.token_rank, b.token_status) for b in again.blocks] == [
        (b.token_kernel, b.token_rank, b.token_status) for b in result.blocks
    ]


def test_a_sample_with_a_non_finite_entry_reads_nan_and_the_others_are_unchanged():
    from lightning_callbacks import functional as F

    samples = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    spoiled = samples.clone()
    spoiled[1, 2, 0, 0] = float("inf")
    spoiled[2, 0, 1, 1] = float("nan")
    clean = [F.token_reading(s) for s in samples]
    read = [F.token_reading(s) for s in spoiled]
    assert read[0] == clean[0]
    assert [r.status for r in read] == ["measured", "non-finite", "non-finite"]
    assert math.isnan(read[1].kernel) and math.isnan(read[2].rank)
    # a conv output's tokens are its spatial positions: the kernel equals the direct mean of pairwise cosines
    tokens = samples[0].flatten(1).T
    unit = tokens / tokens.norm(dim=1, keepdim=True)
    cosines = unit @ unit.T
    direct = (cosines.sum() - cosines.diagonal().sum()) / (16 * 15)
    assert clean[0].kernel == pytest.approx(float(direct), rel=1e-12)
