import json
from pathlib import Path

import pytest
import timm
import torch
from torch import nn

import timm_ll  # noqa: F401
from timm_ll.layers import CReLU
from timm_ll.models.cifar import FAMILIES, REGISTERED_DEPTHS, CifarNet


def _affine_error(model: nn.Module, input_shape=(2, 3, 32, 32)) -> float:
    """Relative error of f(ax+by) = a f(x) + b f(y) + (1-a-b) f(0), in float64."""
    model = model.double().eval()
    x, y = torch.randn(2, *input_shape, dtype=torch.float64)
    a, b = 0.75, -1.5
    with torch.no_grad():
        lhs = model(a * x + b * y)
        rhs = a * model(x) + b * model(y) + (1 - a - b) * model(torch.zeros_like(x))
    return ((lhs - rhs).norm() / lhs.norm()).item()


@pytest.mark.parametrize("family", ["ll_plain", "ll_slim"])
@pytest.mark.parametrize("depth", REGISTERED_DEPTHS)
def test_ll_models_are_affine_at_init(family, depth):
    assert _affine_error(timm.create_model(f"{family}{depth}")) < 1e-9


@pytest.mark.parametrize("depth", [20, 110])
def test_ll_models_without_norm_are_affine_at_init(depth):
    model = timm.create_model(f"ll_plain{depth}", norm_layer="")  # timm drops None-valued kwargs
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert _affine_error(model) < 1e-9
    direct = timm_ll.CifarNet(depth=depth, looks_linear=True, norm_layer=None)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in direct.modules())
    assert _affine_error(direct) < 1e-9


@pytest.mark.parametrize("name", ["plain20", "crelu_plain20", "cifar_resnet20"])
def test_relu_and_unmirrored_models_are_not_affine(name):
    assert _affine_error(timm.create_model(name)) > 1e-2


def test_any_6n_plus_2_depth_and_clear_error_otherwise():
    model = timm.create_model("ll_plain20", depth=14)
    assert model.depth == 14 and len(model.stages[0]) == 2
    assert _affine_error(model) < 1e-9
    with pytest.raises(ValueError, match=r"6n\+2.*20, 26, 32"):
        timm.create_model("plain20", depth=21)


def test_parameter_counts_of_the_families_at_depth_56():
    counts = {
        f: sum(p.numel() for p in timm.create_model(f"{f}56").parameters())
        for f in ("ll_plain", "crelu_plain", "plain", "cifar_resnet")
    }
    assert counts["cifar_resnet"] == counts["plain"] == 853_018  # He et al.: 0.85M
    assert counts["ll_plain"] == counts["crelu_plain"]
    # CReLU doubles the input channels of every conv but the stem
    assert 1.9 < counts["ll_plain"] / counts["plain"] < 2.0


def _conv_flops(model: nn.Module) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        model.eval()(torch.zeros(1, 3, 32, 32))
    return counter.get_total_flops()


# depth 200 (three nets of 200 layers counted) in the full suite only, and for ll_slim only: the TAT families
# share its widths (tat_slim) or plain's (tat_plain), which depths 20-110 already check
@pytest.mark.parametrize(
    ("family", "depth"),
    [
        pytest.param(family, d, marks=pytest.mark.slow) if d == 200 else (family, d)
        for family in ("ll_slim", "tat_slim", "tat_plain")
        for d in REGISTERED_DEPTHS
        if d >= 20 and (d < 200 or family == "ll_slim")
    ],
)
def test_the_equal_compute_families_have_the_parameters_and_flops_of_plain_and_resnet(family, depth):
    slim, plain, resnet = (timm.create_model(f"{f}{depth}") for f in (family, "plain", "cifar_resnet"))
    slim_params = sum(p.numel() for p in slim.parameters())
    for reference in (plain, resnet):  # option-A shortcuts are parameter- and conv-free: the same counts
        assert abs(slim_params / sum(p.numel() for p in reference.parameters()) - 1) < 0.05
        assert abs(_conv_flops(slim) / _conv_flops(reference) - 1) < 0.05
    if family == "tat_plain":  # plain's widths with a Leaky ReLU: no CReLU doubling
        assert [info["num_chs"] for info in slim.feature_info] == [16, 16, 32, 64]
        return
    # the CReLU layout doubles the pre-activation widths: 11/23/45 -> 22/46/90 channels out of each stage
    assert [info["num_chs"] for info in slim.feature_info] == [22, 22, 46, 90]


def test_timm_kwargs_are_honoured():
    model = timm.create_model("ll_plain20", num_classes=7, in_chans=1, global_pool="max", drop_rate=0.5)
    assert model.stem.conv.in_channels == 1 and model.fc.out_features == 7
    assert model.global_pool.pool_type == "max" and model.drop_rate == 0.5
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    with pytest.raises(TypeError):
        timm.create_model("ll_plain20", not_an_argument=1)


def test_pretrained_cfg_matches_cifar10():
    cfg = timm.create_model("ll_plain56").pretrained_cfg
    assert cfg["input_size"] == (3, 32, 32) and cfg["num_classes"] == 10 and cfg["pool_size"] == (8, 8)
    assert cfg["first_conv"] == "stem.conv" and cfg["classifier"] == "fc"
    assert cfg["mean"] == pytest.approx((0.4914, 0.4822, 0.4465))
    assert timm.data.resolve_data_config(model=timm.create_model("plain20"))["input_size"] == (3, 32, 32)


def test_features_only_returns_stem_and_three_stages():
    model = timm.create_model("ll_plain20", features_only=True)
    feats = model(torch.randn(2, 3, 32, 32))
    assert [f.shape[1:] for f in feats] == [(32, 32, 32), (32, 32, 32), (64, 16, 16), (128, 8, 8)]
    assert model.feature_info.channels() == [32, 32, 64, 128]
    assert model.feature_info.reduction() == [1, 1, 2, 4]
    picked = timm.create_model("plain20", features_only=True, out_indices=(2, 3))
    assert [f.shape[1] for f in picked(torch.randn(1, 3, 32, 32))] == [32, 64]


def test_reset_classifier_keeps_ll_net_affine():
    model = timm.create_model("ll_plain20")
    model.reset_classifier(100)
    assert model.fc.out_features == 100 and model.num_classes == 100
    assert _affine_error(model) < 1e-9
    model.reset_classifier(0)
    assert model(torch.randn(2, 3, 32, 32).double()).shape == (2, model.num_features)


def test_forward_features_head_and_intermediates_agree():
    model = timm.create_model("cifar_resnet20").eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    torch.testing.assert_close(model.forward_head(feats), model(x))
    final, inter = model.forward_intermediates(x)
    torch.testing.assert_close(final, feats)
    assert [t.shape[1] for t in inter] == [16, 16, 32, 64]
    assert model.forward_head(feats, pre_logits=True).shape == (2, 64)


def test_grad_checkpointing_gives_the_same_gradients():
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = timm.create_model("ll_plain20")
        model.set_grad_checkpointing(checkpointing)
        model(torch.randn(2, 3, 32, 32)).sum().backward()
        grads.append(model.stem.conv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_pretrained_from_a_local_state_dict(tmp_path):
    source = timm.create_model("ll_plain20")
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)
    loaded = timm.create_model("ll_plain20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_pretrained_from_a_lightning_checkpoint(tmp_path):
    source = timm.create_model("plain20")
    ckpt = {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": {f"model.{k}": v for k, v in source.state_dict().items()},
    }
    path = tmp_path / "last.ckpt"
    torch.save(ckpt, path)
    loaded = timm.create_model("plain20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    torch.testing.assert_close(loaded.fc.weight, source.fc.weight)


def test_pretrained_with_other_num_classes_drops_the_head(tmp_path):
    source = timm.create_model("plain20")
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    loaded = timm.create_model("plain20", pretrained=True, num_classes=3, pretrained_cfg_overlay=dict(file=str(path)))
    assert loaded.fc.out_features == 3
    torch.testing.assert_close(loaded.stem.conv.weight, source.stem.conv.weight)


def test_mismatched_checkpoint_names_the_layer(tmp_path):
    path = tmp_path / "plain.pth"
    torch.save(timm.create_model("plain20").state_dict(), path)
    expected = r"'stages\.0\.0\.unit1\.conv\.weight' has shape \(16, 16, 3, 3\).*\(16, 32, 3, 3\)"
    with pytest.raises(ValueError, match=expected):
        timm.create_model("ll_plain20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))
    path = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match="none of the checkpoint's keys"):
        timm.create_model("plain20", pretrained=True, pretrained_cfg_overlay=dict(file=str(path)))


def test_registered_names_and_module():
    names = timm.list_models(module="cifar")
    for family in ("ll_plain", "crelu_plain", "plain", "cifar_resnet", "ll_slim", "tat_plain", "tat_slim"):
        for depth in REGISTERED_DEPTHS:
            assert f"{family}{depth}" in names


def test_invalid_configurations_are_refused():
    with pytest.raises(ValueError, match="looks_linear=True needs a CReLU act_layer"):
        timm.create_model("plain20", looks_linear=True, act_layer="relu")
    with pytest.raises(ValueError, match="act_layer='gelu': use one of 'relu', 'crelu', 'tat_leaky_relu'"):
        timm.create_model("plain20", act_layer="gelu")
    with pytest.raises(ValueError, match="block='dense'"):
        timm.create_model("plain20", block="dense")
    with pytest.raises(ValueError, match="takes a ReLU act_layer"):
        timm.create_model("cifar_resnet20", act_layer="crelu")
    with pytest.raises(ValueError, match="its own init"):
        timm.create_model("ll_plain20", weight_init="orthogonal")
    with pytest.raises(TypeError, match="unexpected keyword arguments \\['act_layr'\\].*did you mean 'act_layer'"):
        CifarNet(depth=20, act_layr="relu")


def _fingerprint(model: nn.Module) -> dict[str, list]:
    return {
        name: [float(v.double().sum()), float(v.double().abs().sum()), [float(x) for x in v.flatten()[:3]]]
        for name, v in model.state_dict().items()
        if v.is_floating_point()
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_same_seed_gives_the_initial_weights_of_before_the_parts_rework(family):
    """``tests/data/initial_weights_depth8_seed0.json`` fingerprints each family's depth-8 member at seed 0 as the
    string-flag CifarNet of commit d0c4c85 built it (``tests/data/make_fixtures.py``): committed runs stay
    reproducible."""
    reference = json.loads((Path(__file__).parent / "data" / "initial_weights_depth8_seed0.json").read_text())
    torch.manual_seed(0)
    ours = _fingerprint(timm.create_model(f"{family}8"))
    theirs = reference["fingerprints"][family]
    assert list(ours) == list(theirs)
    # loose enough for another CPU's QR (orthogonal init) and thread count; another draw is off by O(1)
    for name, (total, magnitude, first) in theirs.items():
        assert ours[name][0] == pytest.approx(total, rel=1e-4, abs=1e-4 * magnitude), name
        assert ours[name][1] == pytest.approx(magnitude, rel=1e-4), name
        assert ours[name][2] == pytest.approx(first, rel=1e-4, abs=1e-5), name


def test_the_old_string_flags_warn_and_build_the_same_net():
    new = dict(
        ll_plain=dict(looks_linear=True),
        cifar_resnet=dict(block="basic"),
        tat_plain=dict(act_layer="tat_leaky_relu", weight_init="orthogonal", eta=0.9),
    )
    old = dict(
        ll_plain=dict(activation="crelu", init="looks_linear"),
        cifar_resnet=dict(residual=True),
        tat_plain=dict(activation="leaky_relu", init="orthogonal", eta=0.9),
    )
    for family in new:
        torch.manual_seed(0)
        expected = CifarNet(depth=20, **new[family])
        torch.manual_seed(0)
        with pytest.warns(DeprecationWarning, match="is deprecated"):
            built = CifarNet(depth=20, **old[family])
        assert repr(built) == repr(expected)
        assert _fingerprint(built) == _fingerprint(expected)


def test_cifar_net_takes_parts_as_classes_and_the_shallow_eta_is_the_models():
    from timm_ll.models.cifar import SHALLOW_ETA, BasicBlock

    by_class = CifarNet(depth=20, block=BasicBlock, act_layer=nn.ReLU)
    assert isinstance(by_class.stages[0][0], BasicBlock)
    assert CifarNet(depth=8, looks_linear=True, eta="auto").eta == SHALLOW_ETA  # 7 activations cannot reach 0.9
    assert CifarNet(depth=20, looks_linear=True, eta="auto").eta == 0.9
    assert timm.create_model("tat_slim8").eta == SHALLOW_ETA and timm.create_model("tat_slim20").eta == 0.9


def test_ll_plain_is_the_pre_activation_sequence_layer_for_layer():
    # conv -> BN -> CReLU units chained give exactly the pre-activation LL net (a bare stem conv, then
    # BN -> CReLU -> conv repeated, then BN -> CReLU -> pool -> linear): the two placements differ only in
    # where the block boundaries fall, which is why CifarNet keeps conv -> norm -> act (see its docstring)
    model = timm.create_model("ll_plain20").eval()
    kinds = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", CReLU: "act", nn.Linear: "fc"}
    order: list[str] = []
    for module in model.modules():
        kind = next((name for cls, name in kinds.items() if isinstance(module, cls)), None)
        if kind is not None:
            module.register_forward_hook(lambda *_, kind=kind: order.append(kind))
    model(torch.randn(2, 3, 32, 32))
    assert " ".join(order) == " ".join(["conv", *["bn act conv"] * 18, "bn act fc"])


# the models table of docs/MODELS.md, checked exactly (the table names this file as its source)
README_PARAMETER_COUNTS = {
    "ll_plain56": 1_701_530,
    "crelu_plain56": 1_701_530,
    "plain56": 853_018,
    "cifar_resnet56": 853_018,
    "ll_slim56": 847_985,
    "tat_plain56": 853_018,
    "tat_slim56": 847_985,
    "ll_resnet50": 45_505_064,
    "plain_resnet50": 22_780_456,
}


def test_the_readme_models_table_has_the_exact_parameter_counts():
    from tests.conftest import REPO

    for name, count in README_PARAMETER_COUNTS.items():
        with torch.device("meta"):  # counting needs no memory
            model = timm.create_model(name)
        assert sum(p.numel() for p in model.parameters()) == count, name
    page = (REPO / "docs" / "MODELS.md").read_text()
    shown = page[page.index("| family | activation |") :].split("\n\n", 1)[0]
    for count in set(README_PARAMETER_COUNTS.values()):
        assert f"{count:,}" in shown, f"{count:,} is not in docs/MODELS.md's models table"
