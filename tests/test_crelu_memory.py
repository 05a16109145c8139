"""The CReLU -> conv pair keeps the CReLU's input for backward, not its 2x output (issue: LL at plain memory).

Every check compares against the same model with the recomputation off (``set_crelu_recompute(model,
False)``: the CReLU keeps its output, shared with the next conv), which is what the package did before.
"""

from __future__ import annotations

import contextlib
import copy

import pytest
import timm
import torch

import timm_ll
from lightning_callbacks import functional as F
from timm_ll.layers import CReLU, CReLUConv2d, crelu, set_crelu_recompute


def _saved_bytes(model: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes of the distinct storages autograd keeps for backward (parameters excluded)."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if not isinstance(t, torch.nn.Parameter):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(x)
    return sum(storages.values())


def _train_step(model: torch.nn.Module, x: torch.Tensor, recompute: bool, **context):
    model = set_crelu_recompute(copy.deepcopy(model), recompute)
    x = x.clone().requires_grad_()
    autocast = torch.autocast("cpu", **context) if context else contextlib.nullcontext()
    with autocast:
        out = model(x)
        out.float().square().sum().backward()
    return out.detach(), x.grad, {n: p.grad for n, p in model.named_parameters()}


def _assert_same_step(new, old, rtol=1e-6):
    assert torch.equal(new[0], old[0])  # forward outputs bitwise equal
    torch.testing.assert_close(new[1], old[1], rtol=rtol, atol=0)
    for name in old[2]:
        torch.testing.assert_close(new[2][name], old[2][name], rtol=rtol, atol=1e-12, msg=name)


@pytest.mark.parametrize(("name", "shape"), [("ll_plain20", (8, 3, 32, 32)), ("ll_resnet18", (2, 3, 64, 64))])
def test_same_outputs_and_gradients_as_keeping_the_concatenation(name, shape):
    model = timm.create_model(name).train()
    x = torch.randn(shape)
    _assert_same_step(_train_step(model, x, True), _train_step(model, x, False))


def test_activation_memory_of_ll_nets_is_that_of_plain_nets():
    x = torch.randn(4, 3, 32, 32)
    ll, plain = timm.create_model("ll_plain20").train(), timm.create_model("plain20").train()
    assert _saved_bytes(ll, x) <= 1.1 * _saved_bytes(plain, x)
    kept = set_crelu_recompute(copy.deepcopy(ll), False)
    assert _saved_bytes(kept, x) >= 1.4 * _saved_bytes(plain, x)  # what keeping the concatenation costs


def test_gradcheck_float64():
    torch.manual_seed(0)
    template = CReLUConv2d(6, 4, 3, stride=2, padding=1, bias=True).double()

    def pair(z: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        conv = copy.deepcopy(template)
        del conv.weight, conv.bias
        conv.weight, conv.bias = weight, bias  # plain tensors: gradcheck differentiates w.r.t. them
        return conv(crelu(z))

    z = torch.randn(2, 3, 5, 5, dtype=torch.float64, requires_grad=True)
    weight = template.weight.detach().requires_grad_()
    bias = template.bias.detach().requires_grad_()
    assert type(pair(z, weight, bias).grad_fn).__name__ == "_ConvOfCReLUBackward"  # the recomputing path
    assert torch.autograd.gradcheck(pair, (z, weight, bias))


@pytest.mark.slow
def test_channels_last_and_bf16_autocast_and_compile():
    model = timm.create_model("ll_plain8").train()
    x = torch.randn(4, 3, 32, 32)
    cl_model = copy.deepcopy(model).to(memory_format=torch.channels_last)
    cl_x = x.contiguous(memory_format=torch.channels_last)
    new, old = _train_step(cl_model, cl_x, True), _train_step(cl_model, cl_x, False)
    _assert_same_step(new, old)
    bf16_new = _train_step(model, x, True, dtype=torch.bfloat16)
    bf16_old = _train_step(model, x, False, dtype=torch.bfloat16)
    _assert_same_step(bf16_new, bf16_old, rtol=1e-2)
    compiled = torch.compile(copy.deepcopy(model), backend="aot_eager")
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)


def test_grad_checkpointing_and_the_monitors_layer_gradients():
    model = timm.create_model("ll_plain8").train()
    x = torch.randn(4, 3, 32, 32)
    checkpointed = copy.deepcopy(model)
    checkpointed.set_grad_checkpointing(True)
    _assert_same_step(_train_step(checkpointed, x, True), _train_step(model, x, False))
    layers = ["stem", "stages.0.0", "stages.1.0", "stages.2.0"]
    probe = F.line_probe(x[0], x[1], 8)
    new = F.input_gradients(model, probe, blocks=layers, bn_mode="batch")
    kept = set_crelu_recompute(copy.deepcopy(model), False)
    old = F.input_gradients(kept, probe, blocks=layers, bn_mode="batch")
    torch.testing.assert_close(new.input, old.input, rtol=1e-6, atol=0)
    for name in layers:
        torch.testing.assert_close(new.blocks[name], old.blocks[name], rtol=1e-6, atol=0)


def test_every_crelu_family_and_the_converter_use_it():
    for name in ("ll_plain8", "crelu_plain8", "ll_resnet18"):
        model = timm.create_model(name)
        assert any(isinstance(m, CReLUConv2d) for m in model.modules()), name
        assert not any(type(m) is torch.nn.Conv2d and m.in_channels > 3 for m in model.modules()), name
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 4, 3))
    converted = timm_ll.make_looks_linear(plain, torch.randn(1, 3, 8, 8))
    assert isinstance(converted[1], CReLU) and isinstance(converted[2], CReLUConv2d)
    assert set(converted.state_dict()) == set(plain.state_dict())
    assert set(timm.create_model("ll_plain8").state_dict()) == set(timm.create_model("crelu_plain8").state_dict())


def test_an_in_place_change_of_the_crelu_output_is_respected():
    conv = CReLUConv2d(4, 3, 1, bias=False)
    z = torch.randn(2, 2, 3, 3, requires_grad=True)
    h = crelu(z)
    h.mul_(2.0)  # the concatenation is no longer crelu(z): the conv must not recompute it from z
    conv(h).sum().backward()
    reference_weight = conv.weight.detach().clone().requires_grad_()
    torch.nn.functional.conv2d(2.0 * crelu(z.detach()), reference_weight).sum().backward()
    torch.testing.assert_close(conv.weight.grad, reference_weight.grad)


def test_an_input_gradient_alone_recomputes_nothing(monkeypatch):
    import timm_ll.layers as layers

    conv = CReLUConv2d(4, 3, 3, padding=1).requires_grad_(False)  # frozen, as during a measurement
    z = torch.randn(2, 2, 5, 5, requires_grad=True)
    conv(crelu(z, recompute=False)).sum().backward()
    expected, z.grad = z.grad.clone(), None
    calls = []
    values = layers._crelu_values
    monkeypatch.setattr(layers, "_crelu_values", lambda *a: calls.append(1) or values(*a))
    conv(crelu(z)).sum().backward()
    assert len(calls) == 1  # the forward's CReLU only: the backward needs h's shape, not its values
    torch.testing.assert_close(z.grad, expected, rtol=0, atol=0)


def _reference_pair(z: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return torch.cat((torch.relu(z), torch.relu(-z)), dim=dim)


@pytest.mark.parametrize("recompute", [True, False])
@pytest.mark.parametrize("dim", [1, -1])
def test_crelu_equals_the_concatenation_of_relus_forward_and_backward(recompute, dim):
    z = torch.randn(3, 6, 5, 5)
    z[0, 0, 0] = 0.0  # relu's gradient at 0 is 0 in both halves
    z[0, 1, 0] = -0.0
    grad = torch.randn(*(s * 2 if i == dim % 4 else s for i, s in enumerate(z.shape)))
    ours, reference = z.clone().requires_grad_(), z.clone().requires_grad_()
    out = crelu(ours, dim, recompute)
    assert torch.equal(out, _reference_pair(reference, dim))
    out.backward(grad)
    _reference_pair(reference, dim).backward(grad)
    assert torch.equal(ours.grad, reference.grad)


def test_the_recompute_choice_is_the_modules_and_shows_in_its_repr():
    model = timm.create_model("ll_plain8")
    assert "recompute=True" in repr(model.stem.act)
    kept = set_crelu_recompute(copy.deepcopy(model), False)
    assert "recompute=False" in repr(kept.stem.act)
    assert all(m.recompute for m in model.modules() if isinstance(m, CReLU))  # the original is untouched
    x = torch.randn(2, 3, 32, 32)
    assert _saved_bytes(kept, x) > 1.3 * _saved_bytes(model, x)  # each model keeps its own choice
    with pytest.raises(ValueError, match="no CReLU module"):
        set_crelu_recompute(timm.create_model("plain8"), False)


def test_the_deprecated_switch_warns_and_still_overrides():
    model = timm.create_model("ll_plain8")
    x = torch.randn(2, 3, 32, 32)
    with pytest.warns(DeprecationWarning, match="set_crelu_recompute"):
        switch = timm_ll.crelu_recompute(False)
    with switch:
        kept = _saved_bytes(model, x)
    assert kept > 1.3 * _saved_bytes(model, x)


def test_a_checkpoint_written_before_the_rework_loads_and_agrees():
    """``tests/data/ll_plain8_trained_d0c4c85.safetensors``: ll_plain8 after 3 SGD steps, written by the code of
    commit d0c4c85 (the CReLU hand-off through a tensor attribute and a global switch), with its logits and input
    gradient on a fixed input (``tests/data/make_fixtures.py``)."""
    from pathlib import Path

    from safetensors.torch import load_file

    state = load_file(Path(__file__).parent / "data" / "ll_plain8_trained_d0c4c85.safetensors")
    x, logits, input_grad = state.pop("__input__"), state.pop("__logits__"), state.pop("__input_grad__")
    model = timm.create_model("ll_plain8")
    model.load_state_dict(state)  # strict: same names and shapes
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), logits, rtol=1e-5, atol=1e-6)
    x = x.clone().requires_grad_()
    model(x).square().sum().backward()
    torch.testing.assert_close(x.grad, input_grad, rtol=1e-4, atol=1e-6)


def test_two_threads_with_different_choices_do_not_see_each_others():
    import threading

    x = torch.randn(2, 3, 32, 32)
    models = {True: timm.create_model("ll_plain8"), False: set_crelu_recompute(timm.create_model("ll_plain8"), False)}
    expected = {choice: _saved_bytes(model, x) for choice, model in models.items()}
    seen: dict[bool, list[int]] = {True: [], False: []}

    def measure(choice: bool) -> None:
        for _ in range(5):
            seen[choice].append(_saved_bytes(models[choice], x))

    threads = [threading.Thread(target=measure, args=(choice,)) for choice in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert expected[False] > 1.3 * expected[True]
    assert seen == {choice: [expected[choice]] * 5 for choice in models}


@pytest.mark.parametrize("dim", [1, -1])
def test_the_inference_path_equals_the_concatenation_and_keeps_channels_last(dim):
    z = torch.randn(3, 6, 5, 5).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        out = crelu(z, dim)
    assert torch.equal(out, _reference_pair(z, dim))
    assert out.is_contiguous(memory_format=torch.channels_last)  # what the next conv wants
    traced = torch.jit.trace(CReLU(dim), z)  # an exporter records torch.cat, not the out= kernel
    assert any(node.kind() == "aten::cat" for node in traced.inlined_graph.nodes())
