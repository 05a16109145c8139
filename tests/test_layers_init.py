import pytest
import torch
import torch.nn.functional as F
from torch import nn

from timm_ll import CReLU, crelu, looks_linear_, orthogonal_


def _reference_crelu(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    return torch.cat((F.relu(x), F.relu(-x)), dim=dim)


@pytest.mark.parametrize("dim", [1, -1])
def test_crelu_matches_reference_forward_and_backward(dim):
    x = torch.randn(4, 6, 5, 5, dtype=torch.float64, requires_grad=True)
    out = crelu(x, dim)
    assert out.shape[dim] == 2 * x.shape[dim]
    torch.testing.assert_close(out, _reference_crelu(x, dim))
    torch.autograd.gradcheck(lambda t: crelu(t, dim), (x,))


def test_crelu_gradient_is_zero_at_zero_like_relu():
    x = torch.tensor([[-1.0, 0.0, 2.0]], requires_grad=True)
    crelu(x).sum().backward()
    assert x.grad.tolist() == [[-1.0, 0.0, 1.0]]


def test_crelu_keeps_one_tensor_for_backward():
    # its input (C channels), which a following CReLUConv2d shares; with the recomputation off,
    # its output (2C), which the following conv keeps anyway (the package's earlier design)
    x = torch.randn(8, 16, 8, 8, requires_grad=True)
    saved: list[torch.Tensor] = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        z = x * 1.0
        out = CReLU()(z)
    assert len(saved) == 1 and saved[0].data_ptr() == z.data_ptr() and saved[0].numel() * 2 == out.numel()
    saved.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = CReLU(recompute=False)(x * 1.0)
    assert len(saved) == 1 and saved[0].data_ptr() == out.data_ptr()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        saved.clear()
        _reference_crelu(x * 1.0)
    assert sum(t.numel() for t in saved) >= out.numel()  # the primitive version keeps a second copy


def test_crelu_keeps_channels_last():
    x = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = crelu(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, _reference_crelu(x))
    out.sum().backward()
    torch.testing.assert_close(x.grad, torch.zeros_like(x) + torch.sign(x.detach()))


def test_crelu_scripts():
    scripted = torch.jit.script(CReLU())
    x = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(scripted(x), _reference_crelu(x))


@pytest.mark.parametrize("kind", ["flattened", "delta"])
def test_looks_linear_conv_computes_w0_z_exactly(kind):
    conv = nn.Conv2d(2 * 8, 12, 3, padding=1, bias=True).double()
    looks_linear_(conv, kind)
    w0 = conv.weight[:, :8]
    torch.testing.assert_close(conv.weight[:, 8:], -w0)
    assert torch.count_nonzero(conv.bias) == 0
    z = torch.randn(3, 8, 7, 7, dtype=torch.float64)
    torch.testing.assert_close(conv(crelu(z)), F.conv2d(z, w0, padding=1), rtol=1e-12, atol=1e-12)


def test_flattened_half_is_orthogonal():
    conv = looks_linear_(nn.Conv2d(2 * 16, 16, 3))
    w0 = conv.weight[:, :16].reshape(16, -1)
    torch.testing.assert_close(w0 @ w0.T, torch.eye(16), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "layer",
    [
        nn.Linear(2 * 64, 256),  # tall: fan_out > fan_in
        nn.Linear(2 * 256, 32),  # wide
        nn.Conv2d(2 * 16, 32, 3, stride=2, padding=1),  # strided, channels up
        nn.Conv2d(2 * 64, 16, 3, padding=1),  # channels down
        nn.Conv2d(2 * 4, 64, 1),  # tall 1x1
    ],
    ids=["linear-tall", "linear-wide", "conv-strided-up", "conv-down", "conv1x1-tall"],
)
def test_non_square_layers_keep_per_unit_variance(layer):
    looks_linear_(layer)
    in_half = layer.weight.shape[1] // 2
    shape = (4096, in_half) if isinstance(layer, nn.Linear) else (64, in_half, 16, 16)
    z = torch.randn(shape)
    with torch.no_grad():
        y = layer(crelu(z))
    ratio = y.var().item() / z.var().item()
    assert 0.85 < ratio < 1.15, ratio


def test_first_layer_orthogonal_keeps_scale():
    conv = orthogonal_(nn.Conv2d(3, 16, 3, padding=1))
    x = torch.randn(64, 3, 16, 16)
    with torch.no_grad():
        ratio = conv(x)[..., 1:-1, 1:-1].var().item() / x.var().item()
    assert 0.8 < ratio < 1.2
    torch.testing.assert_close(conv.weight.reshape(16, -1).norm(dim=1), torch.ones(16))  # 16 <= 27: orthonormal rows


def test_bad_layers_get_clear_errors():
    with pytest.raises(ValueError, match="even count"):
        looks_linear_(nn.Conv2d(3, 8, 3))
    with pytest.raises(ValueError, match="groups=1"):
        looks_linear_(nn.Conv2d(8, 8, 3, groups=2))
    with pytest.raises(TypeError, match="nn.Linear or nn.Conv"):
        looks_linear_(nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="'flattened' or 'delta'"):
        orthogonal_(nn.Conv2d(4, 4, 3), kind="nope")
