"""The demo's departures from the recipe: standardised targets (folded back on load), the
one-cycle schedule, BatchNorm recalibration; each deterministic and exactly resumable."""

from __future__ import annotations

import copy
import itertools
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustmer.errors import CheckpointError, ConfigError
from robustmer.models import build_model
from robustmer.models.types import get_type
from robustmer.train import TrainConfig, evaluate_model, load_run, train_run
from robustmer.train import checkpoint as ck
from robustmer.train.options import (
    TargetScaler,
    fit_target_scaler,
    fold_targets,
    recalibrate_batchnorm,
    scheduled_lr,
)
from test_checkpoint import KilledError, assert_same, folder_weights, kill_after
from test_train import WIDTH, ToyDataset, cfg, weights

OPTIONS: dict[str, Any] = {"standardize_targets": True, "lr_schedule": "onecycle",
                           "bn_recalibrate": True}


def train(run_dir: Path, config: TrainConfig, kind: str = "a2m2e", **kw: Any) -> Any:
    return train_run(ToyDataset(seed=0), ToyDataset(n=12, seed=1), run_dir, model_type=kind,
                     model_settings={"width": WIDTH}, config=config, progress=False, **kw)


def test_defaults_are_off_and_validated() -> None:
    c = TrainConfig()
    assert not c.standardize_targets and c.lr_schedule == "constant" and not c.bn_recalibrate
    with pytest.raises(ConfigError, match="lr_schedule"):
        TrainConfig(lr_schedule="cosine-ish")


def test_onecycle_schedule_shape() -> None:
    c = TrainConfig(lr=1e-2, max_epochs=10, lr_schedule="onecycle")
    lrs = [scheduled_lr(c, e, s, 5) for e in range(1, 11) for s in range(5)]
    assert lrs[0] == pytest.approx(1e-2 / 25)
    peak = int(np.argmax(lrs))
    assert lrs[peak] == pytest.approx(1e-2, rel=1e-3) and 13 <= peak <= 16  # 30 % of 50 steps
    assert all(a <= b for a, b in itertools.pairwise(lrs[:peak + 1]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))
    assert lrs[-1] == pytest.approx(1e-2 / 25 / 1e4)
    assert scheduled_lr(TrainConfig(lr=3e-3), 7, 2, 5) == 3e-3


@pytest.mark.parametrize("kind", ["a2e", "a2b2e", "a2m2e"])
def test_folding_maps_standardised_outputs_back_to_ratings(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, width=WIDTH).eval()
    g = np.random.default_rng(1)
    scaler = TargetScaler(tuple(g.uniform(0.2, 0.8, 8)), tuple(g.uniform(0.05, 0.3, 8)),
                          *((tuple(g.uniform(0.2, 0.8, 7)), tuple(g.uniform(0.05, 0.3, 7)))
                            if kind == "a2m2e" else (None, None)))
    x = torch.randn(3, 1, 24, 16)
    with torch.no_grad():
        raw = model.forward_all(x)
        folded = fold_targets(copy.deepcopy(model), scaler)
        out = folded.forward_all(x)

    def t(v: tuple[float, ...] | None) -> torch.Tensor:
        return torch.tensor(v, dtype=torch.float32)

    emo_expected = raw["output"] * t(scaler.target_std) + t(scaler.target_mean)
    torch.testing.assert_close(out["output"], emo_expected, rtol=1e-5, atol=1e-5)
    if kind == "a2m2e":
        torch.testing.assert_close(out["bottleneck"], raw["bottleneck"] * t(scaler.concept_std)
                                   + t(scaler.concept_mean), rtol=1e-5, atol=1e-5)
    if folded.has_bottleneck:  # still the plain architecture: contributions add up
        with torch.no_grad():
            contrib = folded.concept_contributions(x)
        torch.testing.assert_close(contrib.sum(-1) + folded.contribution_bias, out["output"],
                                   rtol=1e-5, atol=1e-5)


def test_scaler_fits_emotions_and_masked_concepts() -> None:
    ds = ToyDataset(n=24)
    s = fit_target_scaler(ds, get_type("a2m2e"))
    assert s is not None and s.concept_mean is not None
    np.testing.assert_allclose(s.target_mean, ds.emotions.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(s.concept_std, ds.concepts[ds.mask].std(0), rtol=1e-5)
    a2b2e = fit_target_scaler(ds, get_type("a2b2e"))
    assert a2b2e is not None and a2b2e.concept_mean is None
    assert fit_target_scaler(ds, get_type("classifier")) is None
    assert TargetScaler.from_dict(json.loads(json.dumps(s.to_dict()))) == s


def test_standardised_run_predicts_ratings_and_is_deterministic(tmp_path: Path) -> None:
    config = cfg(max_epochs=3, lr=3e-3, **OPTIONS)
    a = train(tmp_path / "a", config)
    b = train(tmp_path / "b", config)
    assert_same(weights(a.model), weights(b.model))
    state = json.loads((tmp_path / "a" / "last" / "state.json").read_text())
    scaler = TargetScaler.from_dict(state["target_scaler"])
    # the returned / loaded model predicts in rating units: its validation MAE is the history's
    ev = evaluate_model(load_run(tmp_path / "a", "best").model, ToyDataset(n=12, seed=1))
    best = json.loads((tmp_path / "a" / "best" / "state.json").read_text())
    assert best["bn_recalibrated"] is True
    raw = build_model("a2m2e", width=WIDTH)
    raw.load_state_dict(ck.read_checkpoint(tmp_path / "a", "last").model_state)
    rated = evaluate_model(fold_targets(raw, scaler), ToyDataset(n=12, seed=1))
    assert rated["metrics"]["mae"] == pytest.approx(a.history[-1]["val_mae"], rel=1e-5)
    # the targets lie around 0.5; standardised outputs left unfolded would centre on 0
    assert abs(float(ev["predictions"].mean() - ev["targets"].mean())) < 0.15


def test_options_resume_after_a_kill_to_identical_weights(tmp_path: Path) -> None:
    config = cfg(max_epochs=4, lr=3e-3, **OPTIONS)
    ref = train(tmp_path / "ref", config)
    with pytest.raises(KilledError):
        train(tmp_path / "run", config, callbacks=[kill_after(2)])
    res = train(tmp_path / "run", config, resume=True)
    assert_same(weights(res.model), weights(ref.model))
    assert_same(folder_weights(tmp_path / "run", "last"), folder_weights(tmp_path / "ref", "last"))
    # a finished run resumed again changes nothing
    again = train(tmp_path / "run", config, resume=True)
    assert_same(weights(again.model), weights(ref.model))


def test_onecycle_refuses_another_max_epochs_on_resume(tmp_path: Path) -> None:
    train(tmp_path, cfg(max_epochs=2, lr_schedule="onecycle"))
    with pytest.raises(CheckpointError, match="max_epochs"):
        train(tmp_path, cfg(max_epochs=3, lr_schedule="onecycle"), resume=True)


def test_bn_recalibration_matches_population_statistics() -> None:
    torch.manual_seed(0)
    model = build_model("a2e", width=WIDTH)
    ds = ToyDataset(n=20)
    recalibrate_batchnorm(model, ds, torch.device("cpu"), batch_size=20)
    assert model.training  # mode restored
    first = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = model.backbone.features[0]
    with torch.no_grad():
        h = conv(torch.stack([ds[i]["x"] for i in range(20)]))
    torch.testing.assert_close(first.running_mean, h.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert first.momentum == 0.1 and math.isfinite(float(first.running_var.sum()))
