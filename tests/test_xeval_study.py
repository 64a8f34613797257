"""The explainer evaluation's settings (one dataclass for ``robustmer explainer-eval`` and a
study's ``explainer_eval:`` block) and the block run inside a tiny study, resumably."""

from __future__ import annotations

import dataclasses
import inspect
from enum import Enum
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
import yaml

import robustmer.study.explainers as xeval_study
import robustmer.study.runner as runner
from robustmer.cli import xeval as xeval_cli
from robustmer.errors import ConfigError
from robustmer.study.config import parse_config
from robustmer.study.xeval_settings import ExplainerEvalSettings

NOT_SETTINGS = {"run_dir", "out", "device", "data", "resume", "overwrite", "progress"}
CLI_TO_KEY = {"attack_iters": "iters", "param": "params"}


def _cli_defaults() -> dict[str, Any]:
    """The ``explainer-eval`` command's option defaults, by settings key."""
    app = typer.Typer()
    xeval_cli.register(app)
    (command,) = app.registered_commands
    assert command.callback is not None
    out = {}
    for name, par in inspect.signature(command.callback).parameters.items():
        if name in NOT_SETTINGS:
            continue
        default = par.default.default  # typer's OptionInfo
        out[CLI_TO_KEY.get(name, name)] = (str(default.value) if isinstance(default, Enum)
                                           else default)
    return out


def test_settings_defaults_are_the_commands_and_cover_every_option() -> None:
    cli = _cli_defaults()
    keys = {f.name for f in dataclasses.fields(ExplainerEvalSettings)}
    assert set(cli) == keys  # every option is a setting and every setting an option
    base = ExplainerEvalSettings.from_dict({"methods": ["saliency"]}, where="x")
    for key, value in cli.items():
        if key == "methods":
            continue
        # the command's default, read as the command reads it, is the dataclass default
        given = ExplainerEvalSettings.from_dict({"methods": ["saliency"], key: value},
                                                where="x")
        assert given == base, key
        field = ExplainerEvalSettings.__dataclass_fields__[key]
        if field.default is not dataclasses.MISSING:
            assert getattr(base, key) == field.default, key
    assert base.recovery_k == (1, 3, 5) and base.k is None and base.params == {"saliency": {}}


def test_settings_read_yaml_and_command_forms_alike() -> None:
    a = ExplainerEvalSettings.from_dict(
        {"methods": "Saliency,lime", "params": ["lime.n_samples=32"], "k": ["1-3"],
         "recovery_k": "1,3"})
    b = ExplainerEvalSettings.from_dict(
        {"methods": ["saliency", "lime", "saliency"], "params": {"lime": {"n_samples": 32}},
         "k": [1, 2, 3], "recovery_k": [1, 3]}, where="s: explainer_eval")
    assert a == b and a.methods == ("saliency", "lime") and a.k == (1, 2, 3)
    assert a.explainers()["lime"].config()["n_samples"] == 32


@pytest.mark.parametrize("raw, message", [
    ({"methods": ["saliency"], "sigma": 1}, "unknown key(s) ['sigma']"),
    ({}, "s.methods: name at least one explainer"),
    ({"methods": ["saliency"], "max_clips": "two"}, "s.max_clips: expected an integer"),
    ({"methods": ["saliency"], "standard": "no"}, "s.standard: expected true or false"),
    ({"methods": ["saliency"], "eps": "big"}, "s.eps: expected a finite number"),
    ({"methods": ["saliency"], "attack": "fgsm"}, "s.attack: expected one of"),
    ({"methods": ["saliency"], "per_class": 0}, "s.per_class must be >= 1"),
    ({"methods": ["saliency"], "standard_clips": 0}, "s.standard_clips must be >= 1"),
    ({"methods": ["saliency"], "k": "1-x"}, "s.k: expected integers or ranges"),
    ({"methods": ["saliency"], "grid": "4by5"}, "segment grid must look like 4x5"),
    ({"methods": ["saliency"], "params": {"lime": {"n_samples": 8}}}, "'lime' is not in"),
    ({"methods": ["saliency"], "params": {"saliency": {"sigma": 1}}}, "does not take"),
])
def test_bad_settings_are_refused_naming_the_key(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        ExplainerEvalSettings.from_dict(raw, where="s")
    assert message in str(err.value)


def test_the_command_names_its_options_in_errors() -> None:
    with pytest.raises(ConfigError, match="--per-class must be >= 1"):
        ExplainerEvalSettings.from_dict({"methods": "saliency", "per_class": 0})
    with pytest.raises(ConfigError, match=r"--param 'x\.y=1': method 'x' is not in --methods"):
        ExplainerEvalSettings.from_dict({"methods": "saliency", "params": ["x.y=1"]})
    # standard_clips only matters when the standard tests run
    assert ExplainerEvalSettings.from_dict({"methods": "saliency", "standard": False,
                                            "standard_clips": 0}).standard_clips == 0


def _raw(out: Path, cache: Path, **over: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "name": "tiny-xeval", "output": str(out), "models": ["A2E"], "seeds": [3],
        "data": {"synth_clips": 20, "cache": str(cache)},
        "train": {"width": 0.0625, "epochs": 1},
        "attack": {"iters": 2, "batch_size": 4}, "media_clips": 0,
    }
    raw.update(over)
    return raw


BLOCK = {"methods": ["saliency"], "standard": False, "max_clips": 2, "iters": 3,
         "grid": "2x3", "k": "1-2", "recovery_k": [1], "min_rise": 0.001}
"""Tiny: 3 iterations of a barely trained model; a 0.1 % rise counts as success, so the
clips are evaluated and the study page has rates to show."""


def test_study_block_is_parsed_strictly(tmp_path: Path) -> None:
    plain = parse_config(_raw(tmp_path / "o", tmp_path / "c"))
    assert plain.explainer_eval is None and "explainer_eval" not in plain.to_dict()
    cfg = parse_config(_raw(tmp_path / "o", tmp_path / "c", explainer_eval=BLOCK))
    assert cfg.explainer_eval is not None and cfg.explainer_eval.models == ("A2E",)
    assert cfg.explainer_eval.seeds is None and cfg.explainer_eval.settings.iters == 3
    assert cfg.to_dict()["explainer_eval"]["methods"] == ["saliency"]
    for bad, message in (({**BLOCK, "mehtods": 1}, "unknown key(s) ['mehtods']"),
                         ({**BLOCK, "seeds": [4]}, "explainer_eval.seeds: [4] not among"),
                         ({**BLOCK, "models": ["B"]}, "explainer_eval.models: ['B'] not"),
                         ({**BLOCK, "per_class": 2}, "explainer_eval.per_class: balances"),
                         ({**BLOCK, "iters": 0.5}, "explainer_eval.iters: expected an int")):
        with pytest.raises(ConfigError) as err:
            parse_config(_raw(tmp_path / "o", tmp_path / "c", explainer_eval=bad))
        assert message in str(err.value)


@pytest.mark.slow
def test_study_runs_the_block_per_run_and_skips_it_when_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, cache = tmp_path / "study", tmp_path / "cache"
    cfg = parse_config(_raw(out, cache, explainer_eval=BLOCK))
    logged: list[str] = []
    res = runner.run_study(cfg, progress=False, log=logged.append)
    assert list(res.runs["status"]) == ["done"]
    folder = out / "runs" / "A2E_seed3" / "explainer-eval"
    flips = pd.read_csv(folder / "flips.csv")
    assert set(flips.columns) >= {"method", "k"}
    written = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    assert written["methods"][-1] == "saliency" and written["ks"] == [1, 2]
    assert written["run_dir"] == str(out / "runs" / "A2E_seed3" / "train")
    adversarial = pd.read_csv(folder / "adversarial.csv")
    assert len(adversarial) == 2 and adversarial["success"].astype(bool).all()  # max_clips
    assert (folder / "DONE").is_file()
    assert any(line.startswith("explainer-eval A2E_seed3: ") for line in logged)
    assert "explainer_eval" in yaml.safe_load((out / "config.yaml").read_text("utf-8"))

    # done: a second call does not evaluate again
    stamp = (folder / "meta.json").stat().st_mtime_ns

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the finished evaluation ran again")

    monkeypatch.setattr(xeval_study, "run_explainer_eval", refuse)
    runner.run_study(cfg, progress=False, log=logged.append)
    assert (folder / "meta.json").stat().st_mtime_ns == stamp
    monkeypatch.undo()

    # interrupted (no DONE): resumed in place, same tables
    (folder / "DONE").unlink()
    runner.run_study(cfg, progress=False, log=logged.append)
    pd.testing.assert_frame_equal(pd.read_csv(folder / "flips.csv"), flips)
    assert (folder / "DONE").is_file()

    # a changed block does not silently keep the old results
    changed = parse_config(_raw(out, cache, explainer_eval={**BLOCK, "seed": 1}))
    with pytest.raises(ConfigError, match="other explainer_eval settings"):
        runner.run_study(changed, progress=False, log=logged.append)

    # the study's report has a section on it, linking the run's own page, with N
    from robustmer.report import build_report

    page = build_report(out)
    html = page.read_text(encoding="utf-8")
    assert '<section id="explainer-eval">' in html
    assert 'href="runs/A2E_seed3/explainer-eval/report.html"' in html
    assert (folder / "report.html").is_file()
    section = html.split('<section id="explainer-eval">', 1)[1].split("</section>", 1)[0]
    ok = int(pd.read_csv(folder / "adversarial.csv")["success"].astype(bool).sum())
    assert f"<td class=\"num\">{ok} / 2</td>" in section and "N = " in section
    for method in ("magnitude", "random", "saliency"):
        assert f"<th>{method}</th>" in section
