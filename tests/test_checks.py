"""Checks against gradient masking: a model built to mask its gradients (its input is rounded,
so every gradient is zero) is flagged, an ordinary model passes every check; transfer uses
exactly the source model's δ; the study's ``checks:`` block writes checks.csv and resumes."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from robustmer.attacks import checks as ck
from robustmer.attacks.bim import BIM
from robustmer.errors import ConfigError
from robustmer.evaluate.checks_table import CHECKS_COLUMNS, read_checks
from test_attack_properties import Recorder

KW = {"iters": (10,), "restarts": 2, "queries": 100, "unbounded_eps": 10.0,
      "unbounded_eta": 0.5, "unbounded_iters": 60, "abs_tol": 0.002}
ATTACK = BIM(eps=0.3, eta=0.1, max_iters=30, stop="none")


pytestmark = pytest.mark.usefixtures("one_thread")


class Quantise(nn.Module):
    """Rounds the input to a grid: the function still depends on x, its gradient is 0."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.round(x / self.step) * self.step


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.Tanh(), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(),
                         nn.Linear(36, 8)).double()


@pytest.fixture(scope="module")
def clips() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return (torch.randn(6, 1, 12, 10, generator=g, dtype=torch.float64),
            torch.rand(6, 8, generator=g, dtype=torch.float64))


def _all(model: nn.Module, source: nn.Module, x: torch.Tensor, y: torch.Tensor) -> pd.DataFrame:
    rows = ck.model_checks(model, x, y, ATTACK, **KW)
    tr = ck.transfer_check(source, model, x, y, ATTACK, abs_tol=KW["abs_tol"])
    return pd.concat([rows, tr], ignore_index=True)


def test_ordinary_model_passes_every_check(clips):
    x, y = clips
    rows = _all(net(0), net(1), x, y)
    assert list(rows.columns) == list(ck.COLUMNS)
    assert set(rows["check"]) == set(ck.CHECKS)
    judged = rows[rows["status"] != "info"]
    assert (judged["status"] == "pass").all(), judged
    assert judged["rule"].str.startswith("flag if").all()
    # the gradient attack really hurts the ordinary model (otherwise "pass" would mean little)
    conv = rows[(rows["check"] == "convergence") & (rows["status"] != "info")]
    assert float(conv["value"].iloc[0]) > 0.01


def test_gradient_masking_model_is_flagged(clips):
    x, y = clips
    base = net(0)
    masked = nn.Sequential(Quantise(0.5), base)
    rows = _all(masked, base, x, y).set_index(["check", "setting"])
    # the white-box gradient attack sees zero gradients: it cannot start; its first step goes
    # to a random point of the ball (marked), after which it sees zero gradients again ...
    assert abs(rows.loc[("convergence", "30 iterations (all)"), "value"]) < 0.005
    assert bool(ATTACK(masked, x, y).extra["zero_grad_start"].all())
    # ... and the checks notice: no ε, a huge ε, a gradient-free attack and transfer all flag it
    assert rows.loc[("unbounded", "no eps"), "status"] == "flag"
    assert rows.loc[("unbounded", "eps=10"), "status"] == "flag"
    assert rows.loc[("unbounded", "eps=10"), "iters"] == 10 * KW["unbounded_iters"]  # tried
    assert rows.xs("gradient_free", level="check")["status"].iloc[0] == "flag"
    assert rows.xs("transfer", level="check")["status"].iloc[0] == "flag"


def test_a_slow_climb_to_the_unbounded_limit_is_not_flagged(clips):
    """Short of the limit after ``iters``, the check tries 3x and 10x before it flags (an
    adversarially trained model climbs more slowly; docs/results.md)."""
    x, y = clips
    short = ck.unbounded_check(net(0), x, y, eps=10.0, eta=0.5, iters=10, escalate=())
    assert (short["status"] == "flag").all() and (short["value"] < 0.9).all()
    longer = ck.unbounded_check(net(0), x, y, eps=10.0, eta=0.5, iters=10)
    assert (longer["status"] == "pass").all() and (longer["value"] >= 0.9).all()
    assert (longer["iters"] == 30).all()  # the first factor that got there
    assert "10 / 30 / 100 iterations" in longer["rule"].iloc[0]


def test_transfer_applies_exactly_the_source_delta(clips):
    x, y = clips
    source = net(1)
    expected = ATTACK(source, x, y).delta
    target = Recorder(net(0))
    rows = ck.transfer_check(source, target, x, y, ATTACK, batch_size=6,
                             source_name="s", target_name="t")
    # the target saw the clean clips, the white-box attack's queries and x + δ_source exactly
    assert any(torch.equal(seen, x + expected) for seen in target.seen)
    moved = ck.apply_delta(net(0), x, y, expected)
    assert rows["value"].iloc[0] == pytest.approx(moved.delta_mae)
    assert rows["setting"].iloc[0] == "s -> t"
    with pytest.raises(ConfigError, match="shape"):
        ck.apply_delta(net(0), x, y, expected[:2])


def test_convergence_flags_an_attack_stopped_too_early(clips):
    x, y = clips
    slow = BIM(eps=0.3, eta=0.005, max_iters=40, stop="none")  # 40 small steps: still climbing
    rows = ck.convergence_check(net(0), x, y, slow, iters=(5,))
    assert list(rows["status"]) == ["info", "flag"]
    assert rows["value"].iloc[1] > rows["value"].iloc[0]


def test_unknown_check_and_l2_square_are_refused(clips):
    x, y = clips
    with pytest.raises(ConfigError, match="unknown check"):
        ck.model_checks(net(0), x, y, ATTACK, checks=["nope"])
    with pytest.raises(ConfigError, match="L∞"):
        ck.gradient_free_check(net(0), x, y, BIM(eps=0.1, eta=0.1, max_iters=1, norm="l2"))


# -- the study ------------------------------------------------------------------------------

def _study(out: Path, cache: Path, **checks: object) -> object:
    from robustmer.study.config import parse_config

    raw = {
        "name": "tiny", "output": str(out), "models": ["A2E"], "seeds": [1, 2],
        "data": {"synth_clips": 20, "cache": str(cache)},
        "train": {"width": 0.0625, "epochs": 1},
        "attack": {"iters": 3, "batch_size": 4, "eps": 0.01, "eta": 0.005},
        "checks": {"clips": 2, "iters": [1], "restarts": 1, "queries": 5,
                   "unbounded_iters": 5, **checks},
        "media_clips": 0,
    }
    return parse_config(raw)


@pytest.mark.slow
def test_study_writes_checks_csv_and_resumes(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import robustmer.study.checks as study_checks
    import robustmer.study.runner as runner
    from robustmer.report.html import build_report

    cfg = _study(tmp_path / "s", tmp_path / "cache")
    runner.run_study(cfg, progress=False, log=lambda m: None)
    table = read_checks(tmp_path / "s")
    assert list(table.columns) == list(CHECKS_COLUMNS)
    single = {"convergence", "restarts", "unbounded", "gradient_free", "apgd"}
    for rid in ("A2E_seed1", "A2E_seed2"):
        assert set(table.loc[table["run_id"] == rid, "check"]) == single | {"transfer"}
    assert set(table.loc[table["check"] == "transfer", "setting"]) == {
        "A2E_seed1 -> A2E_seed2", "A2E_seed2 -> A2E_seed1"}
    assert not table.duplicated(["run_id", "check", "setting", "eps"]).any()

    # kill after the first check of the second run, then resume: only the rest is computed
    (tmp_path / "s" / "checks.csv").unlink()
    real = study_checks.ck.model_checks
    calls: list[str] = []

    def dying(*args: object, **kwargs: object) -> pd.DataFrame:
        calls.append(kwargs["checks"][0])  # type: ignore[index]
        if len(calls) == len(single) + 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(study_checks.ck, "model_checks", dying)
    with pytest.raises(KeyboardInterrupt):
        runner.run_study(cfg, progress=False, log=lambda m: None)
    assert len(read_checks(tmp_path / "s")) > 0
    calls.clear()
    monkeypatch.setattr(study_checks.ck, "model_checks", real)
    counted: list[str] = []

    def counting(*args: object, **kwargs: object) -> pd.DataFrame:
        counted.append(kwargs["checks"][0])  # type: ignore[index]
        return real(*args, **kwargs)

    monkeypatch.setattr(study_checks.ck, "model_checks", counting)
    runner.run_study(cfg, progress=False, log=lambda m: None)
    assert len(counted) == len(single) - 1  # the second run's first check was already written
    resumed = read_checks(tmp_path / "s")
    assert len(resumed) == len(table)
    key = ["run_id", "check", "setting"]
    pd.testing.assert_frame_equal(resumed.sort_values(key).reset_index(drop=True),
                                  table.sort_values(key).reset_index(drop=True))

    counted.clear()
    runner.run_study(cfg, progress=False, log=lambda m: None)  # all done: nothing recomputed
    assert counted == []

    page = build_report(tmp_path / "s").read_text(encoding="utf-8")
    assert "Checks: gradient masking" in page and "A2E: " in page


def test_checks_block_is_strict(tmp_path: Path) -> None:
    from robustmer.study.config import parse_config

    with pytest.raises(ConfigError, match=r"checks: unknown key\(s\) \['clip'\]"):
        _study(tmp_path, tmp_path, clip=3)
    with pytest.raises(ConfigError, match=r"checks\.run: unknown check"):
        _study(tmp_path, tmp_path, run=["convergence", "magic"])
    with pytest.raises(ConfigError, match=r"checks\.clips"):
        _study(tmp_path, tmp_path, clips=0)
    with pytest.raises(ConfigError, match=r"checks\.transfer: model type\(s\) \['A2M2E'\]"):
        _study(tmp_path, tmp_path, transfer=[["A2E", "A2M2E"]])
    raw = {"name": "n", "output": "o", "attack": {"domain": "waveform"}, "checks": {}}
    with pytest.raises(ConfigError, match=r"checks\.eps: required"):
        parse_config(raw)
    assert parse_config({"name": "n", "output": "o"}).checks is None  # off by default
    spec = parse_config({**raw, "checks": {"eps": 0.01}}).checks
    assert spec is not None and spec.eps == [0.01] and spec.transfer == [["A2E", "A2M2E"],
                                                                          ["A2M2E", "A2E"]]
