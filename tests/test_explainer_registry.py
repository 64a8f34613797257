"""The explainer registry: a new explainer is one class and one ``register`` call, and then
``make_explainer``, ``robustmer explain`` and ``robustmer explainer-eval`` take it (a toy
input-times-gradient explainer defined here, with nothing else changed); settings are checked
against its constructor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import typer
from torch import nn
from typer.testing import CliRunner

from robustmer.cli import app
from robustmer.errors import ConfigError
from robustmer.explain import explain, grid_segments, make_explainer, registry
from robustmer.explain.base import Explainer, Explanation, check_input, check_target, eval_mode
from robustmer.explain.segments import aggregate
from test_explain_eval import _tiny_run


class InputTimesGradient(Explainer):
    """``scale · x · ∂y_target/∂x`` per pixel (torch autograd), segments scored by
    ``aggregation``: the toy explainer a user would add."""

    def __init__(self, *, scale: float = 1.0, aggregation: str = "mean",
                 name: str = "inputxgrad") -> None:
        self.scale, self.aggregation, self.name = float(scale), aggregation, name

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"method": self.name, "scale": self.scale, "aggregation": self.aggregation}

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> Explanation:
        """Explain output ``target`` of ``model`` on ``x``."""
        x = check_input(x)
        t = check_target(model, x, target)
        xg = x.detach().clone().requires_grad_(True)
        with eval_mode(model):
            out = model(xg).gather(1, t[:, None]).sum()
            (grad,) = torch.autograd.grad(out, xg)
        attr = (self.scale * xg * grad).detach().float().cpu()
        scores = None if segments is None else aggregate(attr, segments.cpu(), self.aggregation)
        return Explanation(self.name, t.cpu(), attr, scores, {"config": self.config()})


@pytest.fixture
def toy() -> Iterator[str]:
    """Register the toy (the one call a user writes) and forget it afterwards."""
    saved = dict(registry.REGISTRY)
    registry.register("inputxgrad", InputTimesGradient, doc="input times gradient (a toy)")
    yield "inputxgrad"
    registry.REGISTRY.clear()
    registry.REGISTRY.update(saved)


class Linear(nn.Module):
    """``y = W x`` over the flattened ``(1, T, F)`` input: ∂y_k/∂x = W_k."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1) @ self.weight.T


def test_a_registered_explainer_is_built_by_name_and_gives_its_known_answer(toy: str) -> None:
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(3, 4 * 6, generator=g), torch.randn(2, 1, 4, 6, generator=g)
    seg = grid_segments((4, 6), n_freq=2, n_time=2)
    assert toy in registry.names() and registry.get("InputXGrad").doc
    ex = explain(Linear(w), x, torch.tensor([2, 0]), " InputXGrad ", seg, scale=2.0)
    expected = 2.0 * x * torch.stack([w[2], w[0]]).reshape(2, 1, 4, 6)
    assert ex.method == toy and torch.allclose(ex.attribution, expected, atol=1e-6)
    assert ex.segment_scores is not None
    assert torch.allclose(ex.segment_scores, aggregate(expected, seg, "mean"), atol=1e-6)
    # ints become floats where the constructor's default is a float; the name is the registry's
    built = make_explainer(toy, scale=3)
    assert built.config() == {"method": toy, "scale": 3.0, "aggregation": "mean"}
    assert registry.get(toy).parameters() == {"scale": 1.0, "aggregation": "mean"}


def test_settings_are_checked_against_the_constructor(toy: str) -> None:
    with pytest.raises(ConfigError, match=r"method 'inputxgrad' does not take \['sigma'\]; "
                                          r"it takes \['aggregation', 'scale'\]"):
        make_explainer(toy, sigma=0.1)
    with pytest.raises(ConfigError, match=r"method 'inputxgrad'\.scale: expected float"):
        make_explainer(toy, scale="big")
    with pytest.raises(ConfigError, match=r"unknown explanation method 'inputx'.*inputxgrad"):
        make_explainer("inputx")
    bad_registrations = [
        (dict(defaults={"sigma": 0.1}), "has no setting 'sigma'"),
        (dict(settings=("scale", "n_steps")), "has no setting 'n_steps'"),
        (dict(fixed={"scale": 2.0}, settings=("scale",)), "fixed by the name"),
        (dict(view_defaults={"aggregation": "sum"}, settings=("scale",)), "not settings"),
    ]
    for kwargs, msg in bad_registrations:
        with pytest.raises(ConfigError, match=msg):
            registry.register("toy2", InputTimesGradient, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="letters, digits"):
        registry.register("toy two", InputTimesGradient)
    assert "toy2" not in registry.names()
    # a fixed setting is no longer the caller's: the built-ins' own restriction
    registry.register("inputxgrad2", InputTimesGradient, fixed={"scale": 2.0})
    assert make_explainer("inputxgrad2").config()["scale"] == 2.0
    with pytest.raises(ConfigError, match="does not take"):
        make_explainer("inputxgrad2", scale=1.0)


def test_view_defaults_apply_only_in_a_waveform_view_and_under_given_settings() -> None:
    """LIME's registration says a switched-off segment is silence in a waveform's views."""
    assert registry.make("lime").config()["fill"] == "mean"
    assert registry.make("lime", view="spectrogram").config()["fill"] == "mean"
    assert registry.make("lime", view="stft").config()["fill"] == "zero"
    assert registry.make("lime", {"fill": "min"}, view="input").config()["fill"] == "min"


def test_the_cli_help_lists_the_registry(toy: str) -> None:
    """A CLI built after the registration offers the toy in both commands' help."""
    from robustmer.cli import explain as explain_cli
    from robustmer.cli import xeval

    for module, option in ((explain_cli, "--method"), (xeval, "--methods")):
        fresh = typer.Typer()
        module.register(fresh)
        res = CliRunner().invoke(fresh, ["--help"], env={"COLUMNS": "200"})
        assert res.exit_code == 0 and option in res.output
        assert all(name in res.output for name in registry.names()), res.output


def invoke(*args: object) -> str:
    res = CliRunner().invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, (args, res.output, res.exception)
    return res.output


@pytest.mark.slow
def test_robustmer_explain_and_explainer_eval_run_a_registered_toy(
        toy: str, tmp_path: Path) -> None:
    run = _tiny_run(tmp_path, "classifier")
    clip = json.loads((run / "split.json").read_text(encoding="utf-8"))["test"][0]
    out = tmp_path / "explain"
    text = invoke("explain", run, "--clip", clip, "--method", "InputXGrad", "--param",
                  "scale=2", "--segments", "2x3", "--out", out)
    summary = json.loads((out / "explanation.json").read_text(encoding="utf-8"))
    assert summary["method"] == toy and toy in text
    assert summary["explainer"] == {"method": toy, "scale": 2.0, "aggregation": "mean"}
    (row,) = summary["targets"]
    assert len(row["segment_scores"]) == 6 and sorted(row["ranking"]) == list(range(6))
    with np.load(out / "attribution.npz") as z:
        attr, x = z["attribution"], z["input"]
    assert attr.shape[-2:] == x.shape and np.isfinite(attr).all() and np.abs(attr).max() > 0
    # an unknown setting is refused before anything is written
    res = CliRunner().invoke(app, ["explain", str(run), "--clip", clip, "--method", toy,
                                   "--param", "sigma=1", "--out", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "does not take ['sigma']" in str(res.exception)
    assert not (tmp_path / "bad").exists()

    xeval = tmp_path / "xeval"
    text = invoke("explainer-eval", run, "--methods", f"{toy},saliency", "--param",
                  f"{toy}.scale=2", "--k", "1-3", "--recovery-k", "1", "--split", "train",
                  "--max-clips", 3, "--attack-iters", 30, "--eps", 0.5, "--eta", 0.05,
                  "--norm", "linf", "--confidence", 0, "--grid", "2x3", "--out", xeval,
                  "--no-progress", "--no-standard")
    assert "gave a successful adversarial example" in text
    n_ok = int(pd.read_csv(xeval / "adversarial.csv")["success"].sum())
    assert n_ok >= 1
    flips = pd.read_csv(xeval / "flips.csv", dtype={"clip_id": str})
    assert set(flips["method"]) == {"magnitude", "random", toy, "saliency"}
    assert len(flips[flips["method"] == toy]) == n_ok * 3
    res = CliRunner().invoke(app, ["explainer-eval", str(run), "--methods", toy, "--param",
                                   f"{toy}.sigma=1", "--out", str(tmp_path / "bad-eval")])
    assert res.exit_code != 0 and "does not take ['sigma']" in str(res.exception)
