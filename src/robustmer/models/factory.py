"""A user's own model as a model type: a Python file (or import path) plus a factory function.

``FactoryType(name, factory="my_models.py:build", task="regression", input="waveform",
sample_rate=16000, seconds=4.0, settings={...})`` builds ``factory(n_outputs=K, **settings)``
(and ``n_concepts=C`` when the factory takes it): any ``nn.Module`` whose output is ``(B, K)``
regression values or logits. Two input contracts: ``spectrogram`` (robustmer's standardised
log-filtered excerpt ``(B, 1, 313, 149)``, as the built-in models) and ``waveform`` (mono audio
``(B, samples)`` in [-1, 1] at ``sample_rate``, ``seconds`` long: the model owns its front end).

A ``trainable=False`` type is a pretrained model: its factory loads the weights itself; it is
evaluated, attacked, explained and reported without training, and the weights' SHA-256 is
recorded. The factory file's SHA-256 is recorded with every run, so a changed file is noticed
when the run is loaded again. Loading a user file runs its code: it is the user's own code,
named by the user; robustmer never unpickles anything.
"""

from __future__ import annotations

import hashlib
import inspect
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustmer.errors import ConfigError
from robustmer.models.types import INPUT_KINDS, ModelType, register_config_reader
from robustmer.userfiles import (
    callable_source,
    load_callable,
    resolve_callable,
    sha256_of,
    split_callable,
)

resolve_factory = resolve_callable
"""A factory reference with its file path made absolute (``robustmer.userfiles``)."""

__all__ = ["FactoryType", "check_output", "rebuild_factory", "resolve_factory", "weights_sha256"]

def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state (names, dtypes, shapes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy()
                 .tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class FactoryType(ModelType):
    """A user model type (see the module docstring)."""

    factory: str = ""
    input: str = "spectrogram"
    sample_rate: int | None = None
    seconds: float | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"model type {self.name}"
        split_callable(self.factory, f"{where}: factory")
        if self.input not in INPUT_KINDS:
            raise ConfigError(f"{where}: input must be one of {list(INPUT_KINDS)}, found "
                              f"{self.input!r}")
        if self.input == "waveform":
            if not isinstance(self.sample_rate, int) or self.sample_rate < 1000:
                raise ConfigError(f"{where}: a waveform model needs sample_rate (an integer "
                                  f">= 1000 Hz), found {self.sample_rate!r}")
            if not isinstance(self.seconds, int | float) or not self.seconds > 0:
                raise ConfigError(f"{where}: a waveform model needs seconds (the excerpt "
                                  f"length it reads, > 0), found {self.seconds!r}")
        if self.adversarial and not self.trainable:
            raise ConfigError(f"{where}: a pretrained model (train: false) is not trained, "
                              f"so not adversarially either")

    def input_spec(self) -> dict[str, Any]:
        """``{"kind": "spectrogram"}`` or ``{"kind": "waveform", "sample_rate", "seconds"}``."""
        if self.input == "waveform":
            return {"kind": "waveform", "sample_rate": int(self.sample_rate or 0),
                    "seconds": float(self.seconds or 0.0)}
        return {"kind": "spectrogram"}

    def settings_keys(self) -> tuple[str, ...]:
        """Whatever the factory takes (its settings come from the YAML's ``settings:``)."""
        return tuple(self.settings)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description, the factory and its settings included."""
        return {**super().to_dict(), "factory": self.factory, "settings": dict(self.settings)}

    def build(self, n_outputs: int, n_concepts: int = 0,
              settings: Mapping[str, Any] | None = None) -> nn.Module:
        """``factory(n_outputs=K, [n_concepts=C,] **settings)``, checked to be an
        ``nn.Module`` whose output on a zero input of the declared shape is ``(1, K)``."""
        where = f"model type {self.name} ({self.factory})"
        fn = load_callable(self.factory, where)
        kwargs = {**dict(self.settings), **dict(settings or {}), "n_outputs": int(n_outputs)}
        params = inspect.signature(fn).parameters
        if "n_concepts" in params:
            kwargs["n_concepts"] = int(n_concepts)
        try:
            model = fn(**kwargs)
        except TypeError as err:
            raise ConfigError(f"{where}: calling the factory with {sorted(kwargs)} failed: "
                              f"{err}") from err
        if not isinstance(model, nn.Module):
            raise ConfigError(f"{where}: the factory returned a {type(model).__name__}, not a "
                              f"torch.nn.Module")
        check_output(model, self.input_spec(), int(n_outputs), where)
        return model

    def recipe(self, model: nn.Module, n_outputs: int, n_concepts: int = 0,
               settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The JSON-able record :func:`rebuild_factory` rebuilds the model from."""
        out: dict[str, Any] = {
            "factory": self.factory, "source": callable_source(self.factory),
            "type": self.name, "task": self.task, "needs_concepts": self.needs_concepts,
            "trainable": self.trainable, "input": self.input_spec(),
            "n_outputs": int(n_outputs), "n_concepts": int(n_concepts),
            "settings": {**dict(self.settings), **dict(settings or {})}}
        if not self.trainable:
            out["weights_sha256"] = weights_sha256(model)
        return out

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> FactoryType:
        """The type a recorded factory config (``recipe``) describes."""
        spec = config.get("input") or {"kind": "spectrogram"}
        return cls(name=str(config.get("type", "model")), task=str(config.get("task",
                                                                               "regression")),
                   needs_concepts=bool(config.get("needs_concepts", False)),
                   trainable=bool(config.get("trainable", True)), factory=str(config["factory"]),
                   input=str(spec.get("kind", "spectrogram")),
                   sample_rate=spec.get("sample_rate"), seconds=spec.get("seconds"),
                   settings=dict(config.get("settings") or {}))


def check_output(model: nn.Module, input_spec: Mapping[str, Any], n_outputs: int,
                 where: str) -> None:
    """Run the model once (eval mode, no gradients) on a zero input of the declared shape and
    refuse an output that is not ``(1, n_outputs)``."""
    if input_spec.get("kind") == "waveform":
        x = torch.zeros(1, round(float(input_spec["seconds"]) * int(input_spec["sample_rate"])))
    else:
        x = torch.zeros(1, 1, 313, 149)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x.to(device))
    except Exception as err:
        raise ConfigError(f"{where}: the model fails on an input of shape {tuple(x.shape)} "
                          f"(its declared input, {dict(input_spec)}): {type(err).__name__}: "
                          f"{err}") from err
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, n_outputs):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(f"{where}: on an input of shape {tuple(x.shape)} the model returns "
                          f"{shape}; robustmer needs (1, {n_outputs}): one value (or logit) "
                          f"per output of the data")


def rebuild_factory(config: Mapping[str, Any]) -> nn.Module:
    """The model a recorded factory config describes (warns when the factory file changed since
    the run was made; the checkpoint's weights are loaded next and must fit)."""
    source = config.get("source") or {}
    recorded, path = source.get("sha256"), source.get("file")
    if recorded and path and Path(path).is_file() and sha256_of(Path(path)) != recorded:
        warnings.warn(f"{path} changed since this run was made (SHA-256 {recorded[:12]}... "
                      f"recorded); the model is rebuilt from the file as it is now",
                      stacklevel=2)
    mt = FactoryType.from_config(config)
    return mt.build(int(config["n_outputs"]), int(config.get("n_concepts", 0)))


register_config_reader("factory", FactoryType.from_config, rebuild_factory)
