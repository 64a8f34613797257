"""Training: the reference recipe, early stopping, checkpoints, resume, adversarial training.

Takes any torch ``Dataset`` of the documented item dicts and any attack callable; does not
import ``robustmer.data`` or ``robustmer.attacks`` (the CLI and the study wire them in).
"""

from robustmer.train.checkpoint import LoadedRun, load_run
from robustmer.train.config import TrainConfig
from robustmer.train.pretrained import write_pretrained
from robustmer.train.trainer import (
    TrainResult,
    attack_reference,
    epoch_generator,
    evaluate_model,
    mixed_precision,
    output_sizes,
    seed_everything,
    solo_loss,
    train_run,
    validation_score,
)

__all__ = [
    "LoadedRun", "TrainConfig", "TrainResult", "attack_reference", "epoch_generator",
    "evaluate_model", "load_run", "mixed_precision", "output_sizes", "seed_everything",
    "solo_loss", "train_run", "validation_score", "write_pretrained",
]
