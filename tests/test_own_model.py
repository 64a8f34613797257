"""Your own model: a factory in a user file becomes a model type that trains, reloads, is
attacked and scored like the built-in ones; attacks that cannot start are not reported as
robustness; the correlation stopping rule needs 3 outputs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robustmer.attacks import BIM, AttackSpec
from robustmer.attacks.runner import attack_items
from robustmer.cli import app
from robustmer.errors import AttackError, CheckpointError, ConfigError
from robustmer.models import FactoryType, get_type
from robustmer.models.types import default_comparisons, for_config, rebuild
from robustmer.train import TrainConfig, evaluate_model, load_run, train_run, write_pretrained

MODEL = textwrap.dedent('''
    import torch
    from torch import nn

    class Tiny(nn.Module):
        def __init__(self, n_outputs, hidden=4):
            super().__init__()
            self.conv = nn.Conv1d(1, hidden, 16, stride=8)
            self.head = nn.Linear(hidden, n_outputs)
        def forward(self, x):
            return self.head(torch.relu(self.conv(x[:, None])).mean(-1))

    def build(n_outputs, hidden=4):
        return Tiny(n_outputs, hidden)

    def pretrained(n_outputs):
        torch.manual_seed(123)  # stands in for loading a checkpoint
        return Tiny(n_outputs).eval()
''')


class WaveSet(torch.utils.data.Dataset):
    """Items of a waveform model's dataset (``WaveExcerptDataset``'s layout)."""

    target_names, concept_names, classes = ("arousal", "valence"), (), ()

    def __init__(self, n: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.level = torch.rand(n, generator=g)
        self.x = (0.25 * torch.randn(n, 400, generator=g) * self.level[:, None]).clamp(-1, 1)
        self.y = torch.stack([1 + 8 * self.level, 5 - 2 * self.level], dim=1)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"id": f"{i:02d}", "x": self.x[i], "targets": self.y[i],
                "concepts": torch.zeros(0), "concept_mask": False,
                "label": torch.tensor(-1)}


@pytest.fixture
def user_type(tmp_path: Path) -> FactoryType:
    (tmp_path / "user_models.py").write_text(MODEL)
    return FactoryType(name="Tiny", factory=f"{tmp_path / 'user_models.py'}:build",
                       input="waveform", sample_rate=16000, seconds=0.025,
                       settings={"hidden": 3})


def test_factory_type_trains_reloads_and_records_how(tmp_path: Path, user_type) -> None:
    cfg = TrainConfig(seed=1, max_epochs=3, batch_size=4, lr=3e-3, standardize_targets=True)
    res = train_run(WaveSet(), WaveSet(8, seed=1), tmp_path / "run", model_type=user_type,
                    config=cfg, progress=False,
                    data_description={"targets": list(WaveSet.target_names)})
    run = load_run(tmp_path / "run")
    assert run.model_config["factory"].endswith("user_models.py:build")
    assert run.model_config["settings"] == {"hidden": 3}
    assert run.model_config["source"]["sha256"] and run.task == "regression"
    assert run.model_type.input_kind == "waveform" and run.output_names() == ["arousal", "valence"]
    # the loaded model predicts in target units: its validation MAE is the history's
    ev = evaluate_model(run.model, WaveSet(8, seed=1), model_type=run.model_type)
    best = res.history[res.best_epoch - 1]
    assert ev["metrics"]["mae"] == pytest.approx(best["val_mae"], rel=1e-5)
    assert type(rebuild(run.model_config)).__name__ == "Tiny"
    # the same seed gives the same weights
    train_run(WaveSet(), WaveSet(8, seed=1), tmp_path / "again", model_type=user_type,
              config=cfg, progress=False)
    again = load_run(tmp_path / "again").model.state_dict()
    assert all(torch.equal(v, again[k]) for k, v in run.model.state_dict().items())


def test_factory_errors_name_what_is_wrong(tmp_path: Path, user_type) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        FactoryType(name="X", factory="nope.py:build").build(2)
    bad = FactoryType(name="X", factory=f"{tmp_path / 'user_models.py'}:build",
                      input="waveform", sample_rate=16000, seconds=0.025,
                      settings={"width": 2})
    with pytest.raises(ConfigError, match="calling the factory"):
        bad.build(2)
    with pytest.raises(ConfigError, match="needs sample_rate"):
        FactoryType(name="X", factory="m.py:build", input="waveform")
    wrong_shape = FactoryType(name="X", factory=f"{tmp_path / 'user_models.py'}:build")
    with pytest.raises(ConfigError, match=r"fails on an input of shape \(1, 1, 313, 149\)"):
        wrong_shape.build(2)


def test_pretrained_run_folder_records_the_weights(tmp_path: Path) -> None:
    (tmp_path / "user_models.py").write_text(MODEL)
    mt = FactoryType(name="Frozen", factory=f"{tmp_path / 'user_models.py'}:pretrained",
                     input="waveform", sample_rate=16000, seconds=0.025, trainable=False)
    run = write_pretrained(WaveSet(), WaveSet(8, seed=1), tmp_path / "run", model_type=mt)
    sha = run.model_config["weights_sha256"]
    assert len(sha) == 64 and run.epoch == 0 and run.history[0]["epoch"] == 0
    torch.manual_seed(123)
    ref = mt.build(2)
    assert all(torch.equal(v, ref.state_dict()[k]) for k, v in run.model.state_dict().items())
    assert write_pretrained(WaveSet(), WaveSet(8, seed=1), tmp_path / "run",
                            model_type=mt).model_config["weights_sha256"] == sha  # kept
    with pytest.raises(ConfigError, match="pretrained"):
        train_run(WaveSet(), WaveSet(8, seed=1), tmp_path / "t", model_type=mt)
    (tmp_path / "user_models.py").write_text(MODEL.replace("manual_seed(123)",
                                                           "manual_seed(7)"))
    with pytest.raises(CheckpointError, match="holds pretrained weights"):
        write_pretrained(WaveSet(), WaveSet(8, seed=1), tmp_path / "run", model_type=mt)


def test_attack_against_the_clean_prediction_leaves_its_start(tmp_path: Path,
                                                              user_type) -> None:
    """Without labels the MSE to the model's own prediction has a zero gradient at δ = 0:
    the attack takes its first step to a random point of the ball (and says so), instead of
    returning δ = 0 as if the model were robust; with ε = 0 it refuses."""
    torch.manual_seed(0)
    model = user_type.build(2).eval()
    ds = WaveSet(4)
    items = [{"id": it["id"], "x": it["x"], "y": None} for it in (ds[i] for i in range(4))]
    attack = BIM(eps=0.01, eta=0.005, max_iters=5, stop="none")
    table = attack_items(model, items, attack, tmp_path / "a", names=["arousal", "valence"],
                         domain="waveform")
    assert table["zero_grad_start"].all() and (table["delta_linf"] > 0).all()
    assert (table["mae_adv"] > table["mae_clean"]).all()
    assert (table["mae_clean"] == 0).all()  # measured against its own clean prediction
    import yaml
    assert yaml.safe_load((tmp_path / "a" / "config.yaml").read_text())["reference"] == (
        "clean_prediction")
    with pytest.raises(AttackError, match="gradient is exactly zero"):
        BIM(eps=0.0, eta=0.005, max_iters=5, stop="none")(model, ds.x[:2],
                                                          model(ds.x[:2]).detach())
    assert not (tmp_path / "b").exists()
    with pytest.raises(AttackError):
        attack_items(model, items, BIM(eps=0.0, eta=0.01, max_iters=2, stop="none"),
                     tmp_path / "b",
                     names=["arousal", "valence"], domain="waveform")
    assert not (tmp_path / "b").exists()  # nothing attacked: no folder left behind


def test_correlation_rule_needs_three_outputs(user_type) -> None:
    """A per-clip Pearson r over 2 outputs is always ±1: the rule refuses such a model, and a
    spec built for it defaults to the MSE rule, scaled to the targets' range."""
    torch.manual_seed(0)
    model = user_type.build(2).eval()
    x, y = WaveSet(4).x, WaveSet(4).y
    with pytest.raises(ConfigError, match="at least 3"):
        BIM(eps=0.01, eta=0.005, max_iters=2)(model, x, y)
    spec = AttackSpec.from_dict({"name": "bim", "eps": 0.01}, n_outputs=2, target_range=8.0)
    assert spec.settings["stop"] == "mse"
    assert spec.settings["mse_limit"] == pytest.approx(100.0)  # (8 / 0.8)**2 x the paper's 1
    assert spec.settings["threshold_step"] == pytest.approx(10.0)
    with pytest.raises(ConfigError, match="stop"):
        AttackSpec.from_dict({"name": "bim", "stop": "corr"}, n_outputs=2)
    with pytest.raises(ConfigError, match="reference"):
        AttackSpec.from_dict({"name": "reference"}, n_outputs=2)
    paper = AttackSpec.from_dict({"name": "bim"}, n_outputs=8, target_range=0.8)
    assert paper == AttackSpec.from_dict({"name": "bim"})  # the paper's data: unchanged


def test_registry_drives_names_and_comparisons() -> None:
    assert get_type("aa2b2e").name == "aA2B2E" and get_type("CLASSIFIER").task == (
        "classification")
    with pytest.raises(ConfigError, match="unknown model type 'nope'"):
        get_type("nope")
    assert default_comparisons(["A2E", "A2B2E", "A2M2E"]) == [("A2E", "A2M2E"),
                                                              ("A2B2E", "A2M2E")]
    assert default_comparisons(["Mine", "A2E", "Other"]) == [("A2E", "Mine"),
                                                             ("Other", "Mine")]
    assert for_config({"kind": "a2m2e", "width": 1.0}).needs_concepts


def test_evaluate_lists_an_undefined_r_instead_of_averaging_it(tmp_path: Path) -> None:
    from robustmer.cli.train import metrics_table
    from robustmer.evaluate.metrics import regression_metrics

    y = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    m = regression_metrics(y, y + np.array([[0.1, 0.2], [0.0, -0.1], [0.2, 0.0]]),
                           ["arousal", "valence"])
    text = metrics_table(m, None)
    assert "undef." in text and "r of 1" in text and "valence" in text.splitlines()[-1]


def test_train_cli_takes_a_factory_and_the_registry_names(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["train", "--help"])
    assert "A2M2E" in res.output and "my_models.py:build" in res.output
    res = CliRunner().invoke(app, ["train", "--model", "nope", "--data", str(tmp_path),
                                   "--out", str(tmp_path / "r")])
    assert res.exit_code != 0 and "unknown model type 'nope'" in str(res.exception or
                                                                     res.output)
