"""The training recipe as one dataclass; its defaults are the reference study's."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from robustmer.errors import ConfigError

LR_SCHEDULES: tuple[str, ...] = ("constant", "onecycle")
"""``TrainConfig.lr_schedule`` values (robustmer.train.options.scheduled_lr)."""


@dataclass(frozen=True)
class TrainConfig:
    """Adam, lr 5e-4, batch 8, at most 200 epochs, early stopping (patience 50) on the validation
    mean Pearson r of the emotions (A2M2E: emotion mean r + concept mean r), best checkpoint kept.

    ``emotion_weight`` is ``w`` in the A2M2E loss ``w·MSE(emotions) + (1-w)·MSE(concepts)``.
    ``adversarial_every = n > 0`` adds an adversarial step on every n-th epoch (the study: 5).
    ``amp`` / ``channels_last`` are speed options for CUDA, off by default (bit-exact
    reproducibility is only promised on CPU with both off; on CPU ``amp`` is bfloat16 autocast).

    Departures from the recipe for short CPU runs (all off by default, docs/demo.md):
    ``standardize_targets`` trains on per-output standardised targets (mapped back into ratings
    in every checkpoint that is loaded), ``lr_schedule="onecycle"`` warms the learning rate up to
    ``lr`` and anneals it over ``max_epochs``, ``bn_recalibrate`` recomputes the best
    checkpoint's BatchNorm statistics on the training excerpts with dropout off.
    """

    seed: int = 0
    lr: float = 5e-4
    batch_size: int = 8
    max_epochs: int = 200
    patience: int = 50
    emotion_weight: float = 0.5
    adversarial_every: int = 0
    device: str = "cpu"
    amp: bool = False
    channels_last: bool = False
    tensorboard: bool = False
    standardize_targets: bool = False
    lr_schedule: str = "constant"
    bn_recalibrate: bool = False

    def __post_init__(self) -> None:
        checks = (
            ("seed", self.seed >= 0, ">= 0"),
            ("lr", self.lr > 0, "> 0"),
            ("batch_size", self.batch_size >= 1, ">= 1"),
            ("max_epochs", self.max_epochs >= 1, ">= 1"),
            ("patience", self.patience >= 1, ">= 1"),
            ("emotion_weight", 0.0 <= self.emotion_weight <= 1.0, "in [0, 1]"),
            ("adversarial_every", self.adversarial_every >= 0, ">= 0 (0 = off)"),
            ("device", self.device == "cpu" or self.device.startswith("cuda"),
             "'cpu' or 'cuda[:N]'"),
            ("lr_schedule", self.lr_schedule in LR_SCHEDULES, f"one of {list(LR_SCHEDULES)}"),
        )
        for name, ok, expected in checks:
            if not ok:
                raise ConfigError(f"TrainConfig.{name} must be {expected}, "
                                  f"found {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (stored as ``train_config.json`` in every checkpoint)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Rebuild from :meth:`to_dict`; unknown keys raise ``ConfigError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"TrainConfig: unknown key(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


RESUMABLE_CHANGES: frozenset[str] = frozenset({"max_epochs", "patience", "device", "tensorboard"})
"""Fields a resumed run may change; any other difference from the stored config is an error."""
