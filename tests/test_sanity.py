"""Sanity checks (Adebayo et al. 2018): the cascade re-initialises exactly the requested layers,
an explainer that ignores the model fails, saliency on a trained model passes, all seeded."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain import make_explainer
from robustmer.explain.sanity import (
    CASCADE_COLUMNS,
    cascade_similarity,
    cascading_randomisation,
    compare_explanations,
    map_similarity,
    parametrised_layers,
    randomisation_verdict,
    shuffled_labels,
    spearman,
)
from robustmer.models import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@dataclass
class _Result:
    attribution: torch.Tensor


class InputExplainer:
    """Ignores the model: the 'explanation' is the input's magnitude (an edge detector)."""

    name = "input"

    def __call__(self, model: nn.Module, x: torch.Tensor, target: object,
                 segments: object = None) -> _Result:
        return _Result(x.abs())

    def config(self) -> dict[str, str]:
        return {"method": self.name}


def _data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.randn(n, 1, 16, 24, generator=g)
    x[:, 0, :8, :12] += (2.0 * y - 1.0)[:, None, None]  # class 1: a bright quadrant, 0: dark
    return x, y


@pytest.fixture(scope="module")
def trained() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("classifier", width=0.0625, n_classes=2, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = _data(256, 0)
    for step in range(60):
        rows = slice((step * 32) % 256, (step * 32) % 256 + 32)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[rows]), y[rows]).backward()
        opt.step()
    model.eval()
    xt, yt = _data(128, 1)
    with torch.no_grad():
        assert float((model(xt).argmax(1) == yt).float().mean()) > 0.7  # it learned something
    return model


def _states(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_layers_in_forward_order_with_batchnorm_rules(trained: nn.Module) -> None:
    x = _data(1, 2)[0]
    layers = parametrised_layers(trained, x)
    assert len(layers) == 10  # 9 conv (+ its BatchNorm) and the head
    assert layers[0].modules == ("backbone.features.0", "backbone.features.1")
    assert layers[-1].name == "head" and layers[-1].modules == ("head",)
    assert [la.position for la in layers] == list(range(10))
    separate = parametrised_layers(trained, x, batchnorm="separate")
    assert len(separate) == 19 and separate[1].modules == ("backbone.features.1",)
    keep = parametrised_layers(trained, x, batchnorm="keep")
    assert [la.modules for la in keep] == [la.modules[:1] for la in layers]
    assert parametrised_layers(trained) == layers  # registration order agrees here

    class Reversed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.top, self.bottom = nn.Linear(3, 2), nn.Linear(4, 3)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.top(self.bottom(v))

    m = Reversed()
    assert [la.name for la in parametrised_layers(m, torch.zeros(1, 4))] == ["bottom", "top"]
    assert [la.name for la in parametrised_layers(m)] == ["top", "bottom"]
    with pytest.raises(ConfigError, match="batchnorm"):
        parametrised_layers(m, batchnorm="fold")
    with pytest.raises(ConfigError, match="no layers"):
        parametrised_layers(nn.ReLU())


def test_cascade_reinitialises_exactly_the_top_layers(trained: nn.Module) -> None:
    x = _data(1, 2)[0]
    before = _states(trained)
    layers = parametrised_layers(trained, x)
    copies = list(cascading_randomisation(trained, seed=3, n_layers=4, x=x))
    assert [s for s, _, _ in copies] == [1, 2, 3, 4]
    assert [la.name for _, la, _ in copies] == [la.name for la in layers[::-1][:4]]
    for step, _, model in copies:
        changed = {m for la in layers[::-1][:step] for m in la.modules}
        after = model.state_dict()
        for key, value in before.items():
            module = key.rsplit(".", 1)[0]
            if module in changed:
                if key.endswith(("weight", "running_var")):
                    assert not torch.equal(after[key], value), (step, key)
            else:
                assert torch.equal(after[key], value), (step, key)  # bit-identical
        assert model is not trained
    for key, value in _states(trained).items():  # the original is untouched
        assert torch.equal(value, before[key]), key
    # a layer gets the same weights in every step and every run with the seed
    again = list(cascading_randomisation(trained, seed=3, n_layers=2, x=x))
    other = list(cascading_randomisation(trained, seed=4, n_layers=1, x=x))
    assert torch.equal(again[1][2].head.weight, copies[3][2].head.weight)
    conv = f"{layers[-2].name}.weight"  # the layer below the head
    assert torch.equal(again[1][2].state_dict()[conv], copies[1][2].state_dict()[conv])
    assert not torch.equal(other[0][2].head.weight, copies[0][2].head.weight)
    # batchnorm="keep": the norm layers stay as trained
    kept = list(cascading_randomisation(trained, seed=3, x=x, batchnorm="keep"))[-1][2]
    norms = {m for la in layers for m in la.modules[1:]}
    assert len(norms) == 9
    for key, value in before.items():
        if key.rsplit(".", 1)[0] in norms:
            assert torch.equal(kept.state_dict()[key], value), key
        elif key.endswith("weight"):
            assert not torch.equal(kept.state_dict()[key], value), key
    with pytest.raises(ConfigError, match="n_layers"):
        list(cascading_randomisation(trained, n_layers=11, x=x))


def test_spearman_known_answers() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(3, 1, 5, 6, generator=g)
    assert spearman(a, 2 * a + 1) == pytest.approx([1.0] * 3)
    sim = map_similarity(a, -a)
    assert sim["spearman_signed"] == pytest.approx([-1.0] * 3)
    assert sim["spearman_abs"] == pytest.approx([1.0] * 3)
    c = a.clone()
    c[1] = 0.0
    assert math.isnan(spearman(a, c)[1]) and not np.isnan(spearman(a, c)[[0, 2]]).any()
    with pytest.raises(ConfigError, match="same shape"):
        spearman(a, a[:, :, :4])


def test_model_ignoring_explainer_fails(trained: nn.Module) -> None:
    x = _data(4, 5)[0]
    table = cascade_similarity(InputExplainer(), trained, x, 0, clip_ids=list("abcd"), seed=0)
    assert list(table.columns) == list(CASCADE_COLUMNS)
    assert len(table) == 10 * 4 and table["step"].max() == 10
    assert table["clip"].tolist()[:4] == list("abcd")
    assert (table["spearman_abs"] == 1.0).all()
    verdict = randomisation_verdict(table)
    assert not verdict.passed and verdict.median == 1.0 and verdict.n_clips == 4
    assert verdict.step == 10 and verdict.threshold == 0.5


def test_saliency_passes_and_is_deterministic(trained: nn.Module) -> None:
    x = _data(4, 5)[0]
    saliency = make_explainer("saliency")
    table = cascade_similarity(saliency, trained, x, 1, seed=0)
    verdict = randomisation_verdict(table)
    assert verdict.passed, table
    assert verdict.median < 0.5
    # randomising only the head already changes the maps less than the whole network
    first = table[table["step"] == 1]["spearman_abs"].median()
    assert first > verdict.median
    again = cascade_similarity(saliency, trained, x, 1, seed=0)
    pd.testing.assert_frame_equal(table, again)


def test_verdict_rules() -> None:
    table = pd.DataFrame({"layer": ["a", "a", "b", "b"], "step": [1, 1, 2, 2],
                          "clip": ["x", "y", "x", "y"], "spearman_abs": [0.9, 0.8, 0.2, np.nan],
                          "spearman_signed": [0.1, 0.1, 0.1, 0.1]})
    assert randomisation_verdict(table).passed  # last step: median 0.2 (NaN dropped)
    assert not randomisation_verdict(table, step=1).passed
    assert randomisation_verdict(table, threshold=0.9, step=1).passed
    v = randomisation_verdict(table, column="spearman_signed")
    assert v.passed and v.median == pytest.approx(0.1)
    nan = table.assign(spearman_abs=np.nan)
    assert not randomisation_verdict(nan).passed  # undecidable does not pass
    with pytest.raises(ConfigError, match="column"):
        randomisation_verdict(table, column="ssim")
    with pytest.raises(ConfigError, match="step"):
        randomisation_verdict(table, step=7)
    with pytest.raises(ConfigError, match="threshold"):
        randomisation_verdict(table, threshold=2.0)


def test_shuffled_labels_and_comparison(trained: nn.Module) -> None:
    labels = np.arange(50) % 3
    a, b, c = shuffled_labels(labels, 1), shuffled_labels(labels, 1), shuffled_labels(labels, 2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert sorted(a.tolist()) == sorted(labels.tolist()) and not np.array_equal(a, labels)
    series = pd.Series(list("abcdef"), index=[f"{i:03d}" for i in range(6)], name="label")
    s = shuffled_labels(series, 0)
    assert list(s.index) == list(series.index) and s.name == "label"
    assert sorted(s) == sorted(series) and list(s) != list(series)
    assert np.array_equal(shuffled_labels(torch.arange(5), 0), shuffled_labels(np.arange(5), 0))
    with pytest.raises(ConfigError, match="seed"):
        shuffled_labels(labels, -1)
    x = _data(3, 6)[0]
    saliency = make_explainer("saliency")
    same = compare_explanations(saliency, trained, trained, x, 0, clip_ids=["p", "q", "r"])
    assert same["clip"].tolist() == ["p", "q", "r"]
    assert same["spearman_abs"].tolist() == pytest.approx([1.0] * 3)
    torch.manual_seed(9)
    fresh = build_model("classifier", width=0.0625, n_classes=2, dropout=0.0).eval()
    diff = compare_explanations(saliency, trained, fresh, x, 0)
    assert randomisation_verdict(diff).passed
