"""The one attack description (attacks/spec.py): registry, validation, round trip, build."""

from __future__ import annotations

import math

import pytest
import torch

from robustmer.attacks import BIM, PGD, CWAudio, TargetedPGD
from robustmer.attacks.base import Attack, StopRule
from robustmer.attacks.spec import REGISTRY, AttackSpec, names, register, setting_id, setting_label
from robustmer.errors import ConfigError


@pytest.mark.parametrize("name, cls", [("bim", BIM), ("pgd", PGD), ("targeted_pgd", TargetedPGD),
                                       ("cw", CWAudio), ("reference", BIM)])
def test_every_attack_is_registered_and_round_trips(name: str, cls: type) -> None:
    spec = AttackSpec.from_dict({"name": name})
    attack = spec.build()
    assert type(attack) is cls
    again = AttackSpec.from_dict(spec.to_dict())
    assert again == spec
    # what the attack records is what the spec says
    cfg = attack.config()
    for key, value in spec.to_dict().items():
        if key != "name":
            assert cfg[key] == value, key


def test_settings_are_validated_with_the_key_named() -> None:
    with pytest.raises(ConfigError, match=r"study\.attack: unknown setting 'epsilon'"):
        AttackSpec.from_dict({"name": "bim", "epsilon": 0.1}, where="study.attack")
    with pytest.raises(ConfigError, match=r"attack\.eta: expected float"):
        AttackSpec.from_dict({"name": "bim", "eta": "big"})
    with pytest.raises(ConfigError, match=r"attack\.max_iters: expected int"):
        AttackSpec.from_dict({"name": "bim", "max_iters": 2.5})
    with pytest.raises(ConfigError, match=r"attack: .*eps must be"):
        AttackSpec.from_dict({"name": "bim", "eps": -1.0})
    with pytest.raises(ConfigError, match=r"attack\.name: unknown attack 'fgsm'"):
        AttackSpec.from_dict({"name": "fgsm"})
    with pytest.raises(ConfigError, match="preset fixes clip"):
        AttackSpec.from_dict({"name": "reference", "clip": "project"})
    with pytest.raises(ConfigError, match=r"attack\.box"):
        AttackSpec.from_dict({"name": "bim", "box": [1.0]})


def test_aliases_defaults_and_effective_budget() -> None:
    spec = AttackSpec.from_dict({"name": "bim", "iters": 7, "eps": 1})
    assert spec.settings["max_iters"] == 7 and spec.settings["eps"] == 1.0
    assert spec.eps == 1.0
    assert AttackSpec.from_dict("pgd").settings["random_start"] is True
    ref = AttackSpec.from_dict({"name": "reference", "max_iters": 10})
    assert math.isnan(ref.eps)  # the no-op clip never bounds δ
    r = ref.build()
    assert (r.update, r.clip, r.thresholds, r.max_iters) == ("adam_sign", "reference_noop",
                                                             "reference", 10)
    assert (r.eps, r.eta, r.judge_last, r.count_check_step, r.log_prediction) == (
        0.001, 0.002, False, True, "last_evaluated")
    assert setting_id(spec, "spectrogram") == "bim-spectrogram-eps1"
    assert setting_id(ref, "spectrogram") == "reference-spectrogram"
    assert setting_label(("bim", "waveform", 0.001)) == "bim eps=0.001 (waveform)"
    assert setting_label(("reference", "spectrogram", math.nan)) == (
        "reference, no bound (spectrogram)")
    assert AttackSpec.from_dict("cw").task == "classification"


def test_a_new_attack_registers_with_one_line() -> None:
    class Noise(Attack):
        name = "noise"

        def __init__(self, eps: float = 0.01, eta: float = 0.01, max_iters: int = 1,
                     scale: float = 2.0, **kwargs: object) -> None:
            super().__init__(eps=eps, eta=eta, max_iters=max_iters, **kwargs)  # type: ignore
            self.scale = scale

        def objective(self, out: torch.Tensor, y: torch.Tensor,
                      delta: torch.Tensor) -> torch.Tensor:
            return ((out - y) ** 2).sum(dim=1)

        def make_stop(self) -> StopRule:
            from robustmer.attacks import NoStop
            return NoStop()

    try:
        register("noise", Noise)
        assert "noise" in names()
        spec = AttackSpec.from_dict({"name": "noise", "scale": 3, "seed": 4})
        attack = spec.build()
        assert isinstance(attack, Noise) and attack.scale == 3.0 and attack.seed == 4
    finally:
        REGISTRY.pop("noise", None)


def test_a_new_attack_does_not_inherit_the_reference_switches() -> None:
    """The reference study's switches live in its own mixin (attacks/reference.py), which BIM
    and PGD take; an attack written on the generic loop has none of them, and the attacks that
    recorded them while they were in the loop still record (only) the generic values."""
    from robustmer.attacks import NoStop, Square
    from robustmer.protocols import AttackLike

    class Plain(Attack):
        name = "plain"

        def __init__(self, eps: float = 0.01, eta: float = 0.01, max_iters: int = 1,
                     **kwargs: object) -> None:
            super().__init__(eps=eps, eta=eta, max_iters=max_iters, **kwargs)  # type: ignore

        def objective(self, out: torch.Tensor, y: torch.Tensor,
                      delta: torch.Tensor) -> torch.Tensor:
            return ((out - y) ** 2).sum(dim=1)

        def make_stop(self) -> StopRule:
            return NoStop()

    with pytest.raises(TypeError, match="update"):
        Plain(update="adam_sign")
    try:
        register("plain", Plain)
        recorded = AttackSpec.from_dict("plain").to_dict()
        assert not {"update", "clip", "judge_last", "count_check_step",
                    "log_prediction"} & set(recorded)
        assert set(Plain().config()) == {"attack", *recorded} - {"name"}
    finally:
        REGISTRY.pop("plain", None)
    targeted = AttackSpec.from_dict("targeted_pgd")
    assert (targeted.to_dict()["update"], targeted.to_dict()["clip"]) == ("sign", "project")
    assert AttackSpec.from_dict(targeted.to_dict()) == targeted  # stored folders resume
    with pytest.raises(ConfigError, match=r"attack\.update: .*takes no other value"):
        AttackSpec.from_dict({"name": "targeted_pgd", "update": "adam_sign"})
    assert isinstance(BIM(), AttackLike) and isinstance(Square(), AttackLike)
