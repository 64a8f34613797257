"""APGD (regression, through the one loop) and the gradient-free Square Attack: bounds after every
query/step, strength against BIM, no gradient reads, seeding and batch independence."""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robustmer.attacks.apgd import APGD, checkpoints
from robustmer.attacks.bim import BIM, per_sample_mse
from robustmer.attacks.square import Square, p_schedule
from robustmer.errors import ConfigError

SETTINGS = settings(max_examples=10, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


pytestmark = pytest.mark.usefixtures("one_thread")


class Recorder(nn.Module):
    """Passes through to ``inner``; keeps every input and whether autograd was on."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []
        self.grad_mode: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        self.grad_mode.append(torch.is_grad_enabled() or x.requires_grad)
        return self.inner(x)


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, padding=1),
                         nn.Tanh(), nn.AdaptiveAvgPool2d((3, 3)), nn.Flatten(),
                         nn.Linear(36, 8)).double()


def data(seed: int, n: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 1, 12, 10, generator=g, dtype=torch.float64),
            torch.rand(n, 8, generator=g, dtype=torch.float64))


def _within(delta: torch.Tensor, eps: float, norm: str = "linf") -> bool:
    flat = delta.reshape(delta.shape[0], -1)
    n = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)
    return bool(torch.all(n <= eps * (1 + 1e-9) + 1e-12))


def test_checkpoints_follow_the_paper() -> None:
    # p: 0.22, 0.41, 0.57, 0.70, 0.80, 0.87, 0.93, 0.99 (Croce & Hein 2020, section 3.2)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(0) == [] and checkpoints(1) == []


@SETTINGS
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(1e-3, 1.0),
       iters=st.integers(0, 12), seed=st.integers(0, 50), stop=st.sampled_from(["none", "corr"]))
def test_apgd_bound_after_every_step(norm, eps, iters, seed, stop):
    x, y = data(seed, 3)
    rec = Recorder(net())
    res = APGD(eps=eps, max_iters=iters, norm=norm, stop=stop)(rec, x, y)
    for seen in rec.seen:
        assert _within(seen - x, eps, norm)
    assert _within(res.delta, eps, norm)
    assert torch.allclose(res.x_adv, x + res.delta)


@pytest.mark.parametrize(("seed", "eps"), [(0, 0.3), (2, 0.05)])
def test_apgd_at_least_as_strong_as_bim_at_equal_iterations(seed, eps):
    x, y = data(seed, 6)
    m = net(seed)
    with torch.no_grad():
        apgd = per_sample_mse(m(APGD(eps=eps, max_iters=40, stop="none")(m, x, y).x_adv), y)
        for eta in (2 * eps, eps / 4):  # the study's η/ε = 2, and a small step
            bim = per_sample_mse(m(BIM(eps=eps, eta=eta, max_iters=40, stop="none")(m, x, y)
                                   .x_adv), y)
            assert apgd.mean() >= bim.mean()


def test_apgd_batch_equals_one_at_a_time_and_returns_the_best_point():
    x, y = data(5, 3)
    m = net(5)
    att = APGD(eps=0.2, max_iters=25, stop="none")
    batch = att(m, x, y)
    for i in range(len(x)):
        one = att(m, x[i:i + 1], y[i:i + 1])
        torch.testing.assert_close(one.delta, batch.delta[i:i + 1], rtol=0, atol=1e-12)
    with torch.no_grad():  # the returned δ is the best by MSE, at least the last one's
        assert torch.all(per_sample_mse(m(batch.x_adv), y)
                         >= per_sample_mse(m(x + batch.last_delta), y) - 1e-12)


def test_apgd_refuses_foreign_step_rules():
    with pytest.raises(ConfigError, match="update"):
        APGD(update="adam_sign")
    with pytest.raises(ConfigError, match="momentum"):
        APGD(momentum=0.0)
    assert APGD(eps=0.01).eta == pytest.approx(0.02)  # η₀ = 2ε


def test_square_schedule_halves():
    assert p_schedule(0, 10000, 0.1) == 0.1
    assert p_schedule(11, 10000, 0.1) == 0.05
    assert p_schedule(9000, 10000, 0.1) == pytest.approx(0.1 / 512)


@SETTINGS
@given(eps=st.floats(1e-3, 2.0), queries=st.integers(0, 25), seed=st.integers(0, 50),
       p_init=st.floats(0.01, 1.0), stop=st.sampled_from(["none", "mse"]))
def test_square_bound_and_no_gradients_on_every_query(eps, queries, seed, p_init, stop):
    x, y = data(seed, 3)
    rec = Recorder(net())
    res = Square(eps=eps, max_iters=queries, p_init=p_init, stop=stop, seed=seed)(rec, x, y)
    assert not any(rec.grad_mode)  # never builds a graph: a score-based attack
    for seen in rec.seen:
        assert _within(seen - x, eps)
    assert _within(res.delta, eps)
    assert int(res.iterations.max()) <= queries


@SETTINGS
@given(eps=st.floats(0.01, 0.5), lengths=st.lists(st.integers(20, 60), min_size=2, max_size=3),
       seed=st.integers(0, 50))
def test_square_waveform_box_and_mask(eps, lengths, seed):
    g = torch.Generator().manual_seed(seed)
    n = max(lengths)
    x = torch.zeros(len(lengths), n, dtype=torch.float64)
    mask = torch.zeros_like(x)
    for i, k in enumerate(lengths):
        x[i, :k] = (torch.rand(k, generator=g, dtype=torch.float64) * 2 - 1) * 0.99
        mask[i, :k] = 1
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(n, 8)).double()
    y = torch.rand(len(lengths), 8, generator=g, dtype=torch.float64)
    rec = Recorder(m)
    Square(eps=eps, max_iters=15, box=(-1.0, 1.0), seed=seed)(rec, x, y, mask=mask)
    for seen in rec.seen:
        assert _within(seen - x, eps)
        assert float(seen.abs().max()) <= 1.0
        assert torch.all((seen - x)[mask == 0] == 0)


def test_square_is_seeded_and_only_improves():
    x, y = data(3, 4)
    m = net(3)
    a = Square(eps=0.1, max_iters=40, seed=1)(m, x, y)
    b = Square(eps=0.1, max_iters=40, seed=1)(m, x, y)
    c = Square(eps=0.1, max_iters=40, seed=2)(m, x, y)
    assert torch.equal(a.delta, b.delta) and not torch.equal(a.delta, c.delta)
    with torch.no_grad():
        assert torch.all(per_sample_mse(m(a.x_adv), y) >= per_sample_mse(m(x), y))
        torch.testing.assert_close(a.score, per_sample_mse(m(a.x_adv), y))


def test_registered_in_the_attack_spec():
    from robustmer.attacks.spec import AttackSpec

    a = AttackSpec.from_dict({"name": "apgd", "eps": 0.01, "iters": 20, "stop": "none"}).build()
    assert isinstance(a, APGD) and a.max_iters == 20 and a.eta == pytest.approx(0.02)
    s = AttackSpec.from_dict({"name": "square", "eps": 0.01, "iters": 30}).build()
    assert isinstance(s, Square) and s.max_iters == 30
    with pytest.raises(ConfigError, match="eta"):
        AttackSpec.from_dict({"name": "square", "eta": 0.1})
