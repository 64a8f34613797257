"""Adversarial perturbations as ground truth for explainers (Praher, Hoedt et al.).

An attack gives each clip a perturbation ``δ`` that provably changes the model's decision, so the
input regions that matter are known: a good explainer of the prediction on ``x + δ`` should rank
the segments carrying ``δ`` first. Two tests, for any ``nn.Module`` on any 2-D input
``x (B, 1, T, F)`` with an integer segment map ``(T, F)`` (ids ``0..S-1``):

- **Label-flip rate vs k**: explain the prediction on ``x + δ`` (for the class the attack reached),
  keep only the part of ``δ`` inside the explainer's top-k segments, add it to the clean ``x`` and
  ask whether the decision becomes the adversarial one. Baselines: ``magnitude`` (the k segments
  with the largest ``Σδ²``: what an oracle that knows ``δ`` would pick) and ``random`` (a seeded
  random order per clip).
- **Recovery of localised perturbations**: for ``k`` in ``recovery_ks`` keep ``δ`` only in its k
  largest-magnitude segments; on the clips where that partial adversary still flips the decision,
  explain again and count how many of the k modified segments the explainer ranks in its top k.

Regressors have no decision to flip. Their analogue (docs/explainer-eval.md): the attack is the
untargeted regression attack; the explained output is the one the attack moved most,
``argmax_j |f_j(x+δ) − f_j(x)|``; a partial perturbation "flips" when it reproduces at least
``fraction`` (default half) of the full perturbation's rise in MSE against the targets ``y``,
``(MSE(x+δ_k) − MSE(x)) ≥ fraction·(MSE(x+δ) − MSE(x))``; the table's ``effect`` column holds the
ratio itself. A clip whose targets are unknown is judged against the clean prediction.

Results go to one folder (:func:`evaluate_explainers`): ``adversarial.csv`` (one row per clip:
the attack's outcome), ``flips.csv`` (clip × method × k), ``recovery.csv`` (clip × method × k),
``timings.csv`` (seconds per explained clip), ``examples/<clip>.npz`` (``x``, ``δ``),
``maps/<clip>.npz`` (a few clips' attribution maps), ``config.yaml`` and ``meta.json``. Every
table is rewritten atomically after each batch; ``resume=True`` skips the clips already attacked
and the (clip, method) pairs already evaluated. Imports only attacks/, models/, evaluate/ and
explain/ (never train/, data/, study/ or the CLI).

Modules: :mod:`.metrics` (segment arithmetic, the judge of a partial perturbation),
:mod:`.attack` (the default attacks, attacking a batch), :mod:`.files` (the folder's tables,
resume checks, row order, maps) and :mod:`.driver` (:func:`evaluate_explainers`).
"""


from robustmer.attacks.spec import TASK_ALIASES
from robustmer.explain.evaluation.attack import (
    DEFAULT_ATTACKS,
    DEFAULT_MIN_RISE,
    TARGET_RULES,
    ModelFactory,
    attack_batch,
    attack_targets,
    batch_model,
    contexts,
    default_attack,
    regression_success,
)
from robustmer.explain.evaluation.driver import (
    BASELINES,
    HEADLINE_K,
    EvalResult,
    evaluate_explainers,
    headline_k,
)
from robustmer.explain.evaluation.files import (
    ADV_COLUMNS,
    ADVERSARIAL,
    CONTEXT,
    EXAMPLES,
    FLIP_COLUMNS,
    FLIPS,
    MAPS,
    RECOVERY,
    RECOVERY_COLUMNS,
    TIMING_COLUMNS,
    TIMINGS,
    add_map,
    ordered,
    prepare_out,
    read_results,
    read_table,
)
from robustmer.explain.evaluation.metrics import (
    TASKS,
    Judge,
    clip_batches,
    explain_segments,
    flip_curve,
    keep_segments,
    n_segments,
    predict,
    random_ranking,
    rank_segments,
    recovery_hits,
    rows_model,
    segment_energy,
)

__all__ = [
    "ADVERSARIAL", "ADV_COLUMNS", "BASELINES", "CONTEXT", "DEFAULT_ATTACKS", "DEFAULT_MIN_RISE",
    "EXAMPLES", "FLIPS", "FLIP_COLUMNS", "HEADLINE_K", "MAPS", "RECOVERY", "RECOVERY_COLUMNS",
    "TARGET_RULES", "TASKS", "TASK_ALIASES", "TIMINGS", "TIMING_COLUMNS", "EvalResult", "Judge",
    "ModelFactory", "add_map", "attack_batch", "attack_targets", "batch_model", "clip_batches",
    "contexts", "default_attack", "evaluate_explainers", "explain_segments", "flip_curve",
    "headline_k", "keep_segments", "n_segments", "ordered", "predict", "prepare_out",
    "random_ranking", "rank_segments", "read_results", "read_table", "recovery_hits",
    "regression_success", "rows_model", "segment_energy",
]
