"""Training: loss, determinism, data order, early stopping, adversarial steps, evaluation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch.utils.data import Dataset

from robustmer.errors import CheckpointError, ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.models import build_model
from robustmer.models.types import get_type
from robustmer.train import (
    TrainConfig,
    epoch_generator,
    evaluate_model,
    load_run,
    solo_loss,
    train_run,
)
from robustmer.train import trainer as trainer_mod

T, F = 24, 16
WIDTH = 0.05  # channels 3..26: a step takes milliseconds


class ToyDataset(Dataset):
    """Item dicts as documented in docs/ARCHITECTURE.md: spectrogram-like x made of 7 fixed
    patterns weighted by the concepts; emotions an affine map of the concepts; a per-epoch
    noise (like a random excerpt window) drawn from (seed, epoch, index)."""

    def __init__(self, n: int = 24, seed: int = 0, masked_every: int = 2) -> None:
        g = np.random.default_rng(1234)
        self.patterns = g.normal(size=(7, T, F)).astype(np.float32)
        mix = g.normal(size=(8, 7)).astype(np.float32) * 0.3
        r = np.random.default_rng(seed)
        self.concepts = r.uniform(-1, 1, size=(n, 7)).astype(np.float32)
        self.emotions = (self.concepts @ mix.T + 0.5).astype(np.float32)
        self.mask = np.arange(n) % masked_every == 0
        self.labels = np.where(np.arange(n) % 5 == 4, -1, np.arange(n) % 3)
        self.seed, self.epoch, self.epochs_seen = seed, 0, []

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.epochs_seen.append(epoch)

    def __len__(self) -> int:
        return len(self.concepts)

    def __getitem__(self, i: int) -> dict[str, Any]:
        noise = np.random.default_rng([self.seed, self.epoch, i]).normal(size=(T, F)) * 0.1
        x = np.tensordot(self.concepts[i], self.patterns, axes=1) + noise
        return {"id": f"{i:03d}", "x": torch.tensor(x[None], dtype=torch.float32),
                "targets": torch.from_numpy(self.emotions[i]),
                "concepts": torch.from_numpy(self.concepts[i] * self.mask[i]),
                "concept_mask": bool(self.mask[i]),
                "label": torch.tensor(int(self.labels[i]), dtype=torch.int64)}


def cfg(**kw: Any) -> TrainConfig:
    base: dict[str, Any] = {"seed": 5, "max_epochs": 2, "batch_size": 8, "lr": 1e-3}
    base.update(kw)
    return TrainConfig(**base)


def run(tmp: Path, kind: str = "a2m2e", **kw: Any) -> trainer_mod.TrainResult:
    config = kw.pop("config", cfg())
    return train_run(ToyDataset(seed=0), ToyDataset(n=12, seed=1), tmp, model_type=kind,
                     model_settings={"width": WIDTH}, config=config, progress=False, **kw)


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_defaults_are_the_reference_recipe() -> None:
    c = TrainConfig()
    assert (c.lr, c.batch_size, c.max_epochs, c.patience, c.emotion_weight) == \
        (5e-4, 8, 200, 50, 0.5)
    assert c.adversarial_every == 0 and c.device == "cpu" and not c.amp
    assert TrainConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ConfigError, match="unknown key"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_a2m2e_loss_uses_only_masked_concepts() -> None:
    emo, bott = torch.randn(4, 8), torch.randn(4, 7)
    batch = {"targets": torch.randn(4, 8), "concepts": torch.randn(4, 7),
             "concept_mask": torch.tensor([True, False, True, False])}
    out = {"output": emo, "bottleneck": bott}
    e = ((emo - batch["targets"]) ** 2).mean()
    c = ((bott[[0, 2]] - batch["concepts"][[0, 2]]) ** 2).mean()
    a2m2e = get_type("A2M2E")
    torch.testing.assert_close(solo_loss(a2m2e, out, batch, 0.3), 0.3 * e + 0.7 * c)
    batch["concept_mask"] = torch.zeros(4, dtype=torch.bool)
    torch.testing.assert_close(solo_loss(a2m2e, out, batch, 0.3), 0.3 * e)
    torch.testing.assert_close(solo_loss(get_type("A2B2E"), out, batch, 0.3), e)


def test_solo_loss_gradient_is_the_mean_reduced_recipes_bit_for_bit() -> None:
    """The loss is written once for stacked seeds; with S = 1 its gradient is exactly that of
    the recipe's mean-reduced MSE terms (what the solo trainer computed before, so results
    stay the same)."""
    g = torch.Generator().manual_seed(0)
    emo = torch.randn(8, 8, generator=g, requires_grad=True)
    bott = torch.randn(8, 7, generator=g, requires_grad=True)
    batch = {"targets": torch.randn(8, 8, generator=g), "concepts": torch.randn(8, 7, generator=g),
             "concept_mask": torch.ones(8, dtype=torch.bool)}
    ref = 0.5 * torch.nn.functional.mse_loss(emo, batch["targets"]) + 0.5 * (
        torch.nn.functional.mse_loss(bott, batch["concepts"]))
    want = torch.autograd.grad(ref, (emo, bott))
    loss = solo_loss(get_type("A2M2E"), {"output": emo, "bottleneck": bott}, batch, 0.5)
    got = torch.autograd.grad(loss, (emo, bott))
    assert all(torch.equal(a, b) for a, b in zip(want, got, strict=True))


def test_classifier_loss_skips_unlabelled() -> None:
    logits = torch.randn(3, 3)
    batch = {"label": torch.tensor([2, -1, 0])}
    expected = torch.nn.functional.cross_entropy(logits[[0, 2]], torch.tensor([2, 0]))
    torch.testing.assert_close(solo_loss(get_type("classifier"),
                                         {"output": logits, "bottleneck": None}, batch), expected)


def test_epoch_order_depends_on_seed_and_epoch_only() -> None:
    perm = [torch.randperm(20, generator=epoch_generator(7, e)) for e in (1, 2)]
    assert not torch.equal(perm[0], perm[1])
    torch.manual_seed(99)  # the global RNG must not matter
    assert torch.equal(torch.randperm(20, generator=epoch_generator(7, 1)), perm[0])


def test_same_seed_same_weights_and_history(tmp_path: Path) -> None:
    a = run(tmp_path / "a")
    b = run(tmp_path / "b")
    c = run(tmp_path / "c", config=cfg(seed=6))
    wa, wb, wc = weights(a.model), weights(b.model), weights(c.model)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)
    strip = [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in a.history]
    assert strip == [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in b.history]
    hist = json.loads((tmp_path / "a" / "history.json").read_text())
    csv = pd.read_csv(tmp_path / "a" / "history.csv")
    assert [r["epoch"] for r in hist] == [1, 2] == csv["epoch"].tolist()
    for col in ("train_loss", "val_mean_r", "val_mae", "val_concept_mean_r", "val_score",
                "time_s", "attack_time_s"):
        assert col in csv.columns
    assert (tmp_path / "a" / "config.yaml").is_file() and (tmp_path / "a" / "meta.json").is_file()


def test_set_epoch_is_called_every_epoch(tmp_path: Path) -> None:
    ds = ToyDataset(n=8)
    train_run(ds, ToyDataset(n=8, seed=1), tmp_path, model_type="A2E",
              model_settings={"width": WIDTH}, config=cfg(max_epochs=3), progress=False)
    assert ds.epochs_seen == [1, 2, 3]


def test_training_reduces_the_loss(tmp_path: Path) -> None:
    res = run(tmp_path, kind="a2e", config=cfg(max_epochs=6, lr=3e-3))
    losses = [r["train_loss"] for r in res.history]
    assert losses[-1] < 0.5 * losses[0]


def test_speed_options_train_and_are_recorded(tmp_path: Path) -> None:
    """amp (bfloat16 autocast on CPU) and channels-last still train the model, and the run's
    stored config says they were on (so a resume with other settings is refused)."""
    res = run(tmp_path, kind="a2m2e", config=cfg(max_epochs=4, lr=3e-3, amp=True,
                                                 channels_last=True))
    losses = [r["train_loss"] for r in res.history]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    stored = load_run(tmp_path, "last").train_config
    assert stored.amp and stored.channels_last
    with pytest.raises(CheckpointError, match="amp"):
        run(tmp_path, kind="a2m2e", config=cfg(max_epochs=5, lr=3e-3, channels_last=True),
            resume=True)


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    scores: Iterator[float] = iter([0.1, 0.5, 0.4, 0.3, 0.9, 1.0])
    monkeypatch.setattr(trainer_mod, "validation_score", lambda _m, _ev: next(scores))
    seen: list[int] = []
    res = run(tmp_path, kind="a2e", config=cfg(max_epochs=6, patience=2),
              callbacks=[lambda e, _r: seen.append(e)])
    assert res.stopped_early and res.best_epoch == 2 and res.last_epoch == 4
    assert res.best_score == pytest.approx(0.5)
    assert [r["epoch"] for r in res.history] == [1, 2, 3, 4]
    best_state = json.loads((tmp_path / "best" / "state.json").read_text())
    last_state = json.loads((tmp_path / "last" / "state.json").read_text())
    assert best_state["epoch"] == 2 and last_state["epoch"] == 4
    assert seen == [1, 2, 3, 4]


def test_adversarial_step_every_nth_epoch(tmp_path: Path) -> None:
    calls: list[tuple[int, bool]] = []

    class Result:
        def __init__(self, x_adv: torch.Tensor) -> None:
            self.x_adv = x_adv

    def fgsm(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Result:
        calls.append((x.shape[0], model.training))
        x = x.clone().requires_grad_(True)
        loss = torch.nn.functional.mse_loss(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
        return Result(x + 0.01 * grad.sign())

    adv = run(tmp_path / "adv", kind="a2e", attack=fgsm,
              config=cfg(max_epochs=3, adversarial_every=2))
    clean = run(tmp_path / "clean", kind="a2e", config=cfg(max_epochs=3))
    # 24 clips, batch 8: three batches, attacked on epoch 2 only, always in eval mode
    assert calls == [(8, False)] * 3
    rec = {r["epoch"]: r for r in adv.history}
    assert rec[2]["attack_time_s"] > 0 and rec[2]["adv_loss"] is not None
    assert rec[1]["attack_time_s"] == 0 and rec[3]["adv_loss"] is None
    assert rec[1]["train_loss"] == clean.history[0]["train_loss"]  # identical until epoch 2
    wa, wc = weights(adv.model), weights(clean.model)
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


def test_adversarial_needs_an_attack(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="attack"):
        run(tmp_path, config=cfg(adversarial_every=5))


def test_evaluate_model_scores_with_regression_metrics() -> None:
    torch.manual_seed(0)
    model = build_model("a2m2e", width=WIDTH)
    model.train()
    ds = ToyDataset(n=10)
    ev = evaluate_model(model, ds, batch_size=4)
    assert model.training  # mode restored
    assert ev["ids"] == [f"{i:03d}" for i in range(10)]
    assert ev["predictions"].shape == (10, 8) and ev["bottleneck"].shape == (10, 7)
    np.testing.assert_allclose(ev["targets"], ds.emotions)
    assert ev["metrics"] == regression_metrics(ev["targets"], ev["predictions"],
                                               list(ev["metrics"]["r"]))
    m = ds.mask
    expected = regression_metrics(ds.concepts[m], ev["bottleneck"][m])
    assert ev["concept_metrics"]["mean_r"] == pytest.approx(expected["mean_r"])
    assert ev["concept_metrics"]["mae"] == pytest.approx(expected["mae"])


class LevelClasses(ToyDataset):
    """An easy 3-class task: class c is unit Gaussian noise around the level c - 1 (the
    ToyDataset's labels follow the index, not x, so they cannot be learnt); every fifth clip is
    unlabelled (-1), as in ToyDataset."""

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(n=n, seed=seed)
        self.level = np.random.default_rng([seed, 7]).integers(0, 3, n)
        self.labels = np.where(np.arange(n) % 5 == 4, -1, self.level)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        noise = np.random.default_rng([self.seed, self.epoch, i, 1]).normal(size=(1, T, F))
        item["x"] = torch.tensor(noise + float(self.level[i]) - 1.0, dtype=torch.float32)
        return item


def test_classifier_learns_an_easy_task_and_reports_accuracy(tmp_path: Path) -> None:
    """Cross-entropy on the labelled clips learns: 5 epochs (60 steps) reach a held-out
    accuracy well above chance (1/3). Measured: 0.875-1.0 over training seeds 0-4."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is much faster on a loaded machine
    try:
        res = train_run(LevelClasses(96, seed=0), LevelClasses(30, seed=1), tmp_path,
                        model_type="classifier",
                        model_settings={"width": WIDTH, "dropout": 0.0},
                        config=cfg(max_epochs=5, lr=3e-3), progress=False)
        ev = evaluate_model(res.model, LevelClasses(60, seed=2))
    finally:
        torch.set_num_threads(threads)
    print(f"held-out accuracy {ev['accuracy']:.3f}, validation "
          f"{[round(h['val_accuracy'], 2) for h in res.history]}")
    assert ev["logits"].shape == (60, 3)
    assert ev["accuracy"] >= 0.7, ev["accuracy"]
    assert all(0.0 <= h["val_accuracy"] <= 1.0 for h in res.history)
    assert max(h["val_accuracy"] for h in res.history) >= 0.7


def _global_state() -> tuple[Any, ...]:
    import random

    return (random.getstate(), np.random.get_state()[1].tolist(), torch.get_rng_state(),
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)


def test_train_run_leaves_the_callers_rng_and_cudnn_flags_as_found(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train_run seeds and draws from the global RNGs (and sets cudnn's flags on CUDA); the
    caller's states are put back, also when the run fails."""
    import random

    from robustmer.train.runtime import preserved_global_state

    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = _global_state()
    run(tmp_path / "a", kind="a2e", config=cfg(max_epochs=1))
    after = _global_state()
    assert after[:2] == before[:2] and torch.equal(after[2], before[2])
    assert after[3:] == (False, True)
    with pytest.raises(CheckpointError):  # a second run into the same folder fails early
        run(tmp_path / "a", kind="a2e", config=cfg(max_epochs=1))
    assert torch.equal(_global_state()[2], before[2])
    with preserved_global_state():
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        torch.manual_seed(0)
    assert _global_state()[3:] == (False, True) and torch.equal(_global_state()[2], before[2])
    assert random.random() == random.Random(11).random()  # the caller's next draw is its own
