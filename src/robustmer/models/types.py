"""Model types as objects: one registry of what the stages need to know about a kind of model.

A :class:`ModelType` declares its task (``regression`` over named outputs or ``classification``
over named classes), whether it learns concepts through its bottleneck, whether it is trained
adversarially or trained at all, its input contract (robustmer's standardised spectrogram
excerpt, or mono audio at its own sample rate), how to build and rebuild it, and the loss,
validation score and history fields of its training. The study's model list, the CLI's
``--model`` choices and the results store's row order are read from :data:`REGISTRY`, so adding
a type is one object and one :func:`register` call, and no module outside ``models/`` branches
on a model's name or kind.

Built in: the paper's A2E, A2B2E, A2M2E (concept bottleneck), aA2E / aA2B2E (adversarially
trained) and a classifier head. A user's own model enters as a :class:`FactoryType`
(``robustmer.models.factory``): a Python file or import path plus a factory function.

The loss is written once for a stack of S seeds (``(S, B, n)`` outputs; the solo run is S = 1),
with the very operations of the solo recipe, so training one seed or S stacked seeds computes
each seed's gradient the same way (docs/training.md, "Batched seeds").

Examples:
    >>> import torch
    >>> from robustmer.models.types import get_type, names, rebuild
    >>> names("regression")
    ['A2E', 'A2B2E', 'A2M2E', 'aA2E', 'aA2B2E']
    >>> a2m2e = get_type("a2m2e")  # any case
    >>> a2m2e.name, a2m2e.task, a2m2e.needs_concepts, a2m2e.input_spec()
    ('A2M2E', 'regression', True, {'kind': 'spectrogram'})
    >>> model, config = a2m2e.create(n_outputs=8, n_concepts=7, settings={"width": 0.0625})
    >>> out = a2m2e.forward(model.eval(), torch.zeros(2, 1, 313, 149))
    >>> tuple(out["output"].shape), tuple(out["bottleneck"].shape)
    ((2, 8), (2, 7))
    >>> type(rebuild(config)).__name__  # what a checkpoint records rebuilds the network
    'MERModel'
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from robustmer.errors import ConfigError
from robustmer.features import DOMAINS
from robustmer.models.backbone import DROPOUT
from robustmer.models.heads import BOTTLENECK_KINDS, build_model

TASKS: tuple[str, ...] = ("regression", "classification")
INPUT_KINDS: tuple[str, ...] = DOMAINS
"""A model's input is a spectrogram excerpt or audio samples (``robustmer.features.DOMAINS``)."""
DEFAULT_BOTTLENECK = 7
"""Bottleneck width when the data has no concepts (the paper's 7 mid-level concepts)."""
SPECTROGRAM_INPUT: dict[str, Any] = {"kind": "spectrogram"}


@dataclass(frozen=True)
class ModelType:
    """What the stages need to know about one kind of model (see the module docstring).

    Subclasses supply :meth:`build`; the task-generic parts (``forward``, ``loss``, ``score``,
    ``history``) are here, driven by ``task`` and ``needs_concepts``."""

    name: str
    task: str = "regression"
    needs_concepts: bool = False
    adversarial: bool = False
    trainable: bool = True
    doc: str = ""

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in " /\\,\"'\n"):
            raise ConfigError(f"model type name must be non-empty, without spaces, slashes, "
                              f"commas or quotes, found {self.name!r}")
        if self.task not in TASKS:
            raise ConfigError(f"model type {self.name}: task must be one of {list(TASKS)}, "
                              f"found {self.task!r}")

    # -- what a subclass supplies ---------------------------------------------------------------
    def build(self, n_outputs: int, n_concepts: int = 0,
              settings: Mapping[str, Any] | None = None) -> nn.Module:
        """A freshly initialised model (seed first: the init draws from torch's global RNG)
        whose output is ``(B, n_outputs)`` values or logits; its ``config`` attribute (set
        here when missing) is the JSON-able recipe :func:`rebuild` takes."""
        raise NotImplementedError

    def recipe(self, model: nn.Module, n_outputs: int, n_concepts: int = 0,
               settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-able record :func:`rebuild` takes (a robustmer model's ``config``)."""
        return dict(model.config)  # type: ignore[arg-type]

    def create(self, n_outputs: int, n_concepts: int = 0,
               settings: Mapping[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
        """:meth:`build` and :meth:`recipe` in one call: the model and how to rebuild it."""
        model = self.build(n_outputs, n_concepts, settings)
        return model, self.recipe(model, n_outputs, n_concepts, settings)

    def input_spec(self) -> dict[str, Any]:
        """The input contract: ``{"kind": "spectrogram"}`` or ``{"kind": "waveform",
        "sample_rate": SR, "seconds": S}``."""
        return dict(SPECTROGRAM_INPUT)

    @property
    def input_kind(self) -> str:
        """``spectrogram`` or ``waveform``."""
        return str(self.input_spec()["kind"])

    def settings_keys(self) -> tuple[str, ...]:
        """The settings :meth:`build` accepts (a study YAML's ``train.width`` ...)."""
        return ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description (recorded in a study's config.yaml)."""
        return {"name": self.name, "task": self.task, "needs_concepts": self.needs_concepts,
                "adversarial": self.adversarial, "trainable": self.trainable,
                "input": self.input_spec()}

    # -- training, the same for every type of a task ---------------------------------------------
    def forward(self, model: nn.Module, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """``{"output": values or logits, "bottleneck": concepts or None}``: a robustmer model's
        ``forward_all``, else the module's plain output."""
        forward_all = getattr(model, "forward_all", None)
        if callable(forward_all):
            return forward_all(x)  # type: ignore[no-any-return]
        return {"output": model(x), "bottleneck": None}

    def loss(self, out: Mapping[str, torch.Tensor | None], batch: Mapping[str, Any],
             target_weight: float = 0.5) -> torch.Tensor:
        """Per-seed training loss ``(S,)`` of outputs ``(S, B, n)`` and targets ``(S, B, ...)``.

        Regression: MSE on ``targets``; with ``needs_concepts``, ``w·MSE`` on the targets plus
        ``(1-w)·MSE`` on the bottleneck against ``concepts`` of the samples whose
        ``concept_mask`` is set (``w = target_weight``, the paper's 0.5; a seed with none gets
        0 with zero gradient). Classification: cross-entropy on ``label`` (entries -1 skipped).
        Each seed's gradient is the one the solo recipe's mean-reduced losses give (elementwise
        ``2(ŷ-y)/N`` scaled by the weight), so S = 1 is the solo run."""
        output = out["output"]
        assert output is not None
        if self.task == "classification":
            labels = batch["label"].long()
            keep = labels >= 0
            ce = F.cross_entropy(output.float().flatten(0, 1), labels.clamp(min=0).flatten(),
                                 reduction="none").view(labels.shape)
            return _masked_mean(ce, keep)
        loss = F.mse_loss(output.float(), batch["targets"].float(),
                          reduction="none").mean(dim=(1, 2))
        if not self.needs_concepts:
            return loss
        bott = out["bottleneck"]
        assert bott is not None
        mask = batch["concept_mask"].bool().reshape(bott.shape[0], bott.shape[1])
        sq = F.mse_loss(bott.float(), batch["concepts"].float(), reduction="none")
        n = mask.sum(dim=1) * sq.shape[2]
        picked = (sq * mask[:, :, None].to(sq.dtype)).sum(dim=(1, 2))
        concept = torch.where(n > 0, picked / n.clamp(min=1).to(sq.dtype), sq.sum(dim=(1, 2)) * 0)
        return target_weight * loss + (1.0 - target_weight) * concept

    def score(self, ev: Mapping[str, Any]) -> float:
        """The early-stopping score of a validation result (``evaluate_model``): accuracy
        (classification) or the targets' mean r, plus the concepts' mean r where a
        concept-trained bottleneck has annotated validation clips. Undefined -> -inf."""
        if self.task == "classification":
            score = ev["accuracy"]
        else:
            score = ev["metrics"]["mean_r"]
            if self.needs_concepts and ev.get("concept_metrics") is not None:
                score += ev["concept_metrics"]["mean_r"]
        return float(score) if math.isfinite(score) else -math.inf

    def history(self, ev: Mapping[str, Any]) -> dict[str, Any]:
        """The validation fields of one ``history.csv`` row."""
        if self.task == "classification":
            return {"val_accuracy": ev["accuracy"]}
        record = {"val_mean_r": ev["metrics"]["mean_r"], "val_mae": ev["metrics"]["mae"]}
        if ev.get("concept_metrics") is not None:
            record["val_concept_mean_r"] = ev["concept_metrics"]["mean_r"]
        return record


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per row of ``(S, B)`` values, the mean over ``mask``; 0 (with zero gradient) for a row
    with no selected entry."""
    n = mask.sum(dim=1)
    picked = torch.where(mask, values, torch.zeros_like(values)).sum(dim=1)
    return torch.where(n > 0, picked / n.clamp(min=1), values.sum(dim=1) * 0.0)


@dataclass(frozen=True)
class MERType(ModelType):
    """A model of the paper's VGG-style family (``robustmer.models.heads``): ``kind`` is the
    head (``a2e``, ``a2b2e``, ``a2m2e``, ``classifier``); settings ``width`` and ``dropout``."""

    kind: str = "a2e"
    DEFAULT_SETTINGS: ClassVar[Mapping[str, float]] = MappingProxyType(
        {"width": 1.0, "dropout": DROPOUT})
    """The settings a model of this family is built with unless given: full width and the
    paper's dropout (a study's ``train.width`` / ``train.dropout`` default to these)."""

    def build(self, n_outputs: int, n_concepts: int = 0,
              settings: Mapping[str, Any] | None = None) -> nn.Module:
        """``build_model(kind, ...)`` with the data's numbers of outputs and concepts."""
        s = {**self.DEFAULT_SETTINGS, **(settings or {})}
        unknown = sorted(set(s) - set(self.settings_keys()))
        if unknown:
            raise ConfigError(f"model type {self.name}: unknown setting(s) {unknown}; allowed: "
                              f"{list(self.settings_keys())}")
        if self.needs_concepts and n_concepts < 1:
            raise ConfigError(f"model type {self.name} learns concepts: the data has none")
        if self.task == "classification":
            return build_model(self.kind, width=s["width"], n_outputs=max(1, n_outputs),
                               n_classes=n_outputs, dropout=s["dropout"])
        bottleneck = n_concepts if (self.kind in BOTTLENECK_KINDS and n_concepts) else (
            DEFAULT_BOTTLENECK)
        return build_model(self.kind, width=s["width"], n_outputs=n_outputs,
                           n_concepts=bottleneck, dropout=s["dropout"])

    def settings_keys(self) -> tuple[str, ...]:
        """``width`` (channel multiplier) and ``dropout`` (Dropout2d after both pools)."""
        return ("width", "dropout")


REGISTRY: dict[str, ModelType] = {}
"""Model type name -> type, in registration order (the reporting order)."""


def register(model_type: ModelType, *, replace: bool = False) -> ModelType:
    """Make ``model_type`` known by its name (to the CLI, the study and the report)."""
    clash = next((n for n in REGISTRY if n.lower() == model_type.name.lower()), None)
    if clash is not None and not replace and REGISTRY[clash] != model_type:
        raise ConfigError(f"a model type named {model_type.name!r} is registered already "
                          f"({REGISTRY[clash]}); choose another name")
    if clash is not None:
        del REGISTRY[clash]
    REGISTRY[model_type.name] = model_type
    return model_type


def get_type(name: str, where: str = "model type") -> ModelType:
    """The registered type ``name`` (any case); ``ConfigError`` listing the names otherwise."""
    by_lower = {n.lower(): t for n, t in REGISTRY.items()}
    try:
        return by_lower[str(name).lower()]
    except KeyError:
        raise ConfigError(f"{where}: unknown model type {name!r}; choose from {names()} (any "
                          f"case), or give a factory (a Python file or import path: "
                          f"'my_models.py:build')") from None


def names(task: str | None = None) -> list[str]:
    """Registered type names in registration order (optionally of one ``task``)."""
    return [n for n, t in REGISTRY.items() if task is None or t.task == task]


def order(types: list[str] | tuple[str, ...] | Any) -> list[str]:
    """Type names in reporting order: registered ones in registration order, then the rest
    alphabetically."""
    uniq = list(dict.fromkeys(str(t) for t in types))
    known = [n for n in REGISTRY if n in uniq]
    return known + sorted(t for t in uniq if t not in REGISTRY)


CONFIG_READERS: dict[str, tuple[Callable[[Mapping[str, Any]], ModelType],
                                Callable[[Mapping[str, Any]], nn.Module]]] = {}
"""Recorded model configs that are not robustmer heads: a config holding the key is read by
``(type of the config, rebuild)``. ``models.factory`` registers ``"factory"`` (the package
imports it, so it is registered whenever this module is)."""


def register_config_reader(key: str, model_type: Callable[[Mapping[str, Any]], ModelType],
                           rebuild: Callable[[Mapping[str, Any]], nn.Module]) -> None:
    """Make :func:`for_config` / :func:`rebuild` read recorded configs that hold ``key``."""
    CONFIG_READERS[key] = (model_type, rebuild)


def _reader(config: Mapping[str, Any]) -> tuple[Callable[[Mapping[str, Any]], ModelType],
                                                 Callable[[Mapping[str, Any]], nn.Module]] | None:
    return next((r for key, r in CONFIG_READERS.items() if key in config), None)


def for_config(config: Mapping[str, Any]) -> ModelType:
    """The type that rebuilds a recorded model ``config`` (a checkpoint's model_config.json):
    a factory's own record, else the plain (not adversarial) type of its head kind."""
    reader = _reader(config)
    if reader is not None:
        return reader[0](config)
    kind = config.get("kind")
    for t in REGISTRY.values():
        if isinstance(t, MERType) and t.kind == kind and not t.adversarial:
            return t
    raise ConfigError(f"model config names no known kind or factory: {dict(config)}")


def rebuild(config: Mapping[str, Any]) -> nn.Module:
    """The network a recorded ``config`` describes, freshly initialised (load weights next)."""
    reader = _reader(config)
    if reader is not None:
        return reader[1](config)
    try:
        return build_model(**config)
    except TypeError as err:
        raise ConfigError(f"model config {dict(config)} does not rebuild a model: {err}") from err


def task_of(config: Mapping[str, Any]) -> str:
    """``regression`` or ``classification`` of a recorded model config."""
    return for_config(config).task


@dataclass(frozen=True)
class OutputNames:
    """The names a model's outputs carry: targets (regression) or classes, and concepts."""

    outputs: tuple[str, ...]
    concepts: tuple[str, ...] = field(default_factory=tuple)


PAPER_COMPARISONS: tuple[tuple[str, str], ...] = (("A2E", "A2M2E"), ("A2B2E", "A2M2E"))
"""The paper's planned comparisons: each black-box type against the concept-bottleneck one."""


def default_comparisons(types: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """The planned comparisons when a study names none: the paper's (those pairs of
    :data:`PAPER_COMPARISONS` whose types are both present), else every other type against
    the first one listed."""
    present = list(dict.fromkeys(types))
    paper = [(a, b) for a, b in PAPER_COMPARISONS if a in present and b in present]
    if paper:
        return paper
    return [(t, present[0]) for t in present[1:]]


def _register_builtins() -> None:
    for name, kind, adv, doc in (
            ("A2E", "a2e", False, "audio -> emotions (the VGG-style CNN)"),
            ("A2B2E", "a2b2e", False, "audio -> 7-unit linear bottleneck -> emotions"),
            ("A2M2E", "a2m2e", False, "audio -> concepts (trained on them) -> emotions"),
            ("aA2E", "a2e", True, "A2E trained adversarially"),
            ("aA2B2E", "a2b2e", True, "A2B2E trained adversarially")):
        register(MERType(name=name, kind=kind, adversarial=adv, doc=doc,
                         needs_concepts=kind == "a2m2e"))
    register(MERType(name="classifier", kind="classifier", task="classification",
                     doc="the same CNN with a class head (cross-entropy on the label)"))


_register_builtins()
