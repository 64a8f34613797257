"""LIME on time-frequency rectangles (SoundLIME, Mishra et al. 2017), through captum's ``Lime``.

Per clip: ``n_samples`` binary vectors over the S segments (the first all on, the rest each
segment on with probability ``p_on``); a switched-off segment's pixels are replaced by the
excerpt's mean (or its minimum, or zero); each vector is weighted by the exponential kernel on
its cosine distance ``d`` to the all-on vector, ``sqrt(exp(-d² / w²))`` with ``w = 0.25`` (the
``lime`` package's image kernel); a Ridge(α = 1) with intercept (scikit-learn, through captum's
``SkLearnRidge``) is fitted to the model's output for the target. The segment weights are the
explanation; the surrogate's weighted R² says how well it fits.

captum is enough for all of it: ``Lime`` accepts our perturbation sampler (a seeded generator
that yields the all-on vector first, which captum's default sampler does not), our similarity
kernel (captum's ``get_exp_kernel_similarity_function`` measures distances in the input space,
not between the binary vectors), batches the model calls (``perturbations_per_eval``) and does
the masking with the replacement value (``baselines``). Only the weighted R² is added here:
captum does not report it, so a thin ``SkLearnRidge`` subclass computes it after fitting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.base import Explanation, check_input, check_target, eval_mode
from robustmer.explain.registry import register
from robustmer.explain.segments import check_segments, grid_segments, paint

FILLS: tuple[str, ...] = ("mean", "min", "zero")
"""What replaces a switched-off segment: the excerpt's mean, its minimum, or zero."""


def kernel_weights(z: torch.Tensor, kernel_width: float = 0.25) -> torch.Tensor:
    """``sqrt(exp(-d² / w²))`` per row of binary ``z`` ``(N, S)``, ``d`` the cosine distance to
    the all-on vector (``1`` for the all-off vector, as scikit-learn's cosine distance gives)."""
    z = z.double()
    on = z.sum(1)
    cos = on / (torch.sqrt(on) * math.sqrt(z.shape[1])).clamp(min=1e-12)
    d = torch.where(on > 0, 1.0 - cos, torch.ones_like(cos))
    return torch.sqrt(torch.exp(-(d**2) / kernel_width**2))


def _ridge_with_r2(alpha: float) -> Any:
    """captum's ``SkLearnRidge`` that also records the weighted R² of its fit in ``.r2``."""
    from captum._utils.models.linear_model import SkLearnRidge
    from sklearn.metrics import r2_score

    class _Ridge(SkLearnRidge):  # type: ignore[misc]
        r2: float = math.nan

        def fit(self, train_data: Any, **kwargs: Any) -> Any:
            out = super().fit(train_data, **kwargs)
            xs, ys, ws = zip(*train_data, strict=True)
            # captum keeps the fitted layer on the CPU; the samples may be on the GPU
            x, y, w = (torch.cat(v).cpu() for v in (xs, ys, ws))
            with torch.no_grad():
                pred = self(x.float()).reshape(-1)
            self.r2 = float(r2_score(y.reshape(-1).double().numpy(),
                                     pred.double().numpy(),
                                     sample_weight=w.reshape(-1).double().numpy()))
            return out

    return _Ridge(alpha=alpha)


class LimeExplainer:
    """SoundLIME through captum ``Lime`` (module docstring). Seeded: the same ``seed`` draws the
    same perturbation vectors for every clip, so a clip's explanation does not depend on its
    batch neighbours. With no segment map the default grid (``grid`` = 4 frequency bands x 5
    time blocks) is used. ``extra``: ``r2`` (B,) weighted R², ``intercept`` (B,)."""

    def __init__(self, n_samples: int = 8192, *, fill: str = "mean", kernel_width: float = 0.25,
                 alpha: float = 1.0, p_on: float = 0.5, batch_size: int = 64, seed: int = 0,
                 grid: tuple[int, int] = (4, 5), name: str = "lime") -> None:
        checks = (
            ("n_samples", isinstance(n_samples, int) and not isinstance(n_samples, bool)
             and n_samples >= 2, "an int >= 2"),
            ("fill", fill in FILLS, f"one of {list(FILLS)}"),
            ("kernel_width", isinstance(kernel_width, int | float) and kernel_width > 0,
             "a positive number"),
            ("alpha", isinstance(alpha, int | float) and alpha >= 0, "a number >= 0"),
            ("p_on", isinstance(p_on, int | float) and 0 < p_on < 1, "in (0, 1)"),
            ("batch_size", isinstance(batch_size, int) and batch_size >= 1, "an int >= 1"),
            ("seed", isinstance(seed, int) and seed >= 0, "an int >= 0"),
            ("grid", isinstance(grid, tuple | list) and len(grid) == 2
             and all(isinstance(g, int) and g >= 1 for g in grid), "(n_freq, n_time) ints"),
        )
        for pname, ok, expected in checks:
            if not ok:
                raise ConfigError(f"lime: {pname} must be {expected}, got {locals()[pname]!r}")
        self.n_samples, self.fill, self.kernel_width = n_samples, fill, float(kernel_width)
        self.alpha, self.p_on, self.batch_size = float(alpha), float(p_on), batch_size
        self.seed, self.grid, self.name = seed, (int(grid[0]), int(grid[1])), name

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"method": self.name, "n_samples": self.n_samples, "fill": self.fill,
                "kernel_width": self.kernel_width, "alpha": self.alpha, "p_on": self.p_on,
                "batch_size": self.batch_size, "seed": self.seed, "grid": list(self.grid),
                "surrogate": "sklearn Ridge with intercept, sample weights = kernel"}

    def _fill_value(self, x: torch.Tensor) -> torch.Tensor:
        if self.fill == "mean":
            return x.mean()
        if self.fill == "min":
            return x.min()
        return torch.zeros((), dtype=x.dtype, device=x.device)

    def samples(self, n_seg: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The ``(n_samples, S)`` binary vectors (first all on), the same for every clip."""
        g = torch.Generator().manual_seed(self.seed)
        z = torch.bernoulli(torch.full((self.n_samples, n_seg), self.p_on,
                                       dtype=torch.float64), generator=g)
        z[0] = 1.0
        return z.to(device=device, dtype=torch.float32)

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> Explanation:
        """Explain output ``target`` of ``model`` on ``x`` with one surrogate per clip."""
        from captum.attr import Lime

        x = check_input(x)
        t = check_target(model, x, target)
        if segments is None:
            segments = grid_segments(tuple(x.shape[-2:]), *self.grid)  # type: ignore[arg-type]
        seg, n_seg = check_segments(segments.to(x.device), tuple(x.shape))
        z_all = self.samples(n_seg, x.device)
        kw = self.kernel_width

        def perturb(original: torch.Tensor, **_: Any) -> Iterator[torch.Tensor]:
            for row in z_all:
                yield row[None]

        def similarity(original: torch.Tensor, perturbed: torch.Tensor, z: torch.Tensor,
                       **_: Any) -> torch.Tensor:
            return kernel_weights(z, kw).float()

        weights, r2, intercepts = [], [], []
        with eval_mode(model):
            for i in range(x.shape[0]):
                xi = x[i: i + 1].detach()
                surrogate = _ridge_with_r2(self.alpha)
                lime = Lime(model, interpretable_model=surrogate, similarity_func=similarity,
                            perturb_func=perturb)
                mask = seg[i].reshape(1, *([1] * (x.ndim - 3)), *x.shape[-2:]).expand_as(xi)
                coef = lime.attribute(xi, target=int(t[i]), n_samples=self.n_samples,
                                      perturbations_per_eval=self.batch_size,
                                      baselines=self._fill_value(xi).item(),
                                      feature_mask=mask.contiguous(), return_input_shape=False)
                weights.append(coef.reshape(1, n_seg).float().cpu())
                r2.append(surrogate.r2)
                bias = surrogate.bias()
                intercepts.append(math.nan if bias is None else float(bias.reshape(-1)[0]))
        scores = torch.cat(weights)
        attr = paint(scores, seg.cpu(), tuple(x.shape))
        return Explanation(method=self.name, target=t.cpu(), attribution=attr,
                           segment_scores=scores,
                           extra={"r2": torch.tensor(r2, dtype=torch.float32),
                                  "intercept": torch.tensor(intercepts, dtype=torch.float32),
                                  "config": self.config()})


register("lime", LimeExplainer, view_defaults={"fill": "zero"},
         doc="SoundLIME on time-frequency segments (captum Lime, Ridge surrogate); in a waveform "
             "model's views a switched-off segment is silence (fill zero)")
