import numpy as np
import pytest
from scipy import stats

from robustmer.evaluate.metrics import (
    mean_predictor_metrics,
    per_sample_mae,
    regression_metrics,
    rowwise_pearson_r,
)


def test_regression_metrics_match_scipy_and_definitions() -> None:
    rng = np.random.default_rng(0)
    t = rng.normal(size=(50, 3))
    p = t + rng.normal(scale=0.5, size=(50, 3))
    m = regression_metrics(t, p, ["a", "b", "c"])
    for i, n in enumerate("abc"):
        assert m["r"][n] == pytest.approx(stats.pearsonr(t[:, i], p[:, i])[0])
    assert m["mean_r"] == pytest.approx(np.mean([m["r"][n] for n in "abc"]))
    assert m["mae"] == pytest.approx(np.abs(p - t).mean())
    assert m["rmse"] == pytest.approx(np.sqrt(((p - t) ** 2).mean()))
    r2 = [1 - ((p[:, i] - t[:, i]) ** 2).sum() / ((t[:, i] - t[:, i].mean()) ** 2).sum()
          for i in range(3)]
    assert m["r2"] == pytest.approx(np.mean(r2))


def test_mean_predictor_has_zero_r2_and_nan_r() -> None:
    t = np.arange(20.0).reshape(10, 2)
    p = np.repeat(t.mean(axis=0, keepdims=True), 10, axis=0)
    m = regression_metrics(t, p, ["x", "y"])
    assert m["r2"] == pytest.approx(0.0)
    assert np.isnan(m["mean_r"])


def test_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="equal"):
        regression_metrics(np.zeros((3, 2)), np.zeros((3, 3)))


def test_rowwise_r_and_per_sample_mae() -> None:
    t = np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.0]])
    p = np.array([[2.0, 4.0, 6.0], [3.0, 2.0, 1.0]])
    np.testing.assert_allclose(rowwise_pearson_r(t, p), [1.0, -1.0])
    np.testing.assert_allclose(per_sample_mae(t, p), [2.0, 4 / 3])


def test_mean_predictor_metrics_scores_the_training_mean() -> None:
    rng = np.random.default_rng(0)
    train, test = rng.random((30, 3)), rng.random((10, 3))
    m = mean_predictor_metrics(train, test, ["a", "b", "c"])
    assert m["mae"] == pytest.approx(np.abs(test - train.mean(axis=0)).mean())
    assert np.isnan(m["mean_r"])  # a constant prediction has no correlation
    assert m["r2"] < 0  # the training mean is worse than the test mean on the test clips
