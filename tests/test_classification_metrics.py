"""classification_metrics on fixed arrays: accuracy over labelled clips, per-class counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustmer.evaluate.metrics import classification_metrics


def test_classification_metrics_fixed_arrays() -> None:
    labels = np.array([0, 1, 1, 2, -1, 2])
    pred = np.array([0, 1, 2, 2, 0, 1])
    m = classification_metrics(labels, pred, ["a", "b", "c", "d"])
    assert m["n"] == 5 and m["n_unlabelled"] == 1
    assert m["accuracy"] == pytest.approx(3 / 5)
    assert m["per_class"]["a"] == {"n_true": 1, "n_pred": 1, "n_correct": 1, "recall": 1.0}
    assert m["per_class"]["b"] == {"n_true": 2, "n_pred": 2, "n_correct": 1, "recall": 0.5}
    assert m["per_class"]["c"] == {"n_true": 2, "n_pred": 2, "n_correct": 1, "recall": 0.5}
    assert m["per_class"]["d"]["recall"] is None
    assert math.isnan(classification_metrics(np.array([-1]), np.array([0]))["accuracy"])
    with pytest.raises(ValueError, match="differ"):
        classification_metrics(np.array([0, 1]), np.array([0]))
