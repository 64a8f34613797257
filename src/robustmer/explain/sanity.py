"""Sanity checks for saliency maps (Adebayo et al., NeurIPS 2018).

An explanation that does not change when the model is destroyed cannot explain the model.

- **Model-parameter randomisation, cascading**: re-initialise the parametrised layers from the
  top (output) layer down, one more per step (:func:`cascading_randomisation`), explain the same
  inputs with each copy and compare with the original maps (:func:`cascade_similarity`).
- **Data randomisation**: a model trained on labels shuffled at random (:func:`shuffled_labels`;
  the training is the caller's) must be explained differently from the real one
  (:func:`compare_explanations`).
- **Similarity**: per clip, the Spearman rank correlation of the absolute and of the signed
  attribution maps (:func:`map_similarity`; ``scipy.stats.spearmanr``).
- **Verdict** (:func:`randomisation_verdict`): an explainer fails when, with every layer
  randomised, the median over clips of the Spearman correlation of ``|attribution|`` stays above
  ``threshold`` (default 0.5): its maps barely depend on the weights.
- **The reference that must fail** (:class:`InputExplainer`): its map is the input itself, so
  it ignores the model; the checks are run on it beside every explainer.

Layers (:func:`parametrised_layers`): the modules that hold parameters of their own (Conv,
Linear, BatchNorm, ...), in forward order (traced with forward pre-hooks on one input; without
an input, registration order). Normalisation layers (BatchNorm, GroupNorm, LayerNorm,
InstanceNorm) follow ``batchnorm``: ``"with_previous"`` (default) re-initialises a norm layer
together with the Conv/Linear just before it, as one layer (it normalises that layer's output,
and a trained normalisation on a random layer would mostly rescale it arbitrarily);
``"separate"`` makes it a step of its own; ``"keep"`` never touches it. Re-initialising uses the
module's own ``reset_parameters()`` (BatchNorm: weight 1, bias 0, running mean 0 and variance
1, i.e. a fresh layer), under a torch RNG seeded from ``(seed, layer position)`` and forked, so
the caller's RNG is untouched and a layer gets the same weights in every step and run. A module
without ``reset_parameters()`` has each own parameter redrawn from ``N(0, s²)``, ``s`` the
parameter's standard deviation (1 for a single value). Never imports train/, data/, study/ or
the CLI.
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from robustmer.errors import ConfigError
from robustmer.explain.base import Explanation, eval_mode
from robustmer.explain.segments import aggregate

INPUT = "input"
"""The reference explainer that ignores the model: its map is the input (the sanity checks
must flag it)."""


class InputExplainer:
    """The model-ignoring reference: ``attribution = x`` (segment scores: the segments' mean
    ``|x|``). Adebayo et al.'s edge detector plays this role: a map that looks plausible and
    says nothing about the model."""

    name = INPUT

    def __call__(self, model: nn.Module, x: torch.Tensor, target: int | torch.Tensor,
                 segments: torch.Tensor | None = None) -> Explanation:
        """The input as its own explanation."""
        attr = x.detach().float().cpu()
        scores = None if segments is None else aggregate(attr, segments.cpu(), "mean_abs")
        t = torch.as_tensor(target).reshape(-1).expand(x.shape[0]).clone()
        return Explanation(method=self.name, target=t, attribution=attr, segment_scores=scores)

    def config(self) -> dict[str, Any]:
        """JSON-able settings."""
        return {"method": self.name, "attribution": "the input itself"}


BATCHNORM_RULES: tuple[str, ...] = ("with_previous", "separate", "keep")
"""How normalisation layers are treated by :func:`parametrised_layers` (see the module doc)."""

NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.InstanceNorm1d,
    nn.InstanceNorm2d, nn.InstanceNorm3d, nn.GroupNorm, nn.LayerNorm)
"""Normalisation layers (BatchNorm*, InstanceNorm*, GroupNorm, LayerNorm)."""

CASCADE_COLUMNS: tuple[str, ...] = ("layer", "step", "clip", "spearman_abs", "spearman_signed")
""":func:`cascade_similarity`: ``step`` k has the top k layers re-initialised, ``layer`` the one
added at that step (its qualified module name), ``clip`` the clip id."""

DEFAULT_THRESHOLD = 0.5


@dataclass(frozen=True)
class Layer:
    """One re-initialisation unit: ``name`` (the main module's qualified name), ``modules`` (the
    qualified names re-initialised together) and ``position`` (its index in forward order)."""

    name: str
    modules: tuple[str, ...]
    position: int


def _own_params(module: nn.Module) -> bool:
    return next(module.parameters(recurse=False), None) is not None


def _forward_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Qualified names of the modules with own parameters, in the order of their first call."""
    order: list[str] = []
    handles = []
    for name, module in model.named_modules():
        if _own_params(module):
            def hook(_m: nn.Module, _args: Any, name: str = name) -> None:
                if name not in order:
                    order.append(name)
            handles.append(module.register_forward_pre_hook(hook))
    try:
        with torch.no_grad(), eval_mode(model):
            model(x)
    finally:
        for h in handles:
            h.remove()
    return order


def parametrised_layers(model: nn.Module, x: torch.Tensor | None = None,
                        batchnorm: str = "with_previous") -> list[Layer]:
    """The model's layers in forward order (bottom first), grouped by the ``batchnorm`` rule.

    With ``x`` the order is traced (one no-grad eval-mode pass; modules never called are left
    out, they cannot change the output); without it, registration order is used.
    """
    if batchnorm not in BATCHNORM_RULES:
        raise ConfigError(f"batchnorm must be one of {list(BATCHNORM_RULES)}, got {batchnorm!r}")
    modules = dict(model.named_modules())
    names = (_forward_order(model, x) if x is not None
             else [n for n, m in modules.items() if _own_params(m)])
    groups: list[list[str]] = []
    for name in names:
        is_norm = isinstance(modules[name], NORM_TYPES)
        if is_norm and batchnorm == "keep":
            continue
        if is_norm and batchnorm == "with_previous" and groups \
                and not isinstance(modules[groups[-1][0]], NORM_TYPES):
            groups[-1].append(name)
        else:
            groups.append([name])
    if not groups:
        raise ConfigError("the model has no layers with parameters to randomise")
    return [Layer(name=g[0], modules=tuple(g), position=i) for i, g in enumerate(groups)]


def _layer_seed(seed: int, position: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(position)]).generate_state(1)[0])


def reinitialise(model: nn.Module, layer: Layer, seed: int = 0) -> None:
    """Re-initialise ``layer``'s modules of ``model`` in place (seeded; see the module doc)."""
    modules = dict(model.named_modules())
    for name in layer.modules:
        if name not in modules:
            raise ConfigError(f"layer {name!r} is not a module of this model")
        module = modules[name]
        devices = sorted({p.device.index or 0 for p in module.parameters(recurse=False)
                          if p.device.type == "cuda"})
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.manual_seed(_layer_seed(seed, layer.position))
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
            else:
                for p in module.parameters(recurse=False):
                    s = float(p.std()) if p.numel() > 1 else 1.0
                    p.normal_(0.0, s if math.isfinite(s) and s > 0 else 1.0)


def cascading_randomisation(model: nn.Module, *, seed: int = 0, n_layers: int | None = None,
                            x: torch.Tensor | None = None,
                            batchnorm: str = "with_previous",
                            ) -> Iterator[tuple[int, Layer, nn.Module]]:
    """Yield ``(step, layer, copy)`` for ``step = 1..n_layers`` (default: all layers): a deep
    copy of ``model`` with its top ``step`` layers re-initialised, ``layer`` the one added at
    this step. ``model`` itself is never modified; every copy is independent."""
    layers = parametrised_layers(model, x, batchnorm)
    n = len(layers) if n_layers is None else n_layers
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(layers):
        raise ConfigError(f"n_layers must be an int in 1..{len(layers)}, got {n_layers!r}")
    current = copy.deepcopy(model)
    for step, layer in enumerate(reversed(layers[-n:]), start=1):
        reinitialise(current, layer, seed)
        yield step, layer, copy.deepcopy(current)


# -- similarity ---------------------------------------------------------------------------------

def _flat(a: torch.Tensor, name: str) -> np.ndarray:
    if not isinstance(a, torch.Tensor) or a.ndim < 2:
        raise ConfigError(f"{name} must be a (B, ...) tensor, got "
                          f"{getattr(a, 'shape', type(a).__name__)}")
    return a.detach().to("cpu", torch.float64).reshape(a.shape[0], -1).numpy()


def spearman(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """``(B,)`` Spearman rank correlation of each clip's maps (flattened); NaN where either map
    is constant (a rank correlation is undefined there)."""
    fa, fb = _flat(a, "a"), _flat(b, "b")
    if fa.shape != fb.shape:
        raise ConfigError(f"maps to compare must have the same shape, got {tuple(a.shape)} and "
                          f"{tuple(b.shape)}")
    out = np.full(fa.shape[0], np.nan)
    for i in range(fa.shape[0]):
        if np.ptp(fa[i]) == 0 or np.ptp(fb[i]) == 0:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", stats.ConstantInputWarning)
            out[i] = float(stats.spearmanr(fa[i], fb[i]).statistic)
    return out


def map_similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, np.ndarray]:
    """``{"spearman_abs", "spearman_signed"}``, each ``(B,)``: rank correlation of ``|a|`` with
    ``|b|`` and of ``a`` with ``b``."""
    return {"spearman_abs": spearman(a.abs(), b.abs()), "spearman_signed": spearman(a, b)}


ExplainFn = Callable[..., Any]
"""``explainer(model, x, target, segments)`` returning an object with ``.attribution``
(``robustmer.explain.Explainer``)."""


def _attribution(explainer: ExplainFn, model: nn.Module, x: torch.Tensor,
                 target: int | torch.Tensor, segments: torch.Tensor | None) -> torch.Tensor:
    result = explainer(model, x, target, segments)
    attr = getattr(result, "attribution", None)
    if not isinstance(attr, torch.Tensor) or attr.shape[0] != x.shape[0]:
        raise ConfigError(f"the explainer must return an object with a (B, ...) tensor "
                          f".attribution for B = {x.shape[0]}, got "
                          f"{getattr(attr, 'shape', type(attr).__name__)}")
    return attr.detach()


def _clip_ids(clip_ids: Sequence[str] | None, n: int) -> list[str]:
    ids = [str(c) for c in (clip_ids if clip_ids is not None else range(n))]
    if len(ids) != n:
        raise ConfigError(f"clip_ids: expected {n} ids, got {len(ids)}")
    return ids


def cascade_similarity(explainer: ExplainFn, model: nn.Module, x: torch.Tensor,
                       target: int | torch.Tensor, segments: torch.Tensor | None = None, *,
                       clip_ids: Sequence[str] | None = None, seed: int = 0,
                       n_layers: int | None = None,
                       batchnorm: str = "with_previous") -> pd.DataFrame:
    """Explain ``x`` with ``model`` and with each cascading copy (same ``target``), and compare
    the maps: one row per step x clip (:data:`CASCADE_COLUMNS`). Layer order is traced on
    ``x[:1]``."""
    ids = _clip_ids(clip_ids, x.shape[0])
    original = _attribution(explainer, model, x, target, segments)
    rows = []
    for step, layer, randomised in cascading_randomisation(
            model, seed=seed, n_layers=n_layers, x=x[:1], batchnorm=batchnorm):
        sim = map_similarity(original, _attribution(explainer, randomised, x, target, segments))
        for i, cid in enumerate(ids):
            rows.append({"layer": layer.name, "step": step, "clip": cid,
                         "spearman_abs": sim["spearman_abs"][i],
                         "spearman_signed": sim["spearman_signed"][i]})
    return pd.DataFrame(rows, columns=list(CASCADE_COLUMNS))


@dataclass(frozen=True)
class SanityVerdict:
    """:func:`randomisation_verdict`'s answer: ``passed``, the ``median`` similarity over the
    ``n_clips`` clips (NaN dropped) at ``step``, and the rule (``column``, ``threshold``)."""

    passed: bool
    median: float
    threshold: float
    column: str
    step: int
    n_clips: int


def randomisation_verdict(table: pd.DataFrame, threshold: float = DEFAULT_THRESHOLD,
                          column: str = "spearman_abs", step: int | None = None
                          ) -> SanityVerdict:
    """Pass/fail of a :func:`cascade_similarity` (or :func:`compare_explanations`) table.

    The explainer fails when the median over clips of ``column`` at ``step`` (default: the last,
    every layer randomised; a table without ``step`` is used whole) is above ``threshold``: its
    maps barely changed. A median that cannot be computed (every map constant) does not pass.
    """
    if column not in table.columns:
        raise ConfigError(f"column {column!r} is not in the table ({list(table.columns)})")
    if not isinstance(threshold, int | float) or not -1.0 <= threshold <= 1.0:
        raise ConfigError(f"threshold must be a correlation in [-1, 1], got {threshold!r}")
    rows = table
    chosen = -1
    if "step" in table.columns and len(table):
        chosen = int(table["step"].max()) if step is None else int(step)
        rows = table[table["step"] == chosen]
        if rows.empty:
            raise ConfigError(f"step {step} is not in the table (steps "
                              f"{sorted(table['step'].unique().tolist())})")
    values = rows[column].dropna().to_numpy(dtype=float)
    median = float(np.median(values)) if values.size else float("nan")
    return SanityVerdict(passed=bool(median <= threshold), median=median,
                         threshold=float(threshold), column=column, step=chosen,
                         n_clips=int(values.size))


# -- data randomisation -------------------------------------------------------------------------

def shuffled_labels(labels: Any, seed: int = 0) -> Any:
    """The labels in a seeded random order (the data-randomisation test's training labels).

    A ``pandas.Series`` keeps its index (so clip ids get another clip's label); anything else
    array-like comes back as a numpy array. The same ``seed`` gives the same permutation for the
    same length.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    if isinstance(labels, pd.Series):
        return pd.Series(labels.to_numpy()[rng.permutation(len(labels))], index=labels.index,
                         name=labels.name)
    values = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) \
        else np.asarray(labels)
    if values.ndim < 1:
        raise ConfigError(f"labels must be a sequence, got {labels!r}")
    return values[rng.permutation(values.shape[0])]


def compare_explanations(explainer: ExplainFn, model_a: nn.Module, model_b: nn.Module,
                         x: torch.Tensor, target: int | torch.Tensor,
                         segments: torch.Tensor | None = None, *,
                         clip_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """Explain ``x`` for output ``target`` with two models (e.g. trained on real and on shuffled
    labels) and compare the maps: one row per clip, ``clip``, ``spearman_abs``,
    ``spearman_signed`` (read with :func:`randomisation_verdict`)."""
    ids = _clip_ids(clip_ids, x.shape[0])
    sim = map_similarity(_attribution(explainer, model_a, x, target, segments),
                         _attribution(explainer, model_b, x, target, segments))
    return pd.DataFrame({"clip": ids, **sim}, columns=["clip", "spearman_abs",
                                                       "spearman_signed"])


def sanity_summary(cascade: pd.DataFrame, data: pd.DataFrame,
                   threshold: float = 0.5) -> pd.DataFrame:
    """Per method: the median Spearman correlation of ``|map|`` with every layer re-initialised
    (cascade's last step) and after data randomisation, each with its verdict
    (``randomisation_verdict``: passes when the median is at most ``threshold``) and N."""
    rows = []
    methods = list(dict.fromkeys([*cascade.get("method", pd.Series(dtype=str)).astype(str),
                                  *data.get("method", pd.Series(dtype=str)).astype(str)]))
    for m in methods:
        row: dict[str, Any] = {"method": m}
        c = cascade[cascade["method"] == m] if len(cascade) else cascade
        if len(c):
            v = randomisation_verdict(c.drop(columns=["method"]), threshold)
            row.update(cascade_median=v.median, cascade_passed=v.passed, cascade_n=v.n_clips,
                       cascade_steps=v.step)
        d = data[data["method"] == m] if len(data) else data
        if len(d):
            v = randomisation_verdict(d.drop(columns=["method"]), threshold)
            row.update(data_median=v.median, data_passed=v.passed, data_n=v.n_clips)
        rows.append(row)
    return pd.DataFrame(rows)
