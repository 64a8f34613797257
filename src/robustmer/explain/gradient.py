"""The gradient family through captum: Saliency (signed gradient), Guided Backprop, Integrated
Gradients, each optionally wrapped by captum's ``NoiseTunnel`` as SmoothGrad, SmoothGrad² or
VarGrad.

Nothing here re-derives an attribution: captum computes them all; this module only validates
inputs, fixes the settings, seeds the noise and aggregates pixels to segments.

Guided Backprop and in-place ReLUs: captum's ``GuidedBackprop`` puts full backward hooks on
``nn.ReLU`` modules, and robustmer's backbone uses ``nn.ReLU(inplace=True)``. With torch 2.x
this works and gives exactly the guided gradient (clamped-positive upstream gradient times the
ReLU's input mask): tests/test_explain_methods.py checks it against a non-in-place copy of the
model and against a hand-written guided-ReLU backward, so no copy of the model is made here.
Only ``nn.ReLU`` modules are modified; a model calling ``F.relu`` gets plain gradients there.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.base import Explanation, check_input, check_target, eval_mode
from robustmer.explain.registry import register
from robustmer.explain.segments import AGGREGATIONS, aggregate

BASES: tuple[str, ...] = ("saliency", "gbp", "ig")
"""Base gradient methods: signed gradient, Guided Backprop, Integrated Gradients."""
NOISES: tuple[str, ...] = ("smoothgrad", "smoothgrad_sq", "vargrad")
"""NoiseTunnel wrappers (captum's ``nt_type`` names)."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return int(value)


class GradientExplainer:
    """One captum gradient method, optionally noise-wrapped.

    ``base``: ``saliency`` (captum ``Saliency(abs=False)``: the signed gradient), ``gbp``
    (``GuidedBackprop``) or ``ig`` (``IntegratedGradients`` from a zero baseline with
    ``n_steps`` steps, captum's default Gauss-Legendre rule). ``noise``: ``None``,
    ``smoothgrad`` (mean attribution over noisy copies), ``smoothgrad_sq`` (mean of squares) or
    ``vargrad`` (variance), over ``nt_samples`` copies ``x + N(0, σ²)`` with ``σ = sigma ·
    (max(x) − min(x))`` of each clip (SmoothGrad's "noise level" relative to the input range).

    Noise is drawn from ``seed`` separately for each clip (with torch's RNG forked, so the
    caller's RNG is untouched), so a clip's explanation does not depend on its batch
    neighbours; a constant clip, which has no range, gets ``σ = sigma``. Model calls are batched
    over the noisy copies (``batch_size`` at a time) and, without noise, over the clips.
    ``segment_scores`` aggregate the attribution with ``aggregation``.
    """

    def __init__(self, base: str = "saliency", noise: str | None = None, *, n_steps: int = 50,
                 nt_samples: int = 25, sigma: float = 0.15, seed: int = 0,
                 aggregation: str = "mean", batch_size: int = 32,
                 name: str | None = None) -> None:
        if base not in BASES:
            raise ConfigError(f"gradient method must be one of {list(BASES)}, got {base!r}")
        if noise is not None and noise not in NOISES:
            raise ConfigError(f"noise must be one of {list(NOISES)} or None, got {noise!r}")
        if aggregation not in AGGREGATIONS:
            raise ConfigError(f"aggregation must be one of {list(AGGREGATIONS)}, "
                              f"got {aggregation!r}")
        if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not sigma > 0:
            raise ConfigError(f"sigma must be a positive number, got {sigma!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative int, got {seed!r}")
        self.base, self.noise = base, noise
        self.n_steps = _positive_int("n_steps", n_steps)
        self.nt_samples = _positive_int("nt_samples", nt_samples)
        self.batch_size = _positive_int("batch_size", batch_size)
        self.sigma, self.seed, self.aggregation = float(sigma), int(seed), aggregation
        self.name = name or (base if noise is None else f"{base}+{noise}")

    def config(self) -> dict[str, Any]:
        """JSON-able settings (only those that apply to this method)."""
        cfg: dict[str, Any] = {"method": self.name, "base": self.base, "noise": self.noise,
                               "aggregation": self.aggregation, "batch_size": self.batch_size}
        if self.base == "ig":
            cfg.update(n_steps=self.n_steps, baseline="zeros")
        if self.noise is not None:
            cfg.update(nt_samples=self.nt_samples, sigma=self.sigma, seed=self.seed)
        return cfg

    def _method(self, model: nn.Module) -> Any:
        from captum.attr import GuidedBackprop, IntegratedGradients, Saliency

        return {"saliency": Saliency, "gbp": GuidedBackprop,
                "ig": IntegratedGradients}[self.base](model)

    def _kwargs(self) -> dict[str, Any]:
        if self.base == "saliency":
            return {"abs": False}
        if self.base == "ig":
            return {"n_steps": self.n_steps, "internal_batch_size": self.batch_size}
        return {}

    def attribute(self, model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Pixel attributions ``(B, ...)`` for checked ``x`` and ``(B,)`` targets."""
        from captum.attr import NoiseTunnel

        method = self._method(model)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*backward hooks on ReLU.*")
            warnings.filterwarnings("ignore", message=".*did not already require gradients.*")
            if self.noise is None:
                attr: torch.Tensor = method.attribute(x.detach().clone().requires_grad_(True),
                                                      target=target, **self._kwargs())
                return attr.detach()
            tunnel = NoiseTunnel(method)
            # IG already batches its steps; one noisy copy per IG call keeps memory bounded
            per_call = 1 if self.base == "ig" else min(self.batch_size, self.nt_samples)
            out = []
            devices = [x.device] if x.device.type == "cuda" else []
            for i in range(x.shape[0]):
                xi = x[i: i + 1].detach().clone()
                # a constant clip has no range: then sigma is the absolute noise level
                stdev = self.sigma * float(xi.max() - xi.min()) or self.sigma
                xi.requires_grad_(True)
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(self.seed)
                    out.append(tunnel.attribute(
                        xi, nt_type=self.noise, nt_samples=self.nt_samples,
                        nt_samples_batch_size=per_call, stdevs=stdev,
                        target=target[i: i + 1], **self._kwargs()).detach())
            return torch.cat(out)

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> Explanation:
        """Explain output ``target`` of ``model`` on ``x``; see the class docstring."""
        x = check_input(x)
        t = check_target(model, x, target)
        if segments is not None:  # validate before the (costly) attribution
            from robustmer.explain.segments import check_segments

            check_segments(segments, tuple(x.shape))
        with eval_mode(model):
            attr = self.attribute(model, x, t).float().cpu()
        scores = None if segments is None else aggregate(attr, segments.cpu(), self.aggregation)
        return Explanation(method=self.name, target=t.cpu(), attribution=attr,
                           segment_scores=scores, extra={"config": self.config()})


def settings_of(base: str, noise: str | None) -> tuple[str, ...]:
    """The settings a gradient method uses: every one takes ``aggregation`` and ``batch_size``,
    Integrated Gradients ``n_steps``, a noise wrapper ``nt_samples``, ``sigma`` and ``seed``."""
    return ("aggregation", "batch_size", *(("n_steps",) if base == "ig" else ()),
            *(("nt_samples", "sigma", "seed") if noise else ()))


NOISE_DOCS: dict[str | None, str] = {
    None: "", "smoothgrad": " + SmoothGrad (mean over noisy copies)",
    "smoothgrad_sq": " + SmoothGrad² (mean of squares over noisy copies)",
    "vargrad": " + VarGrad (variance over noisy copies)"}
BASE_DOCS: dict[str, str] = {
    "saliency": "signed gradient (captum Saliency)", "gbp": "Guided Backprop (captum)",
    "ig": "Integrated Gradients from a zero baseline (captum)"}


def _register_builtins() -> None:
    """``saliency``, ``gbp``, ``ig``, each ``+smoothgrad`` / ``+smoothgrad_sq`` / ``+vargrad``,
    and the bare noise names (``smoothgrad`` = ``saliency+smoothgrad``, their usual meaning)."""
    methods = [(b, None) for b in BASES] + [(b, n) for b in BASES for n in NOISES]
    for base, noise in methods:
        register(base if noise is None else f"{base}+{noise}", GradientExplainer,
                 fixed={"base": base, "noise": noise}, settings=settings_of(base, noise),
                 doc=BASE_DOCS[base] + NOISE_DOCS[noise])
    for noise in NOISES:
        register(noise, GradientExplainer, fixed={"base": "saliency", "noise": noise},
                 settings=settings_of("saliency", noise), doc=f"= saliency+{noise}")


_register_builtins()
