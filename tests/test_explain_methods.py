"""Explainers with analytic answers: a model that reads one segment, LIME on a linear model,
aggregation on fixed arrays, captum equality, batching, seeding and bad input."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain import (
    METHODS,
    Explanation,
    aggregate,
    concept_table,
    explain,
    grid_segments,
    make_explainer,
    parse_grid,
)
from robustmer.explain.lime import kernel_weights
from robustmer.explain.plots import attribution_figure, concept_figure
from robustmer.explain.segments import paint
from robustmer.models import BottleneckOutput, build_model

T, F = 20, 16
SEG = grid_segments((T, F))  # 4 bands x 5 blocks = 20 segments
HOT = 13


class OneSegment(nn.Module):
    """Output 0 = ReLU(Σ x² over segment HOT) (reads nothing else); output 1 = sum of the rest."""

    def __init__(self, segments: torch.Tensor, hot: int) -> None:
        super().__init__()
        self.register_buffer("mask", (segments == hot).float())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0] ** 2 * self.mask).sum((1, 2))
        rest = (x[:, 0] * (1 - self.mask)).sum((1, 2))
        return torch.stack([self.relu(s), rest], dim=1)


def _x(b: int = 2, seed: int = 0) -> torch.Tensor:
    """Positive input, louder in segment HOT, so that switching HOT off (LIME: to the mean, the
    minimum or zero) lowers output 0 and its gradient and IG are positive there."""
    g = torch.Generator().manual_seed(seed)
    return 1.0 + torch.rand(b, 1, T, F, generator=g) + (SEG == HOT).float()


def _fast(method: str) -> dict:
    if method == "lime":
        return {"n_samples": 512}
    if "+" in method or method in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        return {"nt_samples": 8} | ({"n_steps": 8} if method.startswith("ig") else {})
    return {"n_steps": 8} if method == "ig" else {}


@pytest.mark.parametrize("method", METHODS)
def test_every_explainer_ranks_the_only_read_segment_first(method: str) -> None:
    model = OneSegment(SEG, HOT)
    ex = explain(model, _x(), 0, method, SEG, **_fast(method))
    assert isinstance(ex, Explanation) and ex.attribution.shape == (2, 1, T, F)
    assert ex.segment_scores is not None and ex.segment_scores.shape == (2, 20)
    assert ex.top_k(1).tolist() == [[HOT], [HOT]]
    assert ex.target.tolist() == [0, 0]


@pytest.mark.parametrize("fill", ["mean", "min", "zero"])
def test_lime_recovers_linear_segment_weights(fill: str) -> None:
    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, generator=g)
    counts = torch.bincount(SEG.flatten()).float()
    pix = (w / counts)[SEG].flatten()

    class Linear(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (x.reshape(x.shape[0], -1) @ pix)[:, None]

    x = torch.randn(1, 1, T, F, generator=g) + 3 * torch.randn(20, generator=g)[SEG]
    ex = explain(Linear(), x, 0, "lime", SEG, fill=fill)  # 8192 samples by default
    fill_value = {"mean": x.mean(), "min": x.min(), "zero": torch.tensor(0.0)}[fill]
    seg_mean = torch.zeros(20).scatter_add_(0, SEG.flatten(), x.flatten()) / counts
    truth = w * (seg_mean - fill_value)  # the exact effect of switching each segment on
    got = ex.segment_scores[0]
    r = torch.corrcoef(torch.stack([got, truth]))[0, 1]
    assert r >= 0.99, r
    assert float(ex.extra["r2"][0]) > 0.99
    # the map paints each weight onto its segment's pixels
    assert torch.equal(ex.attribution[0, 0], got[SEG])


def test_lime_samples_first_all_on_and_kernel() -> None:
    lime = make_explainer("lime", n_samples=64, seed=3)
    z = lime.samples(20)  # type: ignore[attr-defined]
    assert z.shape == (64, 20) and bool((z[0] == 1).all())
    assert set(z.unique().tolist()) <= {0.0, 1.0}
    k = kernel_weights(torch.tensor([[1.0, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]]))
    # d = 0, 1 - 1/2, 1 (all off)
    expected = torch.sqrt(torch.exp(-torch.tensor([0.0, 0.25, 1.0]) / 0.0625))
    torch.testing.assert_close(k.float(), expected)


def test_aggregation_on_fixed_arrays() -> None:
    seg = torch.tensor([[0, 0, 1], [2, 2, 1]])
    a = torch.tensor([[[1.0, -3.0, 2.0], [-1.0, -2.0, 4.0]],
                      [[0.0, 0.0, -1.0], [5.0, 1.0, -3.0]]])
    torch.testing.assert_close(aggregate(a, seg, "mean"),
                               torch.tensor([[-1.0, 3.0, -1.5], [0.0, -2.0, 3.0]]))
    torch.testing.assert_close(aggregate(a, seg, "mean_abs"),
                               torch.tensor([[2.0, 3.0, 1.5], [0.0, 2.0, 3.0]]))
    pos = aggregate(a, seg, "mean_pos")
    torch.testing.assert_close(pos[0], torch.tensor([1.0, 3.0, -torch.inf]))
    torch.testing.assert_close(pos[1], torch.tensor([-torch.inf, -torch.inf, 3.0]))
    # per-clip maps and a channel dimension
    per_clip = torch.stack([seg, seg.flip(1)])
    torch.testing.assert_close(aggregate(a[:, None], per_clip, "mean")[1],
                               torch.tensor([-0.5, 2.5, -1.0]))
    ex = Explanation("m", torch.zeros(2, dtype=torch.int64), a, pos)
    assert ex.top_k(3).tolist() == [[1, 0, 2], [2, 0, 1]]  # -inf ties: lower id first


def test_top_k_ties_go_to_the_lower_id_and_nan_ranks_last() -> None:
    ex = Explanation("m", torch.zeros(1, dtype=torch.int64), torch.zeros(1, 1, 2, 2),
                     torch.tensor([[1.0, 3.0, float("nan"), 3.0, 0.0]]))
    assert ex.top_k(5).tolist() == [[1, 3, 0, 4, 2]]


def test_grid_segments_layout() -> None:
    seg = grid_segments((313, 149))
    assert seg.shape == (313, 149) and seg.unique().tolist() == list(range(20))
    assert seg[0, 0] == 0 and seg[0, -1] == 3 and seg[-1, 0] == 16 and seg[-1, -1] == 19
    sizes = torch.bincount(seg.flatten())
    assert int(sizes.max() - sizes.min()) <= 149 + 313  # near-equal rectangles
    assert grid_segments((10, 6), n_freq=2, n_time=1).tolist()[0] == [0, 0, 0, 1, 1, 1]
    assert parse_grid("4x5") == (4, 5) and parse_grid(" 2X3 ") == (2, 3)
    s = torch.tensor([[0.5, 2.0]])
    assert paint(s, torch.tensor([[1, 0], [0, 0]]), (1, 1, 2, 2)).tolist() == [
        [[[2.0, 0.5], [0.5, 0.5]]]]


def _small_model(kind: str = "a2e") -> nn.Module:
    torch.manual_seed(0)
    return build_model(kind, width=0.0625)


def test_integrated_gradients_equal_captums() -> None:
    from captum.attr import IntegratedGradients

    model = _small_model().eval()
    x = torch.randn(2, 1, 32, 24)
    target = torch.tensor([3, 5])
    ours = explain(model, x, target, "ig", n_steps=16).attribution
    theirs = IntegratedGradients(model).attribute(x, target=target, n_steps=16)
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_guided_backprop_handles_inplace_relus() -> None:
    """captum hooks the backbone's ReLU(inplace=True): same result as on a non-inplace copy and
    as a hand-written guided-ReLU backward (also through BottleneckOutput)."""
    from captum.attr import GuidedBackprop

    model = _small_model("a2m2e")
    x = torch.randn(2, 1, 32, 24)
    ours = explain(model, x, 2, "gbp").attribution
    plain = copy.deepcopy(model).eval()
    for mod in plain.modules():
        if isinstance(mod, nn.ReLU):
            mod.inplace = False
    torch.testing.assert_close(ours, GuidedBackprop(plain).attribute(x, target=2))

    class GuidedReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, i):  # type: ignore[no-untyped-def]
            ctx.save_for_backward(i)
            return i.clamp(min=0)

        @staticmethod
        def backward(ctx, g):  # type: ignore[no-untyped-def]
            (i,) = ctx.saved_tensors
            return g.clamp(min=0) * (i > 0)

    class Guided(nn.Module):
        def forward(self, i: torch.Tensor) -> torch.Tensor:
            return GuidedReLU.apply(i)

    manual = copy.deepcopy(model).eval()
    feats = manual.backbone.features
    for k, mod in enumerate(feats):
        if isinstance(mod, nn.ReLU):
            feats[k] = Guided()
    xx = x.clone().requires_grad_(True)
    manual(xx)[:, 2].sum().backward()
    torch.testing.assert_close(ours, xx.grad)
    concept = explain(BottleneckOutput(model), x, 4, "gbp", SEG[:, :0].new_zeros(32, 24))
    assert concept.attribution.abs().sum() > 0 and concept.segment_scores.shape == (2, 1)


@pytest.mark.parametrize("method", ["saliency", "gbp", "ig", "saliency+smoothgrad",
                                    "ig+vargrad", "lime"])
def test_batched_equals_per_clip(method: str) -> None:
    model = _small_model()
    x = torch.randn(3, 1, 32, 24)
    seg = grid_segments((32, 24), 2, 3)
    kw = {"lime": {"n_samples": 64}, "ig": {"n_steps": 4}, "saliency+smoothgrad":
          {"nt_samples": 3}, "ig+vargrad": {"nt_samples": 2, "n_steps": 3}}.get(method, {})
    target = torch.tensor([0, 4, 7])
    full = explain(model, x, target, method, seg, **kw)
    for i in range(3):
        one = explain(model, x[i: i + 1], int(target[i]), method, seg, **kw)
        torch.testing.assert_close(full.attribution[i: i + 1], one.attribution,
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(full.segment_scores[i: i + 1], one.segment_scores,
                                   rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["smoothgrad", "gbp+smoothgrad_sq", "lime"])
def test_seeded_reproducible(method: str) -> None:
    model = _small_model()
    x = torch.randn(2, 1, 32, 24)
    seg = grid_segments((32, 24), 2, 2)
    kw = {"n_samples": 32} if method == "lime" else {"nt_samples": 4}
    torch.manual_seed(123)
    a = explain(model, x, 1, method, seg, seed=5, **kw)
    torch.manual_seed(456)  # the caller's RNG state does not matter
    b = explain(model, x, 1, method, seg, seed=5, **kw)
    c = explain(model, x, 1, method, seg, seed=6, **kw)
    assert torch.equal(a.attribution, b.attribution)
    assert not torch.equal(a.attribution, c.attribution)


def test_model_mode_restored_and_eval_used() -> None:
    model = _small_model()
    model.train()
    x = torch.randn(2, 1, 32, 24)
    a = explain(model, x, 0, "saliency").attribution
    assert model.training
    b = explain(model.eval(), x, 0, "saliency").attribution
    assert torch.equal(a, b) and not model.training
    assert all(p.grad is None for p in model.parameters())


def test_bad_input_gets_clear_errors() -> None:
    model = OneSegment(SEG, HOT)
    x = _x()
    bad = [
        (lambda: make_explainer("shap"), "unknown explanation method"),
        (lambda: make_explainer("saliency", n_steps=3), "does not take"),
        (lambda: make_explainer("lime", fill="mode"), "fill"),
        (lambda: make_explainer("ig", n_steps=0), "n_steps"),
        (lambda: make_explainer("smoothgrad", sigma=-1.0), "sigma"),
        (lambda: explain(model, x, 2, "saliency"), "target indices"),
        (lambda: explain(model, x, torch.tensor([0.0, 1.0]), "saliency"), "integer"),
        (lambda: explain(model, x, torch.tensor([0, 1, 1]), "saliency"), "(2,) tensor"),
        (lambda: explain(model, x[:, 0, 0], 0, "saliency"), "(B, ..., T, F)"),
        (lambda: explain(model, x * float("nan"), 0, "saliency"), "NaN"),
        (lambda: explain(model, x, 0, "saliency", SEG.float()), "integer tensor"),
        (lambda: explain(model, x, 0, "saliency", SEG[:5]), "shape"),
        (lambda: explain(model, x, 0, "saliency", SEG.clamp(max=18) * 0 + 2), "unused id"),
        (lambda: explain(model, x, 0, "lime", SEG - 1), ">= 0"),
        (lambda: aggregate(x, SEG, "median"), "aggregation"),
        (lambda: grid_segments((T, F), n_freq=F + 1), "n_freq"),
        (lambda: parse_grid("4by5"), "4x5"),
        (lambda: Explanation("m", torch.zeros(1), x, None).top_k(1), "no segment scores"),
        (lambda: explain(model, x, 0, "saliency", SEG).top_k(21), "k must be"),
        (lambda: concept_table(_small_model("a2e"), x), "bottleneck"),
    ]
    for fn, msg in bad:
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(")", r"\)")
                           .replace(".", r"\.")):
            fn()


def test_concept_table_adds_up_to_the_prediction() -> None:
    model = _small_model("a2m2e").eval()
    x = torch.randn(2, 1, 32, 24)
    table = concept_table(model, x, ["a", "b"])
    assert len(table) == 2 * 8 * 7
    sums = table.groupby(["clip_id", "emotion"], sort=False)["contribution"].sum()
    bias = table.groupby(["clip_id", "emotion"], sort=False)["bias"].first()
    pred = model(x).detach().double().flatten().numpy()
    assert abs((sums + bias).to_numpy() - pred).max() < 1e-5
    row = table.iloc[0]
    assert abs(row["concept_value"] * row["weight"] - row["contribution"]) < 1e-6
    assert concept_figure(table, "b").axes
    fig = attribution_figure(x[0, 0], x[0, 0] * 0 + 1, grid_segments((32, 24)), list(range(20)))
    assert len(fig.axes) == 4  # 2 panels + 2 colour bars
    with pytest.raises(ConfigError, match="not in the concept table"):
        concept_figure(table, "zz")
