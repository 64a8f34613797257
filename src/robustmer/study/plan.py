"""A study's plan: which (model type, seed) runs it has, which of them cannot run on its data,
and the tasks an executor runs, in phases (``train.batch_seeds``: each plain model type's seeds
train as one task first, beside the runs that do not wait for it; its runs, then attack only,
after). Tasks are picklable, so any executor can ship them to another process."""

from __future__ import annotations

from dataclasses import dataclass, field

from robustmer.models.types import MERType, ModelType
from robustmer.study.config import StudyConfig


@dataclass(frozen=True)
class RunTask:
    """One (model type, seed) run of a study, as handed to an executor (picklable)."""

    config: StudyConfig
    root: str
    model_type: str
    seed: int


@dataclass(frozen=True)
class BatchTask:
    """``train.batch_seeds``: the seeds of one model type trained together (picklable)."""

    config: StudyConfig
    root: str
    model_type: str
    seeds: tuple[int, ...]


@dataclass(frozen=True)
class StudyPlan:
    """``todo``: every (model type, seed) in the config's order (the store's row order);
    ``blocked``: those that cannot run on this data; ``tasks``: the runs that will;
    ``phases``: the tasks (and batched groups) in the order an executor runs them."""

    todo: list[tuple[str, int]]
    blocked: set[tuple[str, int]]
    tasks: list[RunTask]
    phases: list[list[RunTask | BatchTask]] = field(default_factory=list)


def run_seeds(config: StudyConfig, model_type: ModelType) -> tuple[int, ...]:
    """The seeds a type runs with: every seed, or the first alone for a pretrained model (one
    model, nothing drawn)."""
    return config.seeds if model_type.trainable else config.seeds[:1]


def plan_study(config: StudyConfig, root: str, concepts_ok: bool) -> StudyPlan:
    """The plan of ``config`` on the dataset at ``root`` (``concepts_ok``: every training clip
    has its concept ratings, which the concept-trained types need)."""
    todo = [(m, s) for m in config.models for s in run_seeds(config, config.model_type(m))]
    blocked = {(m, s) for m, s in todo
               if config.model_type(m).needs_concepts and not concepts_ok}
    tasks = [RunTask(config, root, m, s) for m, s in todo if (m, s) not in blocked]
    groups = [BatchTask(config, root, m, tuple(config.seeds)) for m in config.models
              if config.train.batch_seeds and not config.model_type(m).adversarial
              and isinstance(config.model_type(m), MERType) and len(config.seeds) > 1
              and not any((m, s) in blocked for s in config.seeds)]
    grouped = {(g.model_type, s) for g in groups for s in g.seeds}
    phases: list[list[RunTask | BatchTask]] = [
        [*groups, *(t for t in tasks if (t.model_type, t.seed) not in grouped)],
        [t for t in tasks if (t.model_type, t.seed) in grouped]]
    return StudyPlan(todo, blocked, tasks, phases)
