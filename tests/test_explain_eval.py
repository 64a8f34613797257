"""The adversarial ground-truth evaluation of explainers (robustmer.explain.evaluation) on
hand-made models and perturbations with analytic answers: an oracle explainer, a fixed-order
explainer, linear classifiers and regressors that read known segments."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from robustmer.attacks import BIM, AttackResult, CWAudio
from robustmer.errors import ConfigError
from robustmer.explain.evaluation import (
    evaluate_explainers,
    keep_segments,
    rank_segments,
    read_results,
    recovery_hits,
    segment_energy,
)

T, F = 8, 6


def grid() -> torch.Tensor:
    """2 time blocks x 3 frequency bands = 6 segments of 4 x 2 = 8 pixels each."""
    t = torch.arange(T)[:, None] // 4
    f = torch.arange(F)[None, :] // 2
    return (t * 3 + f).long()


SEG = grid()


class SegmentClassifier(nn.Module):
    """Two classes; ``logit_1 − logit_0 = Σ x over the segments `reads` − 1``, so a zero input is
    class 0 and only the pixels of `reads` matter."""

    def __init__(self, reads: tuple[int, ...]) -> None:
        super().__init__()
        self.register_buffer("w", torch.isin(SEG, torch.tensor(reads)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x[:, 0] * self.w).sum(dim=(1, 2)) - 1.0
        return torch.stack([torch.zeros_like(z), z], dim=1)


class SegmentRegressor(nn.Module):
    """A linear regressor with 3 outputs that reads only the pixels of segment `reads`."""

    def __init__(self, reads: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        w = torch.randn(3, T, F, generator=g) * (reads == SEG).float()
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("btf,ktf->bk", x[:, 0], self.w)


@dataclass
class Expl:
    attribution: torch.Tensor
    segment_scores: torch.Tensor


@dataclass
class Oracle:
    """Knows the clean inputs are zero, so ``x_in`` *is* δ: returns δ's own segment energies."""

    name: str = "oracle"
    calls: list[int] = field(default_factory=list)

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Any,
                 segments: torch.Tensor | None = None) -> Expl:
        assert segments is not None
        self.calls.append(len(x))
        return Expl(x ** 2, segment_energy(x, segments))

    def config(self) -> dict[str, Any]:
        return {"kind": "oracle"}


@dataclass
class FixedOrder:
    """Ranks segments 5, 4, 3, 2, 1, 0 whatever the input."""

    name: str = "fixed"
    calls: list[int] = field(default_factory=list)

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Any,
                 segments: torch.Tensor | None = None) -> Expl:
        self.calls.append(len(x))
        scores = torch.arange(6, dtype=torch.float64).repeat(len(x), 1)
        return Expl(torch.zeros_like(x), scores)

    def config(self) -> dict[str, Any]:
        return {"kind": "fixed"}


class GivenDelta:
    """An 'attack' that returns prescribed perturbations, one per clip in order."""

    name = "given"

    def __init__(self, deltas: list[torch.Tensor]) -> None:
        self.deltas = deltas

    def config(self) -> dict[str, Any]:
        return {"attack": "given"}

    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> AttackResult:
        d = torch.stack(self.deltas[:len(x)])
        self.deltas = self.deltas[len(x):]
        n = len(x)
        nan = torch.full((n,), float("nan"))
        return AttackResult(x_adv=x + d, delta=d, iterations=torch.zeros(n, dtype=torch.int64),
                            converged=torch.ones(n, dtype=torch.bool), final_threshold=nan,
                            last_passed=nan, score=torch.ones(n), last_delta=d)


def seg_delta(values: dict[int, float]) -> torch.Tensor:
    d = torch.zeros(1, T, F)
    for s, v in values.items():
        d[0][s == SEG] = v
    return d


def items(n: int) -> list[dict[str, Any]]:
    return [{"id": f"c{i}", "x": torch.zeros(1, T, F)} for i in range(n)]


# -- segment arithmetic -------------------------------------------------------------------------

def test_segment_helpers_on_fixed_arrays() -> None:
    d = seg_delta({1: 1.0, 4: 0.5, 5: -0.25})[None]
    e = segment_energy(d, SEG)
    assert e.shape == (1, 6)
    assert torch.allclose(e[0], torch.tensor([0, 8.0, 0, 0, 2.0, 0.5], dtype=torch.float64))
    assert rank_segments(e).tolist() == [[1, 4, 5, 0, 2, 3]]  # ties: lower id first
    assert rank_segments(torch.tensor([[0.0, float("nan"), -float("inf"), 0.0]])).tolist() == [
        [0, 3, 1, 2]]
    kept = keep_segments(d, SEG, torch.tensor([[4, 5]]))
    assert torch.equal(kept, seg_delta({4: 0.5, 5: -0.25})[None])
    assert recovery_hits(torch.tensor([[3, 1, 0, 2], [0, 1, 2, 3]]),
                         torch.tensor([[1, 3], [2, 3]]), 2).tolist() == [2, 0]


# -- the done-when test: oracle on a one-segment perturbation -----------------------------------

def test_oracle_flips_at_k1_and_magnitude_equals_oracle(tmp_path: Path) -> None:
    model = SegmentClassifier(reads=(4,))
    attack = CWAudio(alpha=15.0, eps=0.5, eta=0.01, max_iters=200, box=None)
    oracle = Oracle()
    res = evaluate_explainers(model, items(3), SEG, {"oracle": oracle}, tmp_path, task="classifier",
                              attack=attack, batch_size=2)
    assert res.n_attacked == 3 and res.n_successful == 3
    # the attack's δ is confined to the one segment the model reads
    for cid in ("c0", "c1", "c2"):
        with np.load(tmp_path / "examples" / f"{cid}.npz") as z:
            d = torch.as_tensor(z["delta"])
        assert d.abs().sum() > 0 and float(d[0][SEG != 4].abs().max()) == 0.0
    rate = res.flip_rate(1)
    assert rate["oracle"] == 1.0 and rate["magnitude"] == 1.0
    f = res.flips.set_index(["clip_id", "method", "k"])["flipped"]
    for k in range(1, 7):
        for cid in ("c0", "c1", "c2"):
            assert f[(cid, "magnitude", k)] == f[(cid, "oracle", k)]
    # the random baseline flips exactly when its top k contains segment 4
    assert res.flips[res.flips["method"] == "random"]["flipped"].mean() < 1.0
    assert (res.adversarial["target_class"] == 1).all()
    assert {"config.yaml", "meta.json", "flips.csv", "recovery.csv", "adversarial.csv",
            "timings.csv"} <= {p.name for p in tmp_path.iterdir()}


# -- recovery on a hand-made case ----------------------------------------------------------------

def test_recovery_histogram_hand_made(tmp_path: Path) -> None:
    model = SegmentClassifier(reads=(1, 4))
    # clip A: energies 8 (seg 1), 2 (seg 4), 0.5 (seg 5): magnitude order 1, 4, 5, 0, 2, 3;
    #   logit diff of the partial δ on {1} = 8·1 − 1 > 0: every partial adversary flips.
    # clip B: energies 0.08 (1), 0.18 (4), 0.32 (5): order 5, 4, 1, 0, 2, 3; partial on {5}
    #   leaves the diff at −1 (no flip); on {5, 4, 1}: 0.8 + 1.2 − 1 > 0.
    deltas = [seg_delta({1: 1.0, 4: 0.5, 5: 0.25}), seg_delta({1: 0.1, 4: 0.15, 5: 0.2})]
    res = evaluate_explainers(model, items(2), SEG, {"fixed": FixedOrder()}, tmp_path,
                              task="classifier", attack=GivenDelta(deltas), batch_size=2)
    rec = res.recovery.set_index(["clip_id", "method", "k"])
    # fixed order 5,4,3,2,1,0 against the modified sets
    assert rec.loc[("c0", "fixed", 1), "hits"] == 0          # {5} vs {1}
    assert rec.loc[("c0", "fixed", 3), "hits"] == 2          # {5,4,3} vs {1,4,5}
    assert rec.loc[("c0", "fixed", 5), "hits"] == 4          # {5,4,3,2,1} vs {1,4,5,0,2}
    assert not rec.loc[("c1", "fixed", 1), "partial_flipped"]
    assert pd.isna(rec.loc[("c1", "fixed", 1), "hits"])
    assert rec.loc[("c1", "fixed", 3), "hits"] == 2          # {5,4,3} vs {5,4,1}
    assert rec.loc[("c1", "fixed", 5), "hits"] == 4
    # the magnitude baseline recovers every modified segment
    mag = res.recovery[(res.recovery["method"] == "magnitude") & res.recovery["partial_flipped"]]
    assert (mag["hits"] == mag["k"]).all() and len(mag) == 5
    # label-flip curve of the fixed order on clip A: {5} no, {5,4} yes (8·0.5 − 1 > 0)
    f = res.flips.set_index(["clip_id", "method", "k"])["flipped"]
    assert not f[("c0", "fixed", 1)] and f[("c0", "fixed", 2)]
    assert f[("c0", "magnitude", 1)] and not f[("c1", "magnitude", 1)]


def test_resume_skips_finished_rows_and_gives_the_same_table(tmp_path: Path) -> None:
    model = SegmentClassifier(reads=(1, 4))

    def deltas() -> list[torch.Tensor]:
        return [seg_delta({1: 1.0, 4: 0.5, 5: 0.25}), seg_delta({1: 0.1, 4: 0.15, 5: 0.2}),
                seg_delta({4: 0.5, 2: 0.3})]

    full = evaluate_explainers(model, items(3), SEG, {"fixed": FixedOrder(),
                                                      "oracle": Oracle()},
                               tmp_path / "full", task="classifier", attack=GivenDelta(deltas()),
                               batch_size=2)
    part = tmp_path / "part"
    evaluate_explainers(model, items(3), SEG, {"fixed": FixedOrder(), "oracle": Oracle()}, part,
                        task="classifier", attack=GivenDelta(deltas()), batch_size=2)
    # simulate a run killed while evaluating "oracle" on clip c2 (its flips written, not yet its
    # recovery rows) and before the third clip was attacked at all
    fl = pd.read_csv(part / "flips.csv", dtype={"clip_id": str})
    rc = pd.read_csv(part / "recovery.csv", dtype={"clip_id": str})
    rc = rc[~((rc["clip_id"] == "c2") & (rc["method"] == "oracle"))]
    rc.to_csv(part / "recovery.csv", index=False)
    assert len(fl) == len(full.flips)
    with pytest.raises(ConfigError, match="resume"):
        evaluate_explainers(model, items(3), SEG, {"fixed": FixedOrder(), "oracle": Oracle()},
                            part, task="classifier", attack=GivenDelta(deltas()), batch_size=2)
    fixed, oracle = FixedOrder(), Oracle()
    attack = GivenDelta([])  # would fail if any clip were attacked again
    res = evaluate_explainers(model, items(3), SEG, {"fixed": fixed, "oracle": oracle}, part,
                              task="classifier", attack=attack, batch_size=2, resume=True)
    assert fixed.calls == []            # every (clip, fixed) pair was finished
    assert oracle.calls and oracle.calls[0] == 1   # only clip c2 was explained again
    pd.testing.assert_frame_equal(res.flips, full.flips)
    pd.testing.assert_frame_equal(res.recovery, full.recovery)
    on_disk = read_results(part)
    pd.testing.assert_frame_equal(on_disk["recovery"], read_results(tmp_path / "full")["recovery"])
    # a resume with different settings is refused
    with pytest.raises(ConfigError, match="different settings"):
        evaluate_explainers(model, items(3), SEG, {"fixed": FixedOrder()}, part,
                            task="classifier", attack=attack, batch_size=2, resume=True,
                            fraction=0.9)


def test_regressor_analogue_on_a_linear_model(tmp_path: Path) -> None:
    model = SegmentRegressor(reads=2)
    y = [{"id": f"r{i}", "x": torch.randn(1, T, F, generator=torch.Generator().manual_seed(i)),
          "y": torch.zeros(3)} for i in range(3)]
    attack = BIM(eps=0.2, eta=0.05, max_iters=20, stop="mse", threshold_step=0.01,
                 mse_limit=100.0)
    res = evaluate_explainers(model, y, SEG, {"oracle_free": FixedOrder()}, tmp_path,
                              task="regressor", attack=attack, batch_size=3)
    assert res.n_successful == 3
    adv = res.adversarial
    assert (adv["mse_adv"] > adv["mse_clean"]).all() and (adv["target_class"] == -1).all()
    # the explained output is the one the attack moved most
    for row in adv.itertuples():
        with np.load(tmp_path / "examples" / f"{row.clip_id}.npz") as z:
            x, d = torch.as_tensor(z["x"])[None], torch.as_tensor(z["delta"])[None]
        moved = (model(x + d) - model(x)).abs()[0]
        assert row.explained == int(moved.argmax())
        assert float(d[0, 0][SEG != 2].abs().max()) == 0.0  # δ lives in segment 2 only
    fl = res.flips
    # δ is confined to segment 2: a partial perturbation is all of δ (effect 1) when its top k
    # holds segment 2, none of it (effect 0) otherwise
    mag = fl[fl["method"] == "magnitude"]
    assert mag["flipped"].all() and np.allclose(mag["effect"], 1.0)
    fixed = fl[fl["method"] == "oracle_free"]  # order 5,4,3,2,...: segment 2 enters at k = 4
    assert (fixed["flipped"] == (fixed["k"] >= 4)).all()
    assert np.allclose(fixed["effect"], (fixed["k"] >= 4).astype(float), atol=1e-9)


def test_bad_arguments_raise_config_errors(tmp_path: Path) -> None:
    model = SegmentClassifier(reads=(1,))
    with pytest.raises(ConfigError, match="k must lie"):
        evaluate_explainers(model, items(1), SEG, {}, tmp_path / "a", task="classifier", ks=[7])
    with pytest.raises(ConfigError, match="task"):
        evaluate_explainers(model, items(1), SEG, {}, tmp_path / "b", task="ranking")
    with pytest.raises(ConfigError, match="reserved"):
        evaluate_explainers(model, items(1), SEG, {"random": FixedOrder()}, tmp_path / "c",
                            task="classifier")
    with pytest.raises(ConfigError, match="segment ids"):
        evaluate_explainers(model, items(1), SEG + 1, {}, tmp_path / "d", task="classifier")


def test_report_page_for_an_explainer_eval_folder(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustmer.cli import app
    from robustmer.report.explain import flip_summary, is_explainer_eval, recovery_summary

    model = SegmentClassifier(reads=(1, 4))
    deltas = [seg_delta({1: 1.0, 4: 0.5, 5: 0.25}), seg_delta({1: 0.1, 4: 0.15, 5: 0.2})]
    folder = tmp_path / "xeval"
    res = evaluate_explainers(model, items(2), SEG, {"fixed": FixedOrder(), "oracle": Oracle()},
                              folder, task="classifier", attack=GivenDelta(deltas), n_maps=1)
    assert is_explainer_eval(folder) and not is_explainer_eval(tmp_path)
    assert sorted(p.name for p in (folder / "maps").iterdir()) == ["c0.npz"]
    s = flip_summary(res.flips)
    row = s[(s["method"] == "magnitude") & (s["k"] == 1)].iloc[0]
    assert row["n"] == 2 and row["rate"] == 0.5 and row["ci_low"] < 0.5 < row["ci_high"]
    rs = recovery_summary(res.recovery).set_index(["method", "k"])
    assert rs.loc[("fixed", 3), "h2"] == 2 and rs.loc[("fixed", 1), "n"] == 1
    out = CliRunner().invoke(app, ["report", str(folder)])
    assert out.exit_code == 0, out.output
    page = (folder / "report.html").read_text(encoding="utf-8")
    assert "<b>2 of 2</b>" in page and "Label-flip rate vs k" in page
    # curves, curves per direction of the decision, recovery, one clip's maps
    assert page.count("data:image/png;base64,") == 4
    assert "By direction of the decision" in page and "smallest k" in page
    assert "oracle" in page and "Recovery of localised perturbations" in page
    assert (folder / "report-figures" / "explainer-flip-curves.png").is_file()


def _tiny_run(tmp_path: Path, kind: str) -> Path:
    """A 1-epoch width-0.0625 run on a 10-clip synthetic dataset (as `robustmer train` writes
    it), through the library so that it works for the classifier too. Format 2 of the dataset:
    these are tests of the pipeline's mechanics, and on format 2 the barely trained classifier's
    labels can be flipped within the test's short attack (on format 3 none of the 3 clips
    flipped)."""
    from typer.testing import CliRunner

    from robustmer.cli import app
    from robustmer.data import prepare_data
    from robustmer.train import TrainConfig, train_run

    data, run = tmp_path / "data", tmp_path / f"run-{kind}"
    if not data.is_dir():
        res = CliRunner().invoke(app, ["data", "synth", "--out", str(data), "--clips", "10",
                                       "--seed", "3", "--format-version", "2"])
        assert res.exit_code == 0, res.output
    prepared = prepare_data(data, cache_dir=tmp_path / "cache")
    desc = {**prepared.to_dict(), "split_id": prepared.split.split_id}
    train_run(prepared.dataset("train", mode="random"), prepared.dataset("val", mode="fixed"),
              run, model_type=kind, model_settings={"width": 0.0625},
              config=TrainConfig(max_epochs=1, batch_size=4), data_description=desc,
              normaliser=prepared.standardizer.to_dict(), progress=False)
    prepared.split.save(run / "split.json")
    return run


@pytest.mark.slow
def test_cli_explainer_eval_on_tiny_runs(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from robustmer.cli import app

    def invoke(*args: Any) -> str:
        res = CliRunner().invoke(app, [str(a) for a in args])
        assert res.exit_code == 0, (args, res.output, res.exception)
        return res.output

    run = _tiny_run(tmp_path, "classifier")
    out = tmp_path / "xeval"
    args = ("explainer-eval", run, "--methods", "saliency,lime", "--param", "lime.n_samples=32",
            "--k", "1-3", "--recovery-k", "1,3", "--split", "train", "--max-clips", 3,
            "--attack-iters", 30, "--eps", 0.5, "--eta", 0.05, "--norm", "linf",
            "--confidence", 0, "--grid", "2x3", "--out", out, "--no-progress", "--no-standard")
    text = invoke(*args)
    assert "clips of train gave a successful adversarial example (classification)" in text
    adv = pd.read_csv(out / "adversarial.csv", dtype={"clip_id": str})
    assert len(adv) == 3
    n_ok = int(adv["success"].sum())
    assert n_ok >= 1
    flips = pd.read_csv(out / "flips.csv", dtype={"clip_id": str})
    assert len(flips) == n_ok * 4 * 3  # (magnitude, random, saliency, lime) x k = 1..3
    assert set(flips["method"]) == {"magnitude", "random", "saliency", "lime"}
    rec = pd.read_csv(out / "recovery.csv", dtype={"clip_id": str})
    assert len(rec) == n_ok * 4 * 2 and set(rec["k"]) <= {1, 3}
    # resume: nothing to do, same tables
    invoke(*args, "--resume")
    pd.testing.assert_frame_equal(pd.read_csv(out / "flips.csv", dtype={"clip_id": str}), flips)
    invoke("report", out)
    assert "Label-flip rate vs k" in (out / "report.html").read_text(encoding="utf-8")
    # a bad --param names the problem
    res = CliRunner().invoke(app, ["explainer-eval", str(run), "--methods", "saliency",
                                   "--param", "lime.n_samples=8", "--out", str(tmp_path / "z")])
    assert res.exit_code != 0 and "lime" in str(res.exception)

    # the regressor analogue through the CLI (A2E): same tables, regression attack
    run = _tiny_run(tmp_path, "a2e")
    out = tmp_path / "xeval-a2e"
    text = invoke("explainer-eval", run, "--methods", "ig", "--param", "ig.n_steps=4",
                  "--k", "1,6", "--recovery-k", "1", "--split", "train", "--max-clips", 2,
                  "--attack-iters", 10, "--eps", 0.05, "--eta", 0.01, "--norm", "linf",
                  "--min-rise", 0, "--grid", "2x3", "--out", out, "--no-progress",
                  "--standard-clips", 2, "--sanity-clips", 1, "--sanity-layers", 2)
    assert "(regression)" in text
    adv = pd.read_csv(out / "adversarial.csv", dtype={"clip_id": str})
    assert (adv["target_class"] == -1).all() and adv["explained"].between(0, 7).all()
    assert adv["success"].all() and (adv["mse_adv"] > adv["mse_clean"]).all()
    flips = pd.read_csv(out / "flips.csv", dtype={"clip_id": str})
    assert len(flips) == 2 * 3 * 2
    # at k = S (all 6 segments) the partial perturbation is all of δ: effect 1, flipped
    full = flips[flips["k"] == 6]
    assert full["flipped"].all() and np.allclose(full["effect"], 1.0)
    # the standard tests ran on the clean clips (deletion curves, 2 cascade steps)
    cascade = pd.read_csv(out / "sanity_cascade.csv", dtype={"clip": str})
    assert set(cascade["method"]) == {"ig", "input"} and set(cascade["step"]) == {1, 2}
    auc = pd.read_csv(out / "deletion_auc.csv", dtype={"clip_id": str})
    assert set(auc["method"]) == {"ig", "random"} and len(auc) == 2 * 2 * 2


def test_library_explainers_plug_in(tmp_path: Path) -> None:
    """The explain package's explainers satisfy the interface: on a model that reads one segment,
    saliency and LIME rank it first, so they flip every clip at k = 1 like the oracle."""
    from robustmer.explain import make_explainer

    model = SegmentClassifier(reads=(4,))
    attack = CWAudio(alpha=15.0, eps=0.5, eta=0.01, max_iters=200, box=None)
    explainers = {"saliency": make_explainer("saliency"),
                  "lime": make_explainer("lime", n_samples=64)}
    res = evaluate_explainers(model, items(2), SEG, explainers, tmp_path, task="classifier",
                              attack=attack, ks=[1, 6])
    assert res.n_successful == 2
    rate = res.flip_rate(1)
    assert rate["saliency"] == 1.0 and rate["lime"] == 1.0 and rate["magnitude"] == 1.0
    assert (res.flip_rate(6) == 1.0).all()
    assert set(res.timings["method"]) >= {"saliency", "lime"}


class Shifted(nn.Module):
    """``base(x − s_clip)``: a model with per-clip state (a shift per clip, like a waveform
    model's STFT view holding each clip's phase); rows must match its clips (or it holds one)."""

    def __init__(self, base: nn.Module, shifts: torch.Tensor) -> None:
        super().__init__()
        self.base = base
        self.register_buffer("shifts", shifts.float().reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, p = x.shape[0], self.shifts.shape[0]
        assert p in (1, n), f"{p} clips for {n} rows"
        return self.base(x - self.shifts.reshape(-1, 1, 1, 1).to(x.dtype))

    def subset(self, index: torch.Tensor) -> Shifted:
        return self if self.shifts.shape[0] == 1 else Shifted(self.base, self.shifts[index])


@dataclass
class Probe(FixedOrder):
    """:class:`FixedOrder` that records the model's output on every input it explains."""

    name: str = "probe"
    outputs: list[torch.Tensor] = field(default_factory=list)

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Any,
                 segments: torch.Tensor | None = None) -> Expl:
        with torch.no_grad():
            self.outputs.append(model(x).detach().cpu())
        return super().__call__(model, x, target, segments)


def test_per_clip_models_from_model_for_give_the_plain_models_tables(tmp_path: Path) -> None:
    """``model_for`` builds each batch's module from the items' ``context`` (kept in the
    examples, so resume rebuilds it); attack, predictions and explainers see each clip with its
    own state: clips shifted by 8·i through ``Shifted`` give the unshifted clips' tables and
    the explainers see the same model outputs."""
    from robustmer.explain import make_explainer

    base = SegmentClassifier(reads=(1, 4))
    # c1 reads most already: only its partial δ on one segment flips, so the recovery explains
    # row 1 alone of the batch (c0, c1)
    plain_items = [{"id": f"c{i}", "x": seg_delta({1: v, 0: 0.1})}
                   for i, v in enumerate((0.0, 0.12, 0.03, 0.06, 0.09))]
    shifted_items = [{"id": it["id"], "x": it["x"] + 8.0 * i, "context": {"shift": 8.0 * i}}
                     for i, it in enumerate(plain_items)]

    def model_for(contexts: list[dict[str, np.ndarray]]) -> nn.Module:
        return Shifted(base, torch.tensor([float(c["shift"]) for c in contexts]))

    def run(items_: list[dict[str, Any]], out: Path,
            methods: tuple[str, ...] = ("probe", "saliency"), **kw: Any) -> Any:
        probe = Probe()
        explainers = {"probe": probe, "saliency": make_explainer("saliency")}
        attack = CWAudio(alpha=15.0, eps=0.5, eta=0.02, max_iters=100, box=None)
        res = evaluate_explainers(base, items_, SEG, {m: explainers[m] for m in methods}, out,
                                  task="classification", attack=attack, batch_size=2,
                                  ks=[1, 2, 6], **kw)
        return res, probe

    plain, plain_probe = run(plain_items, tmp_path / "plain")
    _, probe = run(shifted_items, tmp_path / "shifted", ("probe",), model_for=model_for)
    assert set(probe.calls) == {1}  # a per-clip model is explained one clip at a time
    assert torch.allclose(torch.cat(probe.outputs), torch.cat(plain_probe.outputs), atol=1e-4)
    # resume with one more method: the batch modules are rebuilt from the stored contexts
    shifted, probe = run(shifted_items, tmp_path / "shifted", model_for=model_for, resume=True)
    assert plain.n_successful == 5 and probe.calls == []
    rec = plain.recovery.set_index(["clip_id", "method", "k"])["partial_flipped"]
    assert rec[("c1", "probe", 1)] and not rec[("c0", "probe", 1)]
    adv_cols = ["clip_id", "success", "clean_class", "target_class", "explained", "iterations"]
    pd.testing.assert_frame_equal(shifted.adversarial[adv_cols], plain.adversarial[adv_cols])
    for name in ("flips", "recovery"):
        a, b = getattr(shifted, name), getattr(plain, name)
        pd.testing.assert_frame_equal(a.drop(columns=["effect"], errors="ignore"),
                                      b.drop(columns=["effect"], errors="ignore"))
    assert np.allclose(shifted.flips["effect"], plain.flips["effect"], atol=1e-5)
    with np.load(tmp_path / "shifted" / "examples" / "c3.npz") as z:
        assert float(z["context_shift"]) == 24.0


def test_predict_narrows_a_per_clip_model_to_each_chunk() -> None:
    from robustmer.explain.evaluation import predict

    base = SegmentClassifier(reads=(1,))
    x = torch.randn(5, 1, T, F, generator=torch.Generator().manual_seed(0))
    shifts = torch.arange(5.0) * 4
    out = predict(Shifted(base, shifts), x + shifts.reshape(-1, 1, 1, 1), batch_size=2)
    assert torch.allclose(out, base(x).double(), atol=1e-5)
