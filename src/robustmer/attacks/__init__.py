"""Adversarial attacks on any ``torch.nn.Module`` + input tensors (docs/attacks.md).

One loop (:mod:`robustmer.attacks.base`) owns stepping, projection, per-sample masking and
stopping; attacks supply their objective and stop rule. Every attack is an ``AttackLike``
(``robustmer.protocols``) and is reached by name through the registry
(:mod:`robustmer.attacks.spec`). Never imports train/, data/ or the CLI.
"""

from robustmer.attacks.apgd import APGD
from robustmer.attacks.base import (
    DEFAULT_EPS,
    DEFAULT_ETA,
    Attack,
    AttackLike,
    AttackResult,
    StopRule,
)
from robustmer.attacks.bim import (
    BIM,
    PGD,
    NoStop,
    ReferenceThresholdStop,
    ThresholdStop,
    per_sample_corr,
    per_sample_mse,
)
from robustmer.attacks.cw import CWAudio
from robustmer.attacks.norms import l2, linf, project, snr_db, spectrogram_snr_db
from robustmer.attacks.reference import ReferenceRules
from robustmer.attacks.spec import AttackSpec, register, setting_id, setting_label
from robustmer.attacks.square import Square
from robustmer.attacks.targeted import TargetedPGD, TargetReached
from robustmer.attacks.waveform import AUDIO_BOX, WaveformModel, pad_batch
from robustmer.audio import write_wav

__all__ = [
    "APGD", "AUDIO_BOX", "BIM", "DEFAULT_EPS", "DEFAULT_ETA", "PGD", "Attack", "AttackLike",
    "AttackResult", "AttackSpec", "CWAudio", "NoStop", "ReferenceRules",
    "ReferenceThresholdStop", "Square", "StopRule", "TargetReached", "TargetedPGD", "ThresholdStop",
    "WaveformModel", "l2", "linf", "pad_batch",
    "per_sample_corr", "per_sample_mse", "project", "register", "setting_id", "setting_label",
    "snr_db", "spectrogram_snr_db", "write_wav",
]
