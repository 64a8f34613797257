"""Per-sample norms, the ε-ball + box projection, step directions and SNR definitions.

Everything is per sample (batch first) and honours an optional validity ``mask`` (``True`` where
a position may be perturbed, e.g. inside a clip in a zero-padded batch of waveforms): masked-out
positions never move, so a padded batch gives the same numbers as each clip on its own.
"""

from __future__ import annotations

import math

import torch

from robustmer.errors import ConfigError

NORMS: tuple[str, ...] = ("linf", "l2")


def check_norm(norm: str) -> str:
    """Validate a norm name (``linf`` or ``l2``)."""
    if norm not in NORMS:
        raise ConfigError(f"norm must be one of {list(NORMS)}, got {norm!r}")
    return norm


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1)


def linf(delta: torch.Tensor) -> torch.Tensor:
    """``max |δ|`` of each sample, ``(B,)``."""
    return _flat(delta).abs().amax(dim=1)


def l2(delta: torch.Tensor) -> torch.Tensor:
    """``‖δ‖₂`` of each sample, ``(B,)``."""
    norm: torch.Tensor = torch.linalg.vector_norm(_flat(delta), ord=2, dim=1)
    return norm


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape((-1,) + (1,) * (like.ndim - 1))


def project(delta: torch.Tensor, x: torch.Tensor, eps: float, norm: str,
            box: tuple[float, float] | None = None,
            mask: torch.Tensor | None = None) -> torch.Tensor:
    """Project ``δ`` onto ``{‖δ‖ ≤ ε} ∩ {lo ≤ x + δ ≤ hi} ∩ {δ = 0 outside mask}``.

    L∞: one clamp to ``[max(-ε, lo - x), min(ε, hi - x)]`` (exact projection onto the
    intersection, since both sets are boxes). L2: rescale onto the ball, then clamp into the box;
    with ``x`` inside the box the clamp only shrinks coordinates, so the L2 bound still holds
    (the result is feasible, not necessarily the Euclidean projection onto the intersection).
    Out of place: the reference implementation's ``delta.clamp(...)`` discarded its result.
    """
    if mask is not None:
        delta = delta * mask
    if norm == "linf":
        lo = torch.full_like(delta, -eps)
        hi = torch.full_like(delta, eps)
        if box is not None:
            lo = torch.maximum(lo, box[0] - x)
            hi = torch.minimum(hi, box[1] - x)
        return torch.clamp(delta, lo, hi)
    norms = l2(delta)
    scale = torch.where(norms > eps, eps / norms.clamp_min(torch.finfo(delta.dtype).tiny), 1.0)
    delta = delta * _per_sample(scale, delta)
    if box is not None:
        delta = torch.clamp(x + delta, box[0], box[1]) - x
    return delta


def direction(grad: torch.Tensor, norm: str) -> torch.Tensor:
    """Steepest-ascent direction of unit ``norm``: ``sign(g)`` (L∞) or ``g / ‖g‖₂`` (L2).

    A sample whose gradient is exactly zero gets a zero step (not NaN).
    """
    if norm == "linf":
        return torch.sign(grad)
    n = l2(grad)
    return grad / _per_sample(torch.where(n > 0, n, 1.0), grad)


def random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator,
                 mask: torch.Tensor | None = None) -> torch.Tensor:
    """A seeded random ``δ₀`` in the ε-ball: uniform in the L∞ box, or uniform in the L2 ball.

    Drawn on the CPU generator and moved to ``x``'s device, so the same seed gives the same start
    on every device.
    """
    shape, dtype = x.shape, x.dtype
    if norm == "linf":
        d = (torch.rand(shape, generator=generator, dtype=torch.float64) * 2 - 1) * eps
    else:
        g = torch.randn(shape, generator=generator, dtype=torch.float64)
        if mask is not None:
            g = g * mask.cpu()
        n = _flat(g).norm(dim=1).clamp_min(1e-300)
        count = (_flat(mask.cpu()).sum(dim=1) if mask is not None
                 else torch.full((shape[0],), _flat(g).shape[1]))
        u = torch.rand(shape[0], generator=generator, dtype=torch.float64)
        radius = eps * u ** (1.0 / count.clamp_min(1).double())
        d = g / _per_sample(n, g) * _per_sample(radius, g)
    d = d.to(device=x.device, dtype=dtype)
    return d * mask if mask is not None else d


def snr_db(signal: torch.Tensor, delta: torch.Tensor,
           mask: torch.Tensor | None = None) -> torch.Tensor:
    """``10·log10(‖x‖² / ‖δ‖²)`` per sample, in float64 (``inf`` where ``δ = 0``)."""
    s = signal.double()
    d = delta.double()
    if mask is not None:
        s, d = s * mask, d * mask
    ps = (_flat(s) ** 2).sum(dim=1)
    pd_ = (_flat(d) ** 2).sum(dim=1)
    with torch.no_grad():
        ratio = ps / pd_
    out = 10.0 * torch.log10(ratio)
    return torch.where(pd_ > 0, out, torch.full_like(out, math.inf))


def spectrogram_snr_db(x: torch.Tensor, delta: torch.Tensor, mean: float = 0.0,
                       std: float = 1.0) -> torch.Tensor:
    """Approximate SNR of a perturbation of a *standardised* log-spectrogram excerpt.

    Both are de-normalised first: the clean log-spectrogram is ``x·std + mean`` and the
    perturbation in that domain is ``δ·std`` (the mean cancels), then ``10·log10(‖x‖²/‖δ‖²)``.
    It is an approximation of an audio SNR because the log-spectrogram is not a linear function of
    the audio; with ``mean=0, std=1`` it is the SNR on the normalised values.
    """
    return snr_db(x.double() * std + mean, delta.double() * std)
