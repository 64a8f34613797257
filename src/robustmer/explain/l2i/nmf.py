"""Sparse NMF with unit-norm dictionary columns, by multiplicative updates (torch).

Minimises ``||X - W̄H||² + mu·||H||₁`` over ``W, H >= 0`` where ``W̄`` is ``W`` with its columns
scaled to unit L2 norm (Le Roux, Weninger, Hershey, "Sparse NMF - half-baked or well done?",
MERL TR2015-023, Euclidean case). Putting the normalisation inside the objective is what makes
the L1 penalty meaningful: otherwise the fit shrinks ``H`` and grows ``W`` without limit.

Written by hand because no maintained library does it: scikit-learn's ``NMF`` has an L1 penalty
but does not keep ``W``'s columns at unit norm (so its penalty can be dodged by scaling), and it
runs on numpy only; these updates are a few matrix products and run on the GPU when the tensors
are there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from robustmer.errors import ConfigError

EPS = 1e-12


@dataclass
class NMFResult:
    """``W (F, K)`` unit-norm columns, ``H (K, N)``, objective after every iteration."""

    W: torch.Tensor
    H: torch.Tensor
    objective: list[float]


def normalise_columns(W: torch.Tensor) -> torch.Tensor:
    """``W`` with every column scaled to unit L2 norm (an all-zero column stays zero)."""
    return torch.div(W, W.norm(dim=0, keepdim=True).clamp_min(EPS))


def objective(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor, mu: float) -> float:
    """``||X - W̄H||² + mu·||H||₁`` with ``W̄ = normalise_columns(W)``."""
    R = X - normalise_columns(W) @ H
    return float((R * R).sum() + mu * H.abs().sum())


def update_h(X: torch.Tensor, Wn: torch.Tensor, H: torch.Tensor, mu: float) -> torch.Tensor:
    """One multiplicative update of ``H`` for a fixed unit-norm ``Wn`` (never increases the
    objective: the standard majorise-minimise argument of Lee and Seung with the L1 term)."""
    return H * (Wn.T @ X) / (Wn.T @ (Wn @ H) + mu).clamp_min(EPS)


def update_w(X: torch.Tensor, W: torch.Tensor, H: torch.Tensor) -> torch.Tensor:
    """One multiplicative update of ``W`` with the gradient of the normalisation folded in
    (Le Roux et al., eq. 22 for beta = 2), then the columns renormalised."""
    Wn = normalise_columns(W)
    L = Wn @ H
    XH, LH = X @ H.T, L @ H.T
    num = XH + Wn * (LH * Wn).sum(0, keepdim=True)
    den = LH + Wn * (XH * Wn).sum(0, keepdim=True)
    return normalise_columns(Wn * num / den.clamp_min(EPS))


def sparse_nmf(X: torch.Tensor, k: int, *, mu: float = 0.1, iterations: int = 200,
               seed: int = 0, W_init: torch.Tensor | None = None,
               update_dictionary: bool = True) -> NMFResult:
    """Fit ``X (F, N) ≈ W̄ H`` with ``K = k`` components; deterministic for a seed.

    With ``update_dictionary=False`` only ``H`` is fitted (``W_init`` kept): the activations of a
    fixed dictionary. Every W step is kept only if it does not increase the objective (a
    safeguard: the normalised W update is a heuristic without a monotonicity proof; on our data
    it is almost never refused), so the objective never increases.
    """
    if X.ndim != 2:
        raise ConfigError(f"sparse_nmf: X must be (features, frames), got shape {tuple(X.shape)}")
    if bool((X < 0).any()) or not bool(torch.isfinite(X).all()):
        raise ConfigError("sparse_nmf: X must be finite and non-negative")
    if k < 1 or iterations < 0 or mu < 0:
        raise ConfigError(f"sparse_nmf: need k >= 1, iterations >= 0, mu >= 0; got k={k}, "
                          f"iterations={iterations}, mu={mu}")
    g = torch.Generator(device="cpu").manual_seed(int(seed))
    F, N = X.shape
    scale = float(X.mean().clamp_min(EPS).sqrt())
    if W_init is None:
        W = torch.rand(F, k, generator=g, dtype=X.dtype).to(X.device) + 0.1
    else:
        if W_init.shape != (F, k):
            raise ConfigError(f"sparse_nmf: W_init must be ({F}, {k}), got {tuple(W_init.shape)}")
        W = W_init.to(X)
    W = normalise_columns(W)
    H = (torch.rand(k, N, generator=g, dtype=X.dtype).to(X.device) + 0.1) * scale
    history = [objective(X, W, H, mu)]
    for _ in range(iterations):
        H = update_h(X, W, H, mu)
        obj = objective(X, W, H, mu)
        if update_dictionary:
            W_new = update_w(X, W, H)
            obj_new = objective(X, W_new, H, mu)
            if obj_new <= obj:
                W, obj = W_new, obj_new
        history.append(obj)
    return NMFResult(W=W, H=H, objective=history)
