"""Deletion / insertion curves on segments: known answers on a model whose output is one
segment's sum, the ideal order beats the reverse and the random order, argument errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.deletion import (
    AUC_COLUMNS,
    CURVE_COLUMNS,
    RANDOM,
    curve_auc,
    deletion_table,
    fill_value,
    perturbation_curves,
)
from robustmer.explain.evaluation import rank_segments
from robustmer.explain.segments import grid_segments

T, F = 8, 6
SEG = grid_segments((T, F), n_freq=2, n_time=2)  # 4 segments of 4 x 3 pixels


class SegmentSum(nn.Module):
    """Output 0: the sum of the input over segment ``j``; output 1: minus that (a 2-class
    classifier's logits, or a 2-output regressor)."""

    def __init__(self, j: int) -> None:
        super().__init__()
        self.register_buffer("w", (j == SEG).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (x[:, 0] * self.w).sum(dim=(1, 2))
        return torch.stack([s, -s], dim=1)


def _x(b: int = 2) -> torch.Tensor:
    return torch.ones(b, 1, T, F)


def test_known_answers_regressor() -> None:
    model = SegmentSum(2)
    ideal = torch.tensor([[2, 0, 1, 3], [2, 3, 1, 0]])
    reverse = torch.tensor([[3, 1, 0, 2], [0, 1, 3, 2]])
    kw = {"fill": "zero", "task": "regressor"}
    d_ideal = perturbation_curves(model, _x(), 0, SEG, ideal, mode="deletion", **kw)
    d_rev = perturbation_curves(model, _x(), 0, SEG, reverse, mode="deletion", **kw)
    assert d_ideal.tolist() == [[12.0, 0.0, 0.0, 0.0, 0.0]] * 2  # floor at step 1
    assert d_rev.tolist() == [[12.0, 12.0, 12.0, 12.0, 0.0]] * 2
    assert (curve_auc(d_ideal) < curve_auc(d_rev)).all()
    assert curve_auc(d_ideal).tolist() == pytest.approx([12.0 * 0.5 * 0.25] * 2)
    i_ideal = perturbation_curves(model, _x(), 0, SEG, ideal, mode="insertion", **kw)
    i_rev = perturbation_curves(model, _x(), 0, SEG, reverse, mode="insertion", **kw)
    assert i_ideal.tolist() == [[0.0, 12.0, 12.0, 12.0, 12.0]] * 2
    assert i_rev.tolist() == [[0.0, 0.0, 0.0, 0.0, 12.0]] * 2
    assert (curve_auc(i_ideal) > curve_auc(i_rev)).all()
    # the explained output per clip: output 1 is minus the sum
    minus = perturbation_curves(model, _x(), torch.tensor([0, 1]), SEG, ideal, **kw)
    assert minus[1].tolist() == [-12.0, 0.0, 0.0, 0.0, 0.0]


def test_classifier_probability_and_fill() -> None:
    model = SegmentSum(1)
    x = _x(1) * 0.25
    ideal = torch.tensor([[1, 0, 2, 3]])
    curve = perturbation_curves(model, x, 0, SEG, ideal, fill="zero")
    p = torch.softmax(torch.tensor([3.0, -3.0], dtype=torch.float64), 0)[0]
    assert curve[0].tolist() == pytest.approx([float(p), 0.5, 0.5, 0.5, 0.5])
    # fills: each clip's mean / minimum, zero, or a number
    x2 = torch.arange(2 * T * F, dtype=torch.float32).reshape(2, 1, T, F)
    assert fill_value(x2, "mean").flatten().tolist() == pytest.approx(
        x2.mean(dim=(1, 2, 3)).tolist())
    assert fill_value(x2, "min").flatten().tolist() == [0.0, float(T * F)]
    assert fill_value(x2, "zero").flatten().tolist() == [0.0, 0.0]
    assert fill_value(x2, -1.5).flatten().tolist() == [-1.5, -1.5]
    assert fill_value(x2, "mean").shape == (2, 1, 1, 1)
    # with the clip's own mean as the fill, a constant clip never changes
    flat = perturbation_curves(model, x, 0, SEG, ideal, fill="mean")
    assert flat[0].tolist() == pytest.approx([float(p)] * 5)


def test_table_with_random_baseline() -> None:
    model = SegmentSum(3)
    x = _x(3)
    scores = torch.tensor([[0.0, 0.1, 0.2, 0.9]] * 3)
    rankings = {"good": rank_segments(scores), "bad": rank_segments(-scores)}
    curves, auc = deletion_table(model, x, 0, SEG, rankings, clip_ids=["a", "b", "c"],
                                 fill="zero", task="regressor", seed=0, n_random=8)
    assert list(curves.columns) == list(CURVE_COLUMNS)
    assert list(auc.columns) == list(AUC_COLUMNS)
    assert set(auc["method"]) == {"good", "bad", RANDOM} and len(auc) == 3 * 2 * 3
    assert len(curves) == 3 * 2 * 3 * 5
    assert curves["fraction"].drop_duplicates().tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    mean = auc.groupby(["method", "mode"])["auc"].mean()
    assert mean["good", "deletion"] < mean[RANDOM, "deletion"] < mean["bad", "deletion"]
    assert mean["good", "insertion"] > mean[RANDOM, "insertion"] > mean["bad", "insertion"]
    again = deletion_table(model, x, 0, SEG, rankings, clip_ids=["a", "b", "c"], fill="zero",
                           task="regressor", seed=0, n_random=8)[1]
    assert auc.equals(again)
    other = deletion_table(model, x, 0, SEG, rankings, clip_ids=["a", "b", "c"], fill="zero",
                           task="regressor", seed=1, n_random=8)[1]
    assert not auc.equals(other)
    none = deletion_table(model, x, 0, SEG, rankings, modes=("deletion",), n_random=0)[1]
    assert set(none["method"]) == {"good", "bad"} and set(none["mode"]) == {"deletion"}


def test_bad_arguments_raise_config_error() -> None:
    model = SegmentSum(0)
    x = _x(2)
    ok = torch.tensor([[0, 1, 2, 3]] * 2)
    cases = [
        (lambda: perturbation_curves(model, x, 0, SEG, ok[:1]), "ranking"),
        (lambda: perturbation_curves(model, x, 0, SEG, ok.float()), "ranking"),
        (lambda: perturbation_curves(model, x, 0, SEG, torch.tensor([[0, 0, 1, 2]] * 2)),
         "permutation"),
        (lambda: perturbation_curves(model, x, 0, SEG[:, :-1], ok), "segments"),
        (lambda: perturbation_curves(model, x, 0, SEG.float(), ok), "segments"),
        (lambda: perturbation_curves(model, x, 0, SEG, ok, mode="erase"), "mode"),
        (lambda: perturbation_curves(model, x, 0, SEG, ok, task="ranker"), "task"),
        (lambda: perturbation_curves(model, x, 0, SEG, ok, fill="max"), "fill"),
        (lambda: perturbation_curves(model, x, 0, SEG, ok, batch_size=0), "batch_size"),
        (lambda: perturbation_curves(model, x, 5, SEG, ok), "target"),
        (lambda: perturbation_curves(model, x[0, 0], 0, SEG, ok), "x must be"),
        (lambda: curve_auc(torch.ones(2, 1)), "curves"),
        (lambda: deletion_table(model, x, 0, SEG, {RANDOM: ok}), "reserved"),
        (lambda: deletion_table(model, x, 0, SEG, {"m": ok}, n_random=-1), "n_random"),
        (lambda: deletion_table(model, x, 0, SEG, {"m": ok}, modes=("del",)), "modes"),
        (lambda: deletion_table(model, x, 0, SEG, {"m": ok}, clip_ids=["a"]), "clip_ids"),
    ]
    for call, name in cases:
        with pytest.raises(ConfigError, match=name):
            call()
