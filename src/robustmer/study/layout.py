"""Where a study keeps each run: the folder layout of its output, named in one place.

``OUTPUT/runs/<run_id>/train/`` holds a run's training folder and ``OUTPUT/runs/<run_id>/attack/
<setting-id>/`` one folder per attack setting; a :data:`DONE` marker in either says the step
finished (so a resumed study skips it). Used by the runner, the checks and the store assembly.
"""

from __future__ import annotations

from pathlib import Path

from robustmer.study.attack_block import AttackSetting

DONE = "DONE"
"""The marker file of a finished training or attack folder."""
STUDY_KIND = "study"
"""The folder kind of a study's output (see robustmer.folders)."""


def run_id_of(model_type: str, seed: int) -> str:
    """The stable folder / table id of one (model type, seed) run."""
    return f"{model_type}_seed{seed}"


def run_dir_of(out: Path, model_type: str, seed: int) -> Path:
    """``runs/<run_id>/``: everything of one run."""
    return Path(out) / "runs" / run_id_of(model_type, seed)


def train_dir_of(out: Path, model_type: str, seed: int) -> Path:
    """``runs/<run_id>/train/``: the run's training folder (``DONE`` when finished)."""
    return run_dir_of(out, model_type, seed) / "train"


def attack_dir_of(run_dir: Path, setting: AttackSetting) -> Path:
    """``runs/<run_id>/attack/<setting-id>/``: one resumable folder per attack setting."""
    return run_dir / "attack" / setting.id


def explainer_eval_dir_of(run_dir: Path) -> Path:
    """``runs/<run_id>/explainer-eval/``: the run's explainer evaluation (the study's
    ``explainer_eval:`` block; ``DONE`` when finished)."""
    return run_dir / "explainer-eval"
