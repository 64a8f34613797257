"""The one attack loop: stepping, projection, per-sample masking and stopping.

An attack is a small subclass of :class:`Attack` that supplies its ``objective`` (a per-sample
value to *maximise*) and its :class:`StopRule`; the loop here does everything else, for every
attack alike (regression BIM/PGD, targeted PGD, the C&W-style audio attack).

Per iteration, for the samples still running: forward at ``x + δ`` (one pass, also used by the
stop rule to judge the current ``δ``), stop-rule update (record ``δ`` as the best when a threshold
is passed; freeze samples that are done or have used ``max_iters`` steps), then one step
``δ ← Proj(δ + η·dir(∇δ objective))`` for the rest. Only the running samples are forwarded, and
every quantity is per sample, so a batch gives the per-sample results of a one-at-a-time loop:
exactly when the model's outputs do not depend on the batch size, and otherwise within the
tolerance docs/attacks.md ("Batching") states and tests on the real architecture. Gradients
are taken with ``torch.autograd.grad`` w.r.t. ``δ`` only, so nothing accumulates in the
model's ``.grad``; the model runs in eval mode and its mode is restored afterwards.

An attack that cannot start is never reported as robustness: a sample whose objective has an
exactly zero gradient at its start (e.g. the MSE to the model's own clean prediction at
``δ = 0``) takes its first step to a seeded random point of the ε-ball instead
(``result.extra["zero_grad_start"]`` marks it), and with ``ε = 0`` the attack refuses
(``AttackError``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

import torch
from torch import nn

from robustmer.attacks import norms
from robustmer.errors import AttackError, ConfigError
from robustmer.protocols import AttackLike, AttackResult

__all__ = [
    "DEFAULT_EPS", "DEFAULT_ETA", "LOOP_SETTINGS", "Attack", "AttackLike", "AttackResult",
    "StopRule", "Subsettable", "check_box", "check_inputs", "check_positive", "eval_mode",
    "in_loop_order",
]

DEFAULT_EPS = 0.001
"""The default attack budget ε: the reference study's (on the standardised spectrogram excerpt;
the default of every attack, the study's ``attack.eps`` and ``train.adv_eps``, the CLI's)."""
DEFAULT_ETA = 0.002
"""The default step size η = 2ε (the reference study's)."""

LOOP_SETTINGS: tuple[str, ...] = (
    "eps", "eta", "max_iters", "norm", "box", "update", "clip", "random_start", "seed",
    "judge_last", "count_check_step", "log_prediction")
"""The order in which the loop's settings have always been recorded (``config()``, the attack
registry's ``to_dict()``): the reference switches (``attacks.reference``) sit where the loop's
signature had them, so recorded settings stay byte-identical."""


@runtime_checkable
class Subsettable(Protocol):
    """A model holding per-sample state (e.g. each clip's excerpt window) implements ``subset``
    so that the loop can forward only the samples still running."""

    def subset(self, index: torch.Tensor) -> nn.Module:
        """The same model restricted to the batch rows ``index``."""
        ...


class StopRule:
    """Per-sample stopping: ``start`` sets the state from the clean output, ``update`` judges the
    current output. Subclasses keep their state in tensors indexed by batch row.

    ``records_start``: the starting ``δ₀`` counts as recorded, so a sample that passes no
    threshold in the loop returns ``δ₀`` instead of its last ``δ`` (the reference's rule)."""

    records_start: bool = False

    def start(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Initialise from the output at ``δ₀``; return ``(done, score)`` ``(B,)`` each
        (``done``: already at the goal)."""
        raise NotImplementedError

    def update(self, out: torch.Tensor, y: torch.Tensor,
               rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Judge outputs of batch ``rows``; return ``(passed, done, score)`` for those rows."""
        raise NotImplementedError

    def final_threshold(self) -> torch.Tensor:
        """``(B,)`` threshold being worked towards (NaN where the rule has none)."""
        raise NotImplementedError

    def last_passed(self) -> torch.Tensor:
        """``(B,)`` last threshold passed (NaN where none)."""
        raise NotImplementedError


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[None]:
    """The model in eval mode for the block (BatchNorm statistics, no dropout); its own mode is
    restored afterwards, whatever happens inside."""
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)


def check_inputs(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None,
                 box: tuple[float, float] | None) -> None:
    """What every attack checks before it starts: a shared batch dimension, a mask shaped like
    ``x``, finite inputs, and a clean input inside the box."""
    if x.ndim < 1 or x.shape[0] != y.shape[0]:
        raise ConfigError(f"x and y must share the batch dimension, got {tuple(x.shape)} "
                          f"and {tuple(y.shape)}")
    if mask is not None and mask.shape != x.shape:
        raise ConfigError(f"mask must have the shape of x {tuple(x.shape)}, "
                          f"got {tuple(mask.shape)}")
    if not torch.isfinite(x).all():
        raise ConfigError("x holds NaN/Inf values")
    if box is not None and ((x < box[0]).any() or (x > box[1]).any()):
        raise ConfigError(f"x lies outside box {box} (range {float(x.min()):.4g}.."
                          f"{float(x.max()):.4g}); rescale the input or widen the box")


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """``value`` as a float if it is finite and positive (or zero with ``allow_zero``);
    ``ConfigError`` naming the setting otherwise."""
    v = float(value)
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ConfigError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                          f"finite number, got {value!r}")
    return v


def check_box(box: Any) -> tuple[float, float] | None:
    """``None`` or a valid value range ``(lo, hi)`` with ``lo < hi`` for the attacked input."""
    if box is None:
        return None
    lo, hi = float(box[0]), float(box[1])
    if not lo < hi:
        raise ConfigError(f"box must be (lo, hi) with lo < hi, got {box!r}")
    return (lo, hi)


def in_loop_order(settings: Mapping[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` with the loop settings of ``more`` added where :data:`LOOP_SETTINGS` puts
    them (after the last earlier loop setting present), keys already there untouched."""
    out = dict(settings)
    for key, value in more.items():
        if key in out:
            continue
        earlier = LOOP_SETTINGS[:LOOP_SETTINGS.index(key)] if key in LOOP_SETTINGS else ()
        anchor = next((k for k in reversed(earlier) if k in out), None)
        if anchor is None:
            out[key] = value
            continue
        items = list(out.items())
        at = [k for k, _ in items].index(anchor) + 1
        out = dict([*items[:at], (key, value), *items[at:]])
    return out


@dataclass
class _Loop:
    """The per-sample state of one call of the loop (batch rows; see :meth:`Attack._run`)."""

    delta: torch.Tensor
    best: torch.Tensor
    stop: StopRule
    iters: torch.Tensor
    converged: torch.Tensor
    score_last: torch.Tensor
    score_best: torch.Tensor
    recorded: torch.Tensor  # best δ recorded (a threshold passed, done at δ₀, or records_start)
    evaluated: torch.Tensor  # the last δ each sample's prediction was computed at
    active: torch.Tensor
    zero_start: torch.Tensor
    state: dict[str, Any] = field(default_factory=dict)  # what begin() keeps for propose()


class Attack:
    """Base class: hyper-parameters + the shared loop. Subclasses define ``objective`` and
    ``make_stop``; call as ``attack(model, x, y, mask=None) -> AttackResult``.

    ``box``: optional ``(lo, hi)`` range for ``x + δ`` (``(-1, 1)`` for audio); the clean ``x``
    must lie inside it. Each step is the projected steepest-ascent step ``δ ← Proj(δ +
    η·dir(∇δ objective))`` with the ε bound after every step; ``random_start`` starts from a
    point of the ε-ball drawn with ``seed``.

    What a subclass may change, besides ``objective`` and ``make_stop``, are the loop's hooks:
    :meth:`step_rule` (e.g. APGD's step-size schedule), :meth:`begin` / :meth:`propose` (the
    step before projection), :meth:`project`, :meth:`judged` (which running samples are judged)
    and :meth:`finish` (the reported iterations and logged δ); the reference study's
    reproduction switches are such hooks (:class:`robustmer.attacks.reference.ReferenceRules`).

    ``recorded``: settings a class's folders have always recorded that it does not take (the
    reference switches, with their generic values, for the attacks that had them while they
    lived in this base); ``config()`` and the attack registry keep recording them, so folders
    written before resume.

    Examples:
        >>> import torch
        >>> from robustmer.attacks import BIM
        >>> model = torch.nn.Linear(4, 3)
        >>> x, y = torch.zeros(2, 4), torch.tensor([[1.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
        >>> res = BIM(eps=0.1, eta=0.05, max_iters=5, stop="none")(model, x, y)
        >>> res.x_adv.shape, res.iterations.tolist(), bool(res.delta.abs().max() <= 0.1)
        (torch.Size([2, 4]), [5, 5], True)
    """

    name = "attack"
    recorded: ClassVar[Mapping[str, Any]] = {}
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"norm": norms.NORMS}
    """The allowed values of text settings (merged up the class hierarchy by the registry, so
    the CLI offers them: ``attacks.spec.choices``)."""

    def __init__(self, *, eps: float, eta: float, max_iters: int, norm: str = "linf",
                 box: tuple[float, float] | None = None, random_start: bool = False,
                 seed: int = 0) -> None:
        self.eps = check_positive("eps", eps, allow_zero=True)
        self.eta = check_positive("eta", eta)
        if int(max_iters) != max_iters or max_iters < 0:
            raise ConfigError(f"max_iters must be an integer >= 0, got {max_iters!r}")
        self.max_iters = int(max_iters)
        self.norm = norms.check_norm(norm)
        self.box = check_box(box)
        self.random_start, self.seed = bool(random_start), int(seed)

    # -- what a subclass supplies -------------------------------------------------------------
    def objective(self, out: torch.Tensor, y: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
        """Per-sample value ``(B,)`` that the attack maximises."""
        raise NotImplementedError

    def make_stop(self) -> StopRule:
        """A fresh stop rule for one call."""
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        """JSON-able settings (recorded in ``config.yaml`` beside results)."""
        return in_loop_order({
            "attack": self.name, "eps": self.eps, "eta": self.eta, "max_iters": self.max_iters,
            "norm": self.norm, "box": None if self.box is None else list(self.box),
            "random_start": self.random_start, "seed": self.seed}, self.recorded)

    # -- the loop's hooks ---------------------------------------------------------------------
    def step_rule(self, d_new: torch.Tensor, d: torch.Tensor, grad: torch.Tensor,
                  obj: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None,
                  rows: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Hook for an attack with its own step rule (e.g. APGD's step-size schedule): given the
        loop's proposal ``d_new`` for the stepping ``rows`` (batch indices), their current ``d``,
        masked gradient ``grad``, objective ``obj`` at ``d`` and step counts ``t``, return the
        next ``δ`` (the loop projects it). The default keeps the loop's proposal."""
        return d_new

    def begin(self, x: torch.Tensor) -> dict[str, Any]:
        """Per-call state for :meth:`propose` (e.g. optimiser moments per sample); none here."""
        return {}

    def propose(self, d: torch.Tensor, grad: torch.Tensor, rows: torch.Tensor,
                t: torch.Tensor, state: dict[str, Any]) -> torch.Tensor:
        """The step of ``rows`` (their ``δ``, masked gradient and step numbers ``t`` from 1)
        before :meth:`step_rule` and :meth:`project`: ``δ + η·dir(grad)``."""
        return d + self.eta * norms.direction(grad, self.norm)

    def project(self, delta: torch.Tensor, x: torch.Tensor,
                mask: torch.Tensor | None) -> torch.Tensor:
        """``δ`` back into the ε-ball ∩ box ∩ mask (``norms.project``)."""
        return norms.project(delta, x, self.eps, self.norm, self.box, mask)

    def judged(self, active: torch.Tensor, iters: torch.Tensor) -> torch.Tensor:
        """Which running samples are forwarded and judged this iteration: all of them (a
        sample out of steps is judged once more at its last ``δ``)."""
        return active

    def finish(self, iters: torch.Tensor, converged: torch.Tensor, best: torch.Tensor,
               evaluated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The reported ``(iterations, logged δ)``: the steps taken, and the returned ``δ`` as
        the one the prediction is logged at."""
        return iters, best

    # -- the loop -----------------------------------------------------------------------------
    def __call__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor | None = None) -> AttackResult:
        """Attack ``model`` at inputs ``x`` (targets ``y``); ``mask`` marks perturbable
        positions (same shape as ``x``, e.g. the valid samples of zero-padded clips)."""
        check_inputs(x, y, mask, self.box)
        with eval_mode(model), torch.enable_grad():
            return self._run(model, x.detach(), y.detach(),
                             None if mask is None else mask.to(x.dtype).detach())

    def _run(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             mask: torch.Tensor | None) -> AttackResult:
        s = self._start(model, x, y, mask)
        while bool(s.active.any()):
            s.active = self.judged(s.active, s.iters)
            if not bool(s.active.any()):
                break
            self._iterate(model, x, y, mask, s)
        # a sample that never passed a threshold returns its last δ (and the score there)
        never = ~s.recorded
        last_delta = s.delta.clone()
        s.best[never] = s.delta[never]
        score = torch.where(never, s.score_last, s.score_best)
        iters, logged = self.finish(s.iters, s.converged, s.best, s.evaluated)
        return AttackResult(
            x_adv=(x + s.best).detach(), delta=s.best.detach(), iterations=iters.cpu(),
            converged=s.converged.cpu(), final_threshold=s.stop.final_threshold().cpu(),
            last_passed=s.stop.last_passed().cpu(), score=score.cpu(),
            last_delta=last_delta.detach(), logged_delta=logged.detach(),
            extra={"zero_grad_start": s.zero_start.cpu()})

    def _start(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
               mask: torch.Tensor | None) -> _Loop:
        """``δ₀`` (zero, or a seeded random point of the ball) judged by a fresh stop rule."""
        B, dev = x.shape[0], x.device
        if self.random_start and self.eps > 0:
            gen = torch.Generator().manual_seed(self.seed)
            delta = self.project(norms.random_start(x, self.eps, self.norm, gen, mask), x, mask)
        else:
            delta = torch.zeros_like(x)
        stop = self.make_stop()
        with torch.no_grad():
            done, score0 = stop.start(model(x + delta), y)
        done = done.to(dev)
        score_last = score0.to(dev, torch.float64)
        return _Loop(delta=delta, best=delta.clone(), stop=stop,
                     iters=torch.zeros(B, dtype=torch.int64, device=dev),
                     converged=done.clone(), score_last=score_last,
                     score_best=score_last.clone(), recorded=done.clone() | stop.records_start,
                     evaluated=delta.clone(), active=~done,
                     zero_start=torch.zeros(B, dtype=torch.bool, device=dev),
                     state=self.begin(x))

    def _iterate(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 mask: torch.Tensor | None, s: _Loop) -> None:
        """One iteration for the running samples: forward at ``x + δ``, judge, then step the
        ones that are neither done nor out of steps."""
        rows = s.active.nonzero().squeeze(1)
        sub_model = model.subset(rows) if isinstance(model, Subsettable) else model
        d = s.delta[rows].clone().requires_grad_(True)
        out = sub_model(x[rows] + d)
        s.evaluated[rows] = d.detach()
        passed, finished, score = s.stop.update(out.detach(), y[rows], rows)
        s.best[rows[passed]] = d.detach()[passed]
        score = score.to(s.delta.device, torch.float64)
        s.score_last[rows] = score
        s.score_best[rows[passed]] = score[passed]
        s.recorded[rows[passed]] = True
        s.converged[rows[finished]] = True
        out_of_steps = s.iters[rows] >= self.max_iters
        step = ~finished & ~out_of_steps
        s.active[rows[~step]] = False
        if not bool(step.any()):
            return
        obj = self.objective(out, y[rows], d)
        (grad,) = torch.autograd.grad(obj[step].sum(), d)
        srows = rows[step]
        grad = grad[step]
        x_s, d_s = x[srows], d.detach()[step]
        m_s = None if mask is None else mask[srows]
        if m_s is not None:
            grad = grad * m_s
        d_new = self.propose(d_s, grad, srows, s.iters[srows] + 1, s.state)
        d_new = self.step_rule(d_new, d_s, grad, obj.detach()[step], x_s, m_s, srows,
                               s.iters[srows])
        stuck = (s.iters[srows] == 0) & (grad.reshape(len(srows), -1).abs().amax(dim=1) == 0)
        if bool(stuck.any()):
            d_new = self._leave_start(d_new, stuck, x_s, m_s, srows)
            s.zero_start[srows[stuck]] = True
        s.delta[srows] = self.project(d_new, x_s, m_s)
        s.iters[srows] += 1

    def _leave_start(self, d_new: torch.Tensor, stuck: torch.Tensor, x: torch.Tensor,
                     mask: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor:
        """The first step of samples whose gradient is exactly zero at their start: a seeded
        random point of the ε-ball (seed ``self.seed``), since no gradient step can leave it."""
        if not self.eps > 0:
            raise AttackError(f"{self.name}: the objective's gradient is exactly zero at the start "
                              f"for batch row(s) {rows[stuck].tolist()} and eps = {self.eps}: the "
                              f"attack cannot leave its start (measured against the model's own "
                              f"clean prediction? give labels, or an eps > 0)")
        gen = torch.Generator().manual_seed(self.seed)
        m = None if mask is None else mask[stuck]
        out = d_new.clone()
        out[stuck] = norms.random_start(x[stuck], self.eps, self.norm, gen, m)
        return out
