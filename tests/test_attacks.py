"""The attack loop: ε bounds, the reference's no-op clip, batch == one-at-a-time, stopping rules,
targeted / C&W attacks, model state hygiene."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from robustmer.attacks import (
    BIM,
    PGD,
    CWAudio,
    TargetedPGD,
    ThresholdStop,
    linf,
    per_sample_corr,
    per_sample_mse,
    project,
)
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import rowwise_pearson_r


def tiny_regressor(seed: int = 0, n_out: int = 8) -> nn.Module:
    """Conv + BatchNorm + dropout net on (B, 1, T, F): exercises eval-mode BN/dropout."""
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout2d(0.3),
        nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
        nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(), nn.Linear(54, n_out),
    )
    with torch.no_grad():  # non-trivial BN statistics so eval mode matters
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return net


@pytest.fixture()
def setup() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 1, 12, 10, generator=g)
    y = torch.rand(5, 8, generator=g)
    return tiny_regressor(), x, y


def test_linf_bound_holds_where_the_reference_clip_would_not(setup):
    model, x, y = setup
    eps, eta, n = 0.01, 0.05, 6  # η > ε: every unprojected step leaves the ball
    res = BIM(eps=eps, eta=eta, max_iters=n, stop="none")(model, x, y)
    assert torch.all(linf(res.delta) <= eps * (1 + 1e-6))
    assert torch.all(linf(res.last_delta) <= eps * (1 + 1e-6))
    assert torch.allclose(res.x_adv, x + res.delta)
    # the reference's non-in-place clamp: δ grows by η·sign(g) per step, far past ε
    ref = BIM(eps=eps, eta=eta, max_iters=n, stop="none", clip="reference_noop")(model, x, y)
    assert torch.all(linf(ref.delta) > 2 * eps)
    # with sign steps and no projection, |δ| can reach n·η
    assert float(linf(ref.delta).max()) <= n * eta * (1 + 1e-6)


def test_project_is_out_of_place_and_bounded():
    d = torch.tensor([[0.5, -0.5, 0.001]])
    x = torch.zeros_like(d)
    before = d.clone()
    p = project(d, x, 0.01, "linf")
    assert torch.equal(d, before)  # input untouched; the result must be used
    assert torch.allclose(p, torch.tensor([[0.01, -0.01, 0.001]]))
    q = project(d, x, 0.1, "l2")
    assert math.isclose(float(q.norm()), 0.1, rel_tol=1e-6)
    assert torch.allclose(q / q.norm(), d / d.norm())


def test_box_projection_keeps_input_in_range():
    x = torch.tensor([[0.995, -0.999, 0.0]])
    d = torch.tensor([[0.01, -0.01, 0.01]])
    p = project(d, x, 0.01, "linf", box=(-1.0, 1.0))
    assert torch.all((x + p).abs() <= 1.0)
    assert torch.allclose(p, torch.tensor([[0.005, -0.001, 0.01]]), atol=1e-7)


@pytest.mark.parametrize("kwargs", [
    {"stop": "corr"},
    {"stop": "mse", "mse_limit": 0.3},
    {"stop": "corr", "norm": "l2", "eps": 0.5, "eta": 0.1},
    {"stop": "corr", "update": "adam_sign"},
    {"stop": "none", "update": "adam_sign", "clip": "reference_noop"},
])
def test_batch_equals_one_at_a_time(setup, kwargs):
    model, x, y = setup
    base = {"eps": 0.05, "eta": 0.01, "max_iters": 25} | kwargs
    res = BIM(**base)(model, x, y)
    for i in range(len(x)):
        one = BIM(**base)(model, x[i:i + 1], y[i:i + 1])
        if base.get("norm") == "l2":
            # g/‖g‖₂ is continuous: batched and single reductions may differ in the last ulp
            assert torch.allclose(one.delta[0], res.delta[i], rtol=0, atol=1e-6), i
        else:  # sign steps: bit-for-bit equal
            assert torch.equal(one.delta[0], res.delta[i]), i
        assert int(one.iterations[0]) == int(res.iterations[i])
        assert bool(one.converged[0]) == bool(res.converged[i])
        f1, fb = float(one.final_threshold[0]), float(res.final_threshold[i])
        assert f1 == fb or (math.isnan(f1) and math.isnan(fb))


def test_samples_stop_independently_and_are_frozen(setup):
    model, x, y = setup
    res = BIM(eps=0.2, eta=0.05, max_iters=40, stop="mse", mse_limit=0.25)(model, x, y)
    assert res.iterations.max() <= 40
    assert len(set(res.iterations.tolist())) > 1  # different samples stopped at different steps
    with torch.no_grad():
        mse = per_sample_mse(model.eval()(res.x_adv).double(), y.double())
    for i in range(len(x)):
        if res.converged[i]:
            assert float(mse[i]) >= 0.25 - 1e-9  # the returned δ passed the last threshold
            assert float(res.final_threshold[i]) == 0.25
            assert res.iterations[i] < 40
        assert math.isclose(float(res.score[i]), float(mse[i]), rel_tol=1e-5, abs_tol=1e-7)


def test_corr_rule_scores_the_returned_delta(setup):
    model, x, y = setup
    res = BIM(eps=0.1, eta=0.02, max_iters=30, stop="corr")(model, x, y)
    with torch.no_grad():
        out = model.eval()(res.x_adv)
    r_ref = rowwise_pearson_r(y.numpy(), out.numpy())
    r = per_sample_corr(out, y).numpy()
    assert r == pytest.approx(r_ref, abs=1e-6)
    for i in range(len(x)):
        assert float(res.score[i]) == pytest.approx(float(r[i]), abs=1e-5)
        lp = float(res.last_passed[i])
        if not math.isnan(lp):  # a passed threshold: the returned δ is at or below it
            assert float(r[i]) <= lp + 1e-9
            assert float(res.final_threshold[i]) < lp


def test_threshold_grid_start_values():
    out = torch.tensor([[1.0, 2.0, 3.0, 4.0]], dtype=torch.float64)
    rule = ThresholdStop("corr")
    # r = 1 -> the largest multiple of 0.1 strictly below is 0.9
    done, r0 = rule.start(out, out.clone())
    assert not bool(done[0]) and float(r0[0]) == pytest.approx(1.0)
    assert float(rule.final_threshold()[0]) == pytest.approx(0.9)
    v = torch.tensor([0.35, 0.3, -0.05, -0.95, -1.0], dtype=torch.float64)
    assert rule._next(v).tolist() == pytest.approx([0.3, 0.2, -0.1, -1.0, -1.0])
    mse_rule = ThresholdStop("mse", limit=0.45)
    m = torch.tensor([0.0, 0.25, 0.3, 0.44, 0.9], dtype=torch.float64)
    assert mse_rule._next(m).tolist() == pytest.approx([0.1, 0.3, 0.4, 0.45, 0.45])


def test_already_past_the_last_threshold_is_done_at_start(setup):
    model, x, y = setup
    res = BIM(eps=0.1, eta=0.01, max_iters=10, stop="mse", mse_limit=1e-6)(model, x, y)
    assert res.converged.all() and (res.iterations == 0).all()
    assert torch.count_nonzero(res.delta) == 0


def test_zero_iterations_returns_clean_input(setup):
    model, x, y = setup
    res = BIM(max_iters=0)(model, x, y)
    assert torch.equal(res.x_adv, x) and (res.iterations == 0).all()


def test_attack_raises_mse_and_is_deterministic(setup):
    model, x, y = setup
    a = BIM(eps=0.3, eta=0.01, max_iters=20, stop="none")
    r1, r2 = a(model, x, y), a(model, x, y)
    assert torch.equal(r1.delta, r2.delta)
    model.eval()
    with torch.no_grad():
        clean = per_sample_mse(model(x), y)
        adv = per_sample_mse(model(r1.x_adv), y)
    assert torch.all(adv > clean)


def test_random_start_is_seeded(setup):
    model, x, y = setup
    a, b = PGD(eps=0.05, eta=0.01, max_iters=0, seed=3), PGD(eps=0.05, eta=0.01, max_iters=0,
                                                             seed=3)
    c = PGD(eps=0.05, eta=0.01, max_iters=0, seed=4)
    ra, rb, rc = a(model, x, y), b(model, x, y), c(model, x, y)
    assert torch.equal(ra.delta, rb.delta) and not torch.equal(ra.delta, rc.delta)
    assert torch.count_nonzero(ra.delta) > 0 and torch.all(linf(ra.delta) <= 0.05 * (1 + 1e-6))


def test_model_mode_and_parameter_grads_untouched(setup):
    model, x, y = setup
    model.train()
    BIM(eps=0.05, eta=0.01, max_iters=3, stop="none")(model, x, y)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    BIM(eps=0.05, eta=0.01, max_iters=3, stop="none")(model, x, y)
    assert not model.training


def test_adam_sign_first_step_is_a_sign_step(setup):
    model, x, y = setup
    kw = {"eps": 10.0, "eta": 0.01, "max_iters": 1, "stop": "none"}
    a = BIM(update="adam_sign", **kw)(model, x, y)
    s = BIM(**kw)(model, x, y)
    assert torch.allclose(a.delta, s.delta, atol=1e-9)


def test_l2_direction_and_bound(setup):
    model, x, y = setup
    res = BIM(eps=0.5, eta=0.1, max_iters=3, stop="none", norm="l2")(model, x, y)
    n = res.delta.reshape(len(x), -1).norm(dim=1)
    # three unit-L2 steps of 0.1 inside a 0.5 ball: ‖δ‖ ≤ 0.3 and > 0
    assert torch.all(n <= 0.3 + 1e-5) and torch.all(n > 0)


def test_targeted_pgd_reaches_target():
    torch.manual_seed(0)
    model = tiny_regressor(seed=2, n_out=4)
    x = torch.randn(4, 1, 12, 10)
    with torch.no_grad():
        pred = model.eval()(x).argmax(1)
    target = (pred + 1) % 4
    res = TargetedPGD(eps=2.0, eta=0.05, max_iters=300)(model, x, target)
    with torch.no_grad():
        adv = model(res.x_adv).argmax(1)
    assert res.converged.any()
    assert torch.equal(adv[res.converged], target[res.converged])
    assert torch.all(linf(res.delta) <= 2.0 * (1 + 1e-6))
    assert torch.isnan(res.final_threshold).all()


def test_cw_audio_bound_box_and_target():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 3))
    x = torch.rand(3, 64) * 1.8 - 0.9
    with torch.no_grad():
        target = (model(x).argmax(1) + 1) % 3
    # ε = 0.15: samples 1 and 2 reach their target (after 21 and 23 steps), sample 0 does not
    # within the bound (its ‖δ‖∞ ends at ε); at ε = 0.1 none does
    res = CWAudio(eps=0.15, eta=0.005, max_iters=200)(model, x, target)
    assert torch.all(linf(res.delta) <= 0.15 * (1 + 1e-6))
    assert torch.all(res.x_adv.abs() <= 1.0)
    with torch.no_grad():
        adv = model(res.x_adv).argmax(1)
    assert res.converged.any() and not res.converged.all()
    assert torch.equal(adv[res.converged], target[res.converged])  # done = target predicted
    assert not (adv[~res.converged] == target[~res.converged]).any()
    assert torch.all(res.iterations[~res.converged] == 200)
    margin = CWAudio(eps=0.1, eta=0.005, max_iters=5, loss="margin")(model, x, target)
    assert torch.all(linf(margin.delta) <= 0.1 * (1 + 1e-6))


@pytest.mark.parametrize("kwargs", [{"norm": "l1"}, {"eps": -1.0}, {"eta": 0.0},
                                    {"max_iters": -1}, {"stop": "mae"}, {"update": "adam"},
                                    {"clip": "none"}, {"box": (1.0, -1.0)}])
def test_bad_settings_raise_config_error(kwargs):
    with pytest.raises(ConfigError):
        BIM(**kwargs)


def test_input_outside_box_raises(setup):
    model, x, y = setup
    with pytest.raises(ConfigError, match="box"):
        BIM(box=(-1.0, 1.0), max_iters=1)(model, x * 10, y)


def test_grid_search_choice_rule_and_curve(setup, tmp_path):
    from robustmer.attacks.search import (
        choose_setting,
        grid_search,
        plot_robustness_curve,
        robustness_curve,
    )

    model, x, y = setup
    model.eval()
    table = grid_search(model, x, y, eps=[0.0, 0.2], eta=[0.01, 0.05], iters=[3], batch_size=2,
                        stop="none")
    assert len(table) == 4 and table["chosen"].sum() == 1
    chosen = table[table["chosen"]].iloc[0]
    assert chosen["score"] == table["score"].max()
    assert chosen["eps"] == 0.2  # ε = 0 cannot change the MAE
    assert (table.loc[table["eps"] == 0.0, "delta_mae"].abs() < 1e-12).all()
    tie = table.assign(delta_mae=0.0, mean_r_adv=0.0)
    best = choose_setting(tie)
    assert (best["eps"], best["eta"]) == (0.0, 0.01)  # ties: smaller ε, then η
    curve = robustness_curve(model, x, y, [0.2, 0.0, 0.05], iters=3, stop="none")
    assert curve["eps"].tolist() == [0.0, 0.05, 0.2]
    assert curve["eta"].tolist()[1:] == pytest.approx([0.1, 0.4])  # η = 2ε by default
    assert curve["delta_mae"].iloc[0] == pytest.approx(0.0, abs=1e-12)
    assert curve["delta_mae"].iloc[2] > 0
    plot_robustness_curve(curve, tmp_path / "c.png")
    assert (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
