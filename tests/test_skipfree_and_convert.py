import subprocess
import sys

import pytest
import timm
import torch
from torch import nn

import timm_ll
from timm_ll import LooksLinearError, make_looks_linear
from timm_ll.convert import affine_error


def test_ll_resnet50_is_affine_with_100_classes():
    model = timm.create_model("ll_resnet50", num_classes=100)
    assert model.fc.out_features == 100 and isinstance(model.maxpool, nn.AvgPool2d)
    assert affine_error(model, torch.randn(1, 3, 64, 64)) < 1e-9  # affinity does not depend on the image size


# ll_resnet34 and ll_resnet101 are the blocks of ll_resnet18 and ll_resnet50, more of them: the full suite checks them
_SLOW = pytest.mark.slow


@pytest.mark.parametrize(
    "name", ["ll_resnet18", pytest.param("ll_resnet34", marks=_SLOW), pytest.param("ll_resnet101", marks=_SLOW)]
)
def test_other_ll_resnets_are_affine(name):
    assert affine_error(timm.create_model(name, num_classes=10), torch.randn(1, 3, 64, 64)) < 1e-9


def test_plain_resnet_has_no_shortcut_and_is_not_affine():
    model = timm.create_model("plain_resnet50")
    assert not any("downsample" in name for name, _ in model.named_modules())
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert affine_error(model, torch.randn(1, 3, 64, 64)) > 1e-2


@pytest.mark.slow  # three ImageNet-size nets
def test_skipfree_resnets_keep_timm_resnet_api():
    model = timm.create_model("ll_resnet18", features_only=True)
    feats = model(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == model.feature_info.channels() == [128, 128, 256, 512, 1024]
    full = timm.create_model("ll_resnet18").eval()
    final, inter = full.forward_intermediates(torch.randn(1, 3, 64, 64))
    assert final.shape[1] == full.num_features == 1024 and len(inter) == 5
    full.reset_classifier(7)
    assert affine_error(full, torch.randn(1, 3, 64, 64)) < 1e-9
    assert timm.create_model("ll_resnet50").pretrained_cfg["input_size"] == (3, 224, 224)
    assert set(timm.list_models(module="skipfree_resnet")) == {
        f"{p}_resnet{d}" for p in ("ll", "plain") for d in (18, 34, 50, 101)
    }
    assert not set(timm.list_models(module="resnet")) & set(timm.list_models(module="skipfree_resnet"))
    with pytest.raises(ValueError, match="drop_path"):
        timm.create_model("ll_resnet18", drop_path_rate=0.1)


@pytest.mark.slow
def test_ll_resnet50_zero_import_in_fresh_process():
    code = "import timm, sys; m = timm.create_model('ll_resnet50', num_classes=100); print(m.fc.out_features)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "100", result.stderr


def _user_convnet() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Flatten(),
        nn.Linear(32 * 8 * 8, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _trains(model: nn.Module, x: torch.Tensor, classes: int, lr: float = 0.01) -> tuple[float, float]:
    y = torch.randint(0, classes, (x.shape[0],))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_converts_a_user_sequential_and_trains():
    net = _user_convnet()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = torch.randn(8, 3, 16, 16)
    ll = make_looks_linear(net, x)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the input is untouched
    assert isinstance(ll[2], timm_ll.CReLU) and isinstance(ll[3], nn.AvgPool2d)
    assert ll[4].in_channels == 32 and ll[9].in_features == 2 * 32 * 8 * 8 and ll[11].in_features == 128
    assert affine_error(ll, x) < 1e-9 and affine_error(net, x) > 1e-2
    first, last = _trains(ll.train(), x, 10)
    assert last < first


def test_linear_on_last_dim_gets_a_last_dim_crelu():
    mlp = nn.Sequential(nn.Linear(5, 12), nn.ReLU(), nn.Linear(12, 3))
    ll = make_looks_linear(mlp, torch.randn(2, 7, 5))
    assert ll[1].dim == -1 and affine_error(ll, torch.randn(2, 7, 5)) < 1e-9


def test_keep_maxpool_skips_the_check():
    ll = make_looks_linear(_user_convnet(), torch.randn(2, 3, 16, 16), keep_maxpool=True)
    assert isinstance(ll[3], nn.MaxPool2d)


@pytest.mark.slow
def test_converts_timm_vgg11_and_trains():
    x = torch.randn(2, 3, 64, 64)
    # timm's VGG-11 with a narrow head (mlp_ratio 1/8: 512 hidden units, not 4096): the same layers to convert, a
    # tenth of the parameters to train
    ll = make_looks_linear(timm.create_model("vgg11", num_classes=10, mlp_ratio=0.125), x)
    assert type(ll).__name__ == "VGG" and ll.pre_logits.fc1.in_channels == 1024
    assert affine_error(ll, x) < 1e-9
    first, last = _trains(ll.train(), x, 10, lr=1e-4)  # no norm layers, 11 layers of gain 1: a small step
    assert last < first


def test_refuses_resnet18_naming_the_residual_add():
    model = timm.create_model("resnet18")
    with pytest.raises(
        LooksLinearError, match=r"node 'add_?\w*' in module 'layer1\.0' \(BasicBlock\) is a residual add"
    ):
        make_looks_linear(model, torch.randn(1, 3, 64, 64))


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1)
        self.act_a, self.act_b, self.head = nn.ReLU(), nn.ReLU(), nn.Conv2d(8, 2, 1)

    def forward(self, x):
        return self.head(torch.cat([self.act_a(self.a(x)), self.act_b(self.b(x))], 1))


class _Functional(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


@pytest.mark.parametrize(
    ("model", "shape", "message"),
    [
        (nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 2)), (2, 4), r"in module '1' \(GELU\).*not a ReLU"),
        (_TwoInputs(), (1, 3, 4, 4), r"node 'cat' .* merge of two tensors"),
        (_Functional(), (2, 4), r"functional relu; .*nn\.ReLU module"),
        (nn.Sequential(nn.Linear(4, 4), nn.ReLU()), (2, 4), "is the network's output"),
    ],
    ids=["gelu", "two-activations", "functional-relu", "ends-in-relu"],
)
def test_refusals_name_the_node(model, shape, message):
    with pytest.raises(LooksLinearError, match=message):
        make_looks_linear(model, torch.randn(*shape))
