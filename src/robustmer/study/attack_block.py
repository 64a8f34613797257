"""The study's ``attack:`` block: one attack over a list of budgets plus named presets, each an
:class:`AttackSetting` (an attack spec in a domain, with its own results folder), and the attack
inside adversarial training (``train.adv_*``). Parsing is strict, as for the rest of the study
config: an unknown key or a bad value raises ``ConfigError`` naming the key."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from robustmer.attacks.base import DEFAULT_EPS, DEFAULT_ETA
from robustmer.attacks.spec import AttackSpec, names_for, setting_id
from robustmer.errors import ConfigError
from robustmer.features import DOMAINS

DEFAULT_ATTACK: dict[str, str] = {"regression": "bim", "classification": "untargeted_pgd"}
"""The attack a study of each task uses when its ``attack:`` block names none."""

BLOCK_KEYS: tuple[str, ...] = ("name", "domain", "eps", "eta", "batch_size", "presets")
"""Keys of the study's ``attack:`` block that are not plain settings of the attack."""


@dataclass(frozen=True)
class AttackSetting:
    """One attack setting of the study: an attack spec in a domain (its own results folder)."""

    spec: AttackSpec
    domain: str = "spectrogram"

    @property
    def id(self) -> str:
        """Folder name ``runs/<run_id>/attack/<id>/`` (``attacks.spec.setting_id``)."""
        return setting_id(self.spec, self.domain)

    @property
    def key(self) -> tuple[str, str, float]:
        """``(attack, domain, eps)``: the results store's setting columns."""
        return (self.spec.name, self.domain, self.spec.eps)

    def to_dict(self) -> dict[str, Any]:
        """``{"id", "domain", "attack": <spec dict>}``."""
        return {"id": self.id, "domain": self.domain, "attack": self.spec.to_dict()}


@dataclass(frozen=True)
class StudyAttack:
    """The study's ``attack:`` block: one attack over a list of budgets, plus named presets.

    YAML (every key optional)::

        attack:
          name: bim               # any registered regression attack (attacks/spec.py)
          domain: spectrogram     # or waveform
          eps: [0.0003, 0.001]    # one number or a list: one setting per budget
          eta: 0.002              # one number, or one per eps
          iters: 1000             # ... and any other setting of the attack (stop, norm, ...)
          batch_size: 8
          presets: [reference]    # extra settings: a name, or {name: ..., domain: ..., <settings>}
    """

    settings: tuple[AttackSetting, ...] = ()
    batch_size: int = 8
    block: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def domain(self) -> str:
        """The domain of the first setting (the block's ``domain``)."""
        return self.settings[0].domain if self.settings else "spectrogram"

    def to_dict(self) -> dict[str, Any]:
        """The block as given (normalised) plus every resolved setting."""
        return {**self.block, "batch_size": self.batch_size,
                "settings": [s.to_dict() for s in self.settings]}


def parse_attack(raw: Any, where: str, task: str = "regression",
                  n_outputs: int | None = None,
                  target_range: float | None = None) -> StudyAttack:
    """Validate the ``attack:`` block into its settings (errors name ``where`` and the key);
    ``task``: the study's, which the attacks must attack (default name: ``DEFAULT_ATTACK``)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, found {type(raw).__name__}")
    domain = raw.get("domain", "spectrogram")
    if domain not in DOMAINS:
        raise ConfigError(f"{where}.domain must be one of {list(DOMAINS)}, found {domain!r}")
    batch_size = raw.get("batch_size", 8)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"{where}.batch_size must be an integer >= 1, found {batch_size!r}")
    name = raw.get("name", DEFAULT_ATTACK[task])
    base = {k: v for k, v in raw.items() if k not in BLOCK_KEYS}
    eps = raw.get("eps", DEFAULT_EPS)
    eps_list = eps if isinstance(eps, list) else [eps]
    if not eps_list:
        raise ConfigError(f"{where}.eps: give at least one budget")
    eta = raw.get("eta", DEFAULT_ETA)
    eta_list = eta if isinstance(eta, list) else [eta] * len(eps_list)
    if len(eta_list) != len(eps_list):
        raise ConfigError(f"{where}.eta: give one number or one per eps "
                          f"({len(eps_list)}), found {len(eta_list)}")
    settings: list[AttackSetting] = []
    for k, (e, h) in enumerate(zip(eps_list, eta_list, strict=True)):
        for key, val, many in (("eps", e, isinstance(eps, list)),
                               ("eta", h, isinstance(eta, list))):
            if isinstance(val, bool) or not isinstance(val, int | float) or not val > 0:
                at_key = f"{key}[{k}]" if many else key
                raise ConfigError(f"{where}.{at_key}: expected a positive number, found {val!r}")
        at = f"{where}.eps[{k}]" if isinstance(eps, list) else where
        spec = AttackSpec.from_dict({"name": name, **base, "eps": e, "eta": h}, where=at,
                                    n_outputs=n_outputs, target_range=target_range)
        settings.append(AttackSetting(spec, domain))
    presets = raw.get("presets", [])
    if not isinstance(presets, list):
        raise ConfigError(f"{where}.presets: expected a list of names or mappings")
    for k, item in enumerate(presets):
        at = f"{where}.presets[{k}]"
        item = {"name": item} if isinstance(item, str) else item
        if not isinstance(item, dict) or "name" not in item:
            raise ConfigError(f"{at}: expected an attack name or a mapping with 'name'")
        item = dict(item)
        p_domain = item.pop("domain", domain)
        if p_domain not in DOMAINS:
            raise ConfigError(f"{at}.domain must be one of {list(DOMAINS)}, found {p_domain!r}")
        settings.append(AttackSetting(AttackSpec.from_dict(item, where=at, n_outputs=n_outputs,
                                                           target_range=target_range),
                                      p_domain))
    for k, st in enumerate(settings):
        if st.spec.task != task:
            raise ConfigError(f"{where}: attack {st.spec.name!r} attacks {st.spec.task} models; "
                              f"this study's models do {task} (choose from "
                              f"{names_for(task)})")
        if any(o.id == st.id for o in settings[:k]):
            raise ConfigError(f"{where}: the setting {st.id!r} appears twice")
    block = {"name": name, "domain": domain,
             "eps": [float(e) for e in eps_list], "eta": [float(h) for h in eta_list],
             **base, "presets": presets}
    return StudyAttack(tuple(settings), batch_size, block, dict(raw))
