"""Property tests: the ε bound (and the audio box) hold after EVERY step, for L∞ and L2, in the
spectrogram and the waveform domain, whatever the step size, iteration count and update rule."""

from __future__ import annotations

import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from robustmer.attacks import BIM, WaveformModel, pad_batch
from robustmer.features import FrontEndConfig, LogFilteredSpectrogram, Standardizer

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


class Recorder(nn.Module):
    """Passes through to ``inner`` and keeps every input it sees (one per loop step)."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.inner(x)


def tiny_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.BatchNorm2d(3), nn.ReLU(),
                         nn.AdaptiveAvgPool2d((2, 4)), nn.Flatten(), nn.Linear(24, 8)).double()


def _within(delta: torch.Tensor, eps: float, norm: str) -> bool:
    # float64 throughout: the realised (x + δ) - x then differs from δ by ~1e-16, so the check
    # is tight (in float32 it may exceed ε by one ulp of x, see docs/attacks.md)
    flat = delta.reshape(delta.shape[0], -1).double()
    n = flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)
    return bool(torch.all(n <= eps * (1 + 1e-9) + 1e-12))


steps = st.fixed_dictionaries({
    "norm": st.sampled_from(["linf", "l2"]),
    "eps": st.floats(1e-4, 1.0),
    "eta": st.floats(1e-4, 3.0),
    "max_iters": st.integers(0, 6),
    "update": st.sampled_from(["sign", "adam_sign"]),
    "random_start": st.booleans(),
    "seed": st.integers(0, 3),
})


@SETTINGS
@given(kw=steps, data_seed=st.integers(0, 100))
def test_spectrogram_bound_after_every_step(kw, data_seed):
    g = torch.Generator().manual_seed(data_seed)
    x = torch.randn(2, 1, 8, 12, generator=g, dtype=torch.float64)
    y = torch.rand(2, 8, generator=g, dtype=torch.float64)
    rec = Recorder(tiny_net())
    res = BIM(stop="none", **kw)(rec, x, y)
    assert len(rec.seen) == kw["max_iters"] + 2  # start check + one per step + final check
    for seen in rec.seen:
        assert _within(seen - x, kw["eps"], kw["norm"])
    assert _within(res.delta, kw["eps"], kw["norm"])
    assert _within(res.last_delta, kw["eps"], kw["norm"])


@SETTINGS
@given(kw=steps, lengths=st.lists(st.integers(2200, 5000), min_size=2, max_size=3),
       data_seed=st.integers(0, 100))
def test_waveform_bound_box_and_mask_after_every_step(kw, lengths, data_seed):
    g = torch.Generator().manual_seed(data_seed)
    waves = [(torch.rand(n, generator=g, dtype=torch.float64) * 2 - 1) * 0.999 for n in lengths]
    x, mask = pad_batch(waves, dtype=torch.float64)
    frontend = LogFilteredSpectrogram(FrontEndConfig(), dtype=torch.float64)
    n_frames = frontend.num_frames(min(lengths))
    wm = WaveformModel(tiny_net(), frontend, Standardizer(0.5, 0.3),
                       torch.arange(min(3, n_frames)))
    rec = Recorder(wm)
    y = torch.rand(len(lengths), 8, generator=g, dtype=torch.float64)
    res = BIM(stop="none", box=(-1.0, 1.0), **kw)(rec, x, y, mask=mask)
    for seen in rec.seen:
        d = seen - x
        assert _within(d, kw["eps"], kw["norm"])
        assert bool(torch.all(seen.abs() <= 1.0))
        assert bool(torch.all(d[~mask] == 0))  # nothing past each clip's end
    assert bool(torch.all(res.delta[~mask] == 0))
    assert _within(res.delta, kw["eps"], kw["norm"])
