"""L2I (Listen to Interpret): sparse NMF, soft masks, resynthesis, relevance, hooks, training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from robustmer.errors import ConfigError
from robustmer.explain.l2i import (
    FeatureHooks,
    InterpreterConfig,
    Theta,
    last_conv_blocks,
    log_magnitude,
    overlap_add,
    relevance,
    resynthesize,
    select,
    soft_masks,
    sparse_nmf,
)
from robustmer.explain.l2i.nmf import normalise_columns, objective, update_h, update_w
from robustmer.features import LogFilteredSpectrogram
from robustmer.models import build_model


def test_nmf_updates_never_increase_objective_and_keep_unit_columns() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 200, generator=g, dtype=torch.float64)
    res = sparse_nmf(X, 6, mu=0.5, iterations=60, seed=1)
    obj = np.asarray(res.objective)
    assert np.all(np.diff(obj) <= 1e-9 * obj[:-1]), "the objective increased"
    assert obj[-1] < 0.9 * obj[0]
    assert torch.allclose(res.W.norm(dim=0), torch.ones(6, dtype=torch.float64), atol=1e-9)
    assert bool((res.W >= 0).all()) and bool((res.H >= 0).all())
    # the plain H update alone is monotone (no safeguard involved)
    W, H = res.W, res.H.clone()
    before = objective(X, W, H, 0.5)
    assert objective(X, W, update_h(X, W, H, 0.5), 0.5) <= before + 1e-12
    assert torch.allclose(update_w(X, W, H).norm(dim=0), torch.ones(6, dtype=torch.float64))


def test_nmf_recovers_known_dictionary_up_to_order() -> None:
    g = torch.Generator().manual_seed(3)
    F, K, N = 40, 5, 400
    W0 = normalise_columns(torch.rand(F, K, generator=g, dtype=torch.float64) ** 6)
    H0 = torch.rand(K, N, generator=g, dtype=torch.float64) * (
        torch.rand(K, N, generator=g, dtype=torch.float64) < 0.3)
    res = sparse_nmf(W0 @ H0, K, mu=1e-3, iterations=600, seed=7)
    cos = (res.W.T @ W0)  # unit columns: cosine similarities
    best = cos.max(dim=0).values
    assert float(best.min()) > 0.95, best
    assert len(set(cos.argmax(dim=0).tolist())) == K, "two true columns matched one learnt"


def test_nmf_rejects_bad_input() -> None:
    with pytest.raises(ConfigError, match="non-negative"):
        sparse_nmf(-torch.ones(3, 4), 2)
    with pytest.raises(ConfigError, match="k >= 1"):
        sparse_nmf(torch.ones(3, 4), 0)


def test_soft_masks_sum_back_to_x() -> None:
    g = torch.Generator().manual_seed(0)
    X = torch.rand(20, 16, generator=g)
    W = normalise_columns(torch.rand(16, 4, generator=g))
    H = torch.rand(4, 20, generator=g)
    H[:, 5] = 0  # a frame with every activation off
    parts = soft_masks(X, W, H)
    assert parts.shape == (4, 20, 16) and bool((parts >= 0).all())
    torch.testing.assert_close(parts.sum(0), X, rtol=1e-5, atol=1e-6)


def _test_signal(n: int) -> torch.Tensor:
    t = torch.arange(n, dtype=torch.float64) / 22050
    g = torch.Generator().manual_seed(0)
    return (0.5 * torch.sin(2 * torch.pi * 440 * t) + 0.3 * torch.sin(2 * torch.pi * 1234.5 * t)
            + 0.05 * torch.randn(n, generator=g, dtype=torch.float64))


def test_resynthesis_with_own_phase_reconstructs_audio() -> None:
    """SNR >= 40 dB on the samples from frame_size (2048) to the end minus frame_size: at the
    very start madmom's first frame begins at sample 0 where the window is 0, so the first
    samples are not recoverable; the end is excluded symmetrically."""
    fe = LogFilteredSpectrogram(dtype=torch.float64)
    n = 3 * 22050 + 123
    wave = _test_signal(n)
    X, spec = log_magnitude(fe, wave)
    assert X.shape == (fe.num_frames(n), 1024) and spec.shape[-1] == 1025
    for y in (overlap_add(spec, n, fe), resynthesize(X, spec, n, fe)):
        assert y.shape == (n,)
        a, b = wave[2048:-2048], y[2048:-2048]
        snr = 10 * torch.log10((a ** 2).sum() / ((a - b) ** 2).sum())
        assert float(snr) >= 40.0, float(snr)


def test_relevance_and_selection_on_hand_made_theta() -> None:
    theta = Theta(k=3, n_outputs=2, pooling="max")
    with torch.no_grad():
        theta.fc.weight.copy_(torch.tensor([[1.0, -2.0, 0.5], [0.0, 1.0, 1.0]]))
        theta.fc.bias.zero_()
    H = torch.tensor([[[0.0, 2.0], [1.0, 0.5], [4.0, 0.0]]])  # z = max over time = (2, 1, 4)
    r = relevance(theta, H)
    # output 0: contributions (2, -2, 2) -> /2 ; output 1: (0, 1, 4) -> /4
    torch.testing.assert_close(r[0], torch.tensor([[1.0, -1.0, 1.0], [0.0, 0.25, 1.0]]))
    assert select(r, 0.5)[0].tolist() == [[True, False, True], [False, False, True]]
    assert select(r, 0.2)[0, 1].tolist() == [False, True, True]
    with pytest.raises(ConfigError):
        select(r, 1.0)


def test_attention_pooling_is_a_convex_combination() -> None:
    torch.manual_seed(0)
    theta = Theta(k=4, n_outputs=2, pooling="att")
    H = torch.rand(2, 4, 7)
    z = theta.pool(H)
    assert bool((z <= H.amax(-1) + 1e-6).all()) and bool((z >= H.amin(-1) - 1e-6).all())


@pytest.mark.parametrize("kind", ["a2e", "a2m2e", "classifier"])
def test_hooks_leave_model_outputs_unchanged(kind: str) -> None:
    torch.manual_seed(0)
    model = build_model(kind, width=0.0625, n_classes=5 if kind == "classifier" else None).eval()
    x = torch.randn(2, 1, 64, 149)
    with torch.no_grad():
        before = model(x)
    layers = last_conv_blocks(model)
    assert len(layers) == 3
    with FeatureHooks(model, layers) as hooks, torch.no_grad():
        during = model(x)
        feats = hooks.features
    with torch.no_grad():
        after = model(x)
    assert torch.equal(before, during) and torch.equal(before, after)
    assert len(feats) == 3 and all(f.ndim == 4 and f.shape[0] == 2 for f in feats)
    assert not model._forward_hooks and all(not m._forward_hooks for m in model.modules())


def _train(out: Path, stop_after: int | None = None, kind: str = "a2e") -> dict[str, torch.Tensor]:
    from robustmer.train.interpreter import train_interpreter

    torch.manual_seed(0)
    model = build_model(kind, width=0.0625, n_classes=3 if kind == "classifier" else None).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 1, 48, 149, generator=g)
    X = torch.rand(6, 48, 24, generator=g)
    W = normalise_columns(torch.rand(24, 5, generator=g))
    cfg = InterpreterConfig(epochs=3, batch_size=4, hidden=8, seed=2)
    task = "classification" if kind == "classifier" else "regression"
    interp = train_interpreter(model, task, x, X, W, out, cfg, stop_after=stop_after)
    return {k: v.clone() for k, v in interp.state_dict().items()}


def test_interpreter_training_is_seeded_and_resumable(tmp_path: Path) -> None:
    full = _train(tmp_path / "a")
    again = _train(tmp_path / "b")
    assert all(torch.equal(full[k], again[k]) for k in full)
    _train(tmp_path / "c", stop_after=1)  # "killed" after epoch 1
    resumed = _train(tmp_path / "c")
    assert all(torch.equal(full[k], resumed[k]) for k in full)
    from robustmer.io import read_json
    hist = read_json(tmp_path / "c" / "last" / "history.json")
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["fidelity_weight"] for h in hist] == [0.5, 1.0, 1.0]  # round(0.3 * 3) = 1


def test_interpreter_training_classifier_runs(tmp_path: Path) -> None:
    state = _train(tmp_path / "cls", kind="classifier")
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_nmf_input_uses_the_front_end_stft_frame_for_frame() -> None:
    fe = LogFilteredSpectrogram(dtype=torch.float64)
    wave = _test_signal(22050)
    X, _ = log_magnitude(fe, wave)
    # the model's input is log10(1 + |STFT| @ filterbank) of the very same frames
    torch.testing.assert_close(torch.log10(torch.expm1(X) @ fe.filterbank + 1), fe(wave))


def test_report_shows_l2i_section_for_a_run_folder(tmp_path: Path) -> None:
    import pandas as pd

    from robustmer.io import write_json
    from robustmer.report.html import build_report

    l2i = tmp_path / "run" / "l2i"
    ex = l2i / "explain" / "001_tension_tau0.5_att"
    ex.mkdir(parents=True)
    pd.DataFrame({"pooling": ["att"], "metric": ["r"], "output": ["mean"], "value": [0.5]}
                 ).to_csv(l2i / "fidelity.csv", index=False)
    pd.DataFrame({"pooling": ["att"], "tau": [0.5], "ff_median": [0.1], "wilcoxon_p": [0.01]}
                 ).to_csv(l2i / "faithfulness.csv", index=False)
    for name in ("input.wav", "interpretation.wav", "component_7.wav"):
        (ex / name).write_bytes(b"")
    write_json(ex / "explanation.json", {"target_name": "tension", "tau": 0.5,
                                         "model_output": 0.4, "interpreter_output": 0.3,
                                         "relevance": {"7": 0.9},
                                         "component_files": {"7": "component_7.wav"}})
    page = build_report(tmp_path / "run", tmp_path / "page" / "report.html")
    html = page.read_text(encoding="utf-8")
    assert "Listen to Interpret" in html and "Faithfulness" in html
    assert html.count("<audio") == 3
    assert '../run/l2i/explain/001_tension_tau0.5_att/component_7.wav' in html
    with pytest.raises(ConfigError, match="--l2i"):
        build_report(tmp_path / "run", tmp_path / "page" / "r2.html", l2i=[tmp_path])
