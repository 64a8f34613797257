"""Models: architecture arithmetic, shapes, init statistics, heads and wrappers."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.models import Backbone, BottleneckOutput, build_model, scaled

# Parameter count of the full-width backbone, by hand from the architecture (convs have no bias
# because BatchNorm follows; each BN has weight + bias = 2 parameters per channel):
CONV = (1 * 64 * 5 * 5        # conv 5x5 stride 2 -> 64       =     1 600
        + 64 * 64 * 9         # conv 3x3 -> 64                 =    36 864
        + 64 * 128 * 9        # conv 3x3 -> 128                =    73 728
        + 128 * 128 * 9       # conv 3x3 -> 128                =   147 456
        + 128 * 256 * 9       # conv 3x3 -> 256                =   294 912
        + 256 * 256 * 9       # conv 3x3 -> 256                =   589 824
        + 256 * 384 * 9       # conv 3x3 -> 384                =   884 736
        + 384 * 512 * 9       # conv 3x3 -> 512                = 1 769 472
        + 512 * 256 * 1)      # conv 1x1 -> 256                =   131 072
BN = 2 * (64 + 64 + 128 + 128 + 256 + 256 + 384 + 512 + 256)  # = 4 096
BACKBONE = CONV + BN  # = 3 933 760
HEADS = {
    "a2e": 256 * 8 + 8,                   # linear 256 -> 8
    "a2b2e": (256 * 7 + 7) + (7 * 8 + 8),  # linear 256 -> 7, linear 7 -> 8
    "a2m2e": (256 * 7 + 7) + (7 * 8 + 8),
    "classifier": 256 * 12 + 12,          # linear 256 -> 12 classes
}


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_full_width_parameter_counts_match_the_architecture() -> None:
    assert BACKBONE == 3_933_760
    for kind, head in HEADS.items():
        model = build_model(kind, n_classes=12 if kind == "classifier" else None)
        assert n_params(model) == BACKBONE + head, kind


def test_full_width_shapes_on_a_313x149_excerpt() -> None:
    torch.manual_seed(0)
    model = build_model("a2m2e").eval()
    x = torch.randn(2, 1, 313, 149)
    # conv 5x5 stride 2 pad 2: floor((313 + 4 - 5) / 2) + 1 = 157, floor((149 + 4 - 5) / 2) + 1 = 75
    # max-pool 2: 157x75 -> 78x37; second max-pool: 78x37 -> 39x18 (3x3 convs keep the size)
    expected = [(64, 78, 37), (128, 39, 18)]
    seen: list[tuple[int, ...]] = []
    hooks = [m.register_forward_hook(lambda _m, _i, o: seen.append(tuple(o.shape[1:])))
             for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
    with torch.no_grad():
        out = model.forward_all(x)
    for h in hooks:
        h.remove()
    assert seen == expected
    assert out["output"].shape == (2, 8)
    assert out["bottleneck"].shape == (2, 7)
    assert model(x).shape == (2, 8)
    clf = build_model("classifier", n_classes=12).eval()
    with torch.no_grad():
        assert clf(x).shape == (2, 12)
        assert clf.forward_all(x)["bottleneck"] is None


def test_init_statistics() -> None:
    torch.manual_seed(3)
    model = build_model("a2b2e", width=0.5)
    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            w = m.weight.detach()
            target = (2.0 / w[0].numel()) ** 0.5  # Kaiming normal, fan_in, ReLU gain
            if w.numel() >= 1000:  # enough draws for a 10 % tolerance on the std
                assert float(w.std()) == pytest.approx(target, rel=0.1)
                assert abs(float(w.mean())) < 5 * target / w.numel() ** 0.5  # zero-mean
        if isinstance(m, nn.Conv2d):
            assert m.bias is None
        if isinstance(m, nn.Linear):
            assert torch.all(m.bias == 0)
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_width_multiplier_scales_every_channel() -> None:
    assert scaled(64, 0.25) == 16
    assert scaled(384, 0.125) == 48
    assert scaled(64, 0.001) == 1
    bb = Backbone(0.25)
    convs = [m.out_channels for m in bb.modules() if isinstance(m, nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 96, 128, 64]
    assert bb.out_features == 64
    with pytest.raises(ConfigError, match="width"):
        Backbone(0.0)


def test_config_is_json_and_rebuilds_the_model() -> None:
    for kind in ("a2e", "a2b2e", "a2m2e"):
        model = build_model(kind, width=0.1)
        cfg = json.loads(json.dumps(model.config))
        again = build_model(**cfg)
        assert again.config == model.config
        a, b = model.state_dict(), again.state_dict()
        assert {k: v.shape for k, v in a.items()} == {k: v.shape for k, v in b.items()}


def test_same_seed_same_init() -> None:
    torch.manual_seed(11)
    a = build_model("a2m2e", width=0.1)
    torch.manual_seed(11)
    b = build_model("a2m2e", width=0.1)
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())


def test_concept_contributions_plus_bias_sum_to_the_emotions() -> None:
    torch.manual_seed(0)
    model = build_model("a2m2e", width=0.1).eval()
    with torch.no_grad():
        model.head.bias.normal_()  # a non-zero bias, so the test sees how it is handled
        x = torch.randn(3, 1, 40, 30)
        contrib = model.concept_contributions(x)
        emo = model(x)
        bott = BottleneckOutput(model)(x)
    assert contrib.shape == (3, 8, 7)
    torch.testing.assert_close(contrib.sum(-1) + model.contribution_bias, emo)
    # each contribution is activation x weight
    torch.testing.assert_close(contrib[1, 2, 4], bott[1, 4] * model.head.weight[2, 4])


def test_bottleneck_wrapper_and_errors() -> None:
    torch.manual_seed(0)
    model = build_model("a2b2e", width=0.1).eval()
    x = torch.randn(2, 1, 40, 30)
    with torch.no_grad():
        torch.testing.assert_close(BottleneckOutput(model)(x), model.forward_all(x)["bottleneck"])
    a2e = build_model("a2e", width=0.1)
    with pytest.raises(ConfigError, match="bottleneck"):
        BottleneckOutput(a2e)
    with pytest.raises(ConfigError, match="bottleneck"):
        a2e.concept_contributions(x)
    with pytest.raises(ConfigError, match="kind"):
        build_model("a3e")
    with pytest.raises(ConfigError, match="n_classes"):
        build_model("classifier")
    with pytest.raises(ValueError, match=r"\(B, 1, T, F\)"):
        model(torch.randn(2, 40, 30))


def test_input_gradient_flows_for_attacks() -> None:
    torch.manual_seed(0)
    model = build_model("a2e", width=0.1).eval()
    x = torch.randn(2, 1, 40, 30, requires_grad=True)
    model(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_dropout_is_a_recorded_departure() -> None:
    paper = build_model("a2m2e", width=0.1)
    assert "dropout" not in paper.config  # configs saved before the option still rebuild
    assert [m.p for m in paper.modules() if isinstance(m, nn.Dropout2d)] == [0.3, 0.3]
    thin = build_model("a2m2e", width=0.1, dropout=0.0)
    assert thin.config["dropout"] == 0.0
    assert build_model(**json.loads(json.dumps(thin.config))).config == thin.config
    thin.train()
    x = torch.randn(2, 1, 40, 30)
    torch.manual_seed(0)
    a = thin(x)
    torch.manual_seed(1)  # no dropout: training-mode outputs do not depend on the RNG
    assert torch.equal(a, thin(x))
    with pytest.raises(ConfigError, match="dropout"):
        build_model("a2e", dropout=1.0)
