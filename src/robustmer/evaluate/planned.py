"""The report's one family of planned comparisons (``planned_family``): the store's pairs of
model types (``store_comparisons``) and every adversarially trained type vs its plain
counterpart (``adversarial_comparisons``), tested at every attack setting and on every curve's
area, Holm-corrected together, each test with its effect sizes and their intervals.

Pairing and the per-clip values come from ``paired_tests`` and ``curves``; effect sizes,
intervals and the correction from ``evaluate.intervals``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from robustmer.errors import ConfigError
from robustmer.evaluate.attack_settings import (
    Setting,
    select_setting,
    setting_key,
    setting_label,
    settings,
)
from robustmer.evaluate.clip_stats import INTERVAL_WORDS, clip_values, done_clips
from robustmer.evaluate.curves import clip_auc, curve_groups, curve_label
from robustmer.evaluate.intervals import PairedEffect, family_correction, paired_effect
from robustmer.evaluate.paired_tests import pair_values
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.evaluate.store import order_model_types
from robustmer.models.types import REGISTRY, default_comparisons

PLANNED = "planned"

ADVERSARIAL = "adversarial training"
"""Why a pair is in the family: the store's planned comparisons, or adversarially trained vs
plain of the same head (``adversarial_comparisons``)."""

FAMILY_METHODS: tuple[str, ...] = ("holm", "bonferroni")


def store_comparisons(config: dict[str, object], types: Sequence[str]) -> list[tuple[str, str]]:
    """The planned comparisons of a store: its ``config.yaml``'s ``comparisons`` when it names
    them (a study writes them), else ``default_comparisons`` of the types present."""
    raw = config.get("comparisons")
    if isinstance(raw, list) and raw:
        return [(str(a), str(b)) for a, b in raw]
    return default_comparisons(list(types))


def adversarial_comparisons(types: Sequence[str]) -> list[tuple[str, str]]:
    """``(adversarially trained, plain)`` for every adversarially trained type among ``types``
    whose plain counterpart (the registered type with the same head ``kind`` and
    ``adversarial=False``) is also present, read from the model-type registry."""
    present = list(dict.fromkeys(str(t) for t in types))
    out = []
    for name in order_model_types(present):
        mt = REGISTRY.get(name)
        kind = getattr(mt, "kind", None)
        if mt is None or not mt.adversarial or kind is None:
            continue
        plain = next((p.name for p in REGISTRY.values()
                      if p.name in present and not p.adversarial
                      and getattr(p, "kind", None) == kind), None)
        if plain is not None:
            out.append((name, plain))
    return out


@dataclass(frozen=True)
class PlannedTest:
    """One test of the family: ``a`` vs ``b`` (``why``: ``PLANNED`` or ``ADVERSARIAL``) on the
    per-clip attacked MAE at one attack ``setting`` (``scope="setting"``) or on the per-clip area
    under ΔMAE(log10 ε) of one curve (``scope="area"``), labelled ``label``; ``effect`` is the
    paired comparison (``intervals.paired_effect``: mean difference a − b and Cohen's d_z with
    their intervals, t, df, p, N pairs and seeds), ``None`` when skipped (``note`` says why);
    ``p_adjusted`` and ``significant`` are the family's correction."""

    a: str
    b: str
    why: str
    scope: str
    label: str
    setting: Setting | None = None
    effect: PairedEffect | None = None
    note: str = ""
    p_adjusted: float = float("nan")
    significant: bool = False

    @property
    def skipped(self) -> bool:
        """True when the test could not be run (see ``note``)."""
        return self.effect is None

    @property
    def interval_excludes_zero(self) -> bool:
        """The bootstrap interval of the mean difference lies entirely above or below 0."""
        if self.effect is None:
            return False
        iv = self.effect.mean_diff_bootstrap
        return bool(np.isfinite(iv.low) and np.isfinite(iv.high) and (iv.low > 0 or iv.high < 0))

    @property
    def agrees(self) -> bool:
        """The test's decision and the seed-clustered interval tell the same story (significant
        and the interval excludes 0, or neither)."""
        return self.skipped or self.significant == self.interval_excludes_zero

    @property
    def formatted(self) -> str:
        """``t(df)=t.tt`` or ``n/a``."""
        e = self.effect
        return "n/a" if e is None else f"t({e.df})={e.t:.2f}"

    def to_dict(self) -> dict[str, object]:
        """Flat dict (for JSON / tables)."""
        d: dict[str, object] = {"a": self.a, "b": self.b, "why": self.why, "scope": self.scope,
                                "label": self.label, "note": self.note,
                                "p_adjusted": self.p_adjusted, "significant": self.significant}
        if self.effect is not None:
            d.update(self.effect.to_dict())
        return d


@dataclass(frozen=True)
class PlannedFamily:
    """The report's one family of planned comparisons (``planned_family``): its ``tests``, the
    ``pairs`` ``(a, b, why)``, the ``settings`` and ``curves`` (labels) they were run at,
    the correction ``method`` at ``alpha`` over ``m`` tests that ran, and the interval
    ``level`` and bootstrap replicates."""

    tests: list[PlannedTest]
    pairs: list[tuple[str, str, str]]
    settings: list[Setting]
    curves: list[str]
    method: str
    alpha: float
    m: int
    level: float
    n_boot: int

    def for_setting(self, setting: Setting) -> list[PlannedTest]:
        """The tests at one attack setting (NaN-safe ε match)."""
        key = setting_key(setting)
        return [t for t in self.tests
                if t.scope == "setting" and t.setting is not None
                and setting_key(t.setting) == key]

    @property
    def areas(self) -> list[PlannedTest]:
        """The tests on the curves' areas."""
        return [t for t in self.tests if t.scope == "area"]

    def statement(self) -> str:
        """The family in one paragraph of plain text: pairs, where, correction, what is shown."""
        if not self.pairs:
            return ("No planned comparison: the store has fewer than two model types to "
                    "compare.")
        method = {"holm": "Holm's step-down correction",
                  "bonferroni": "the Bonferroni correction"}[self.method]
        planned = [f"{a} vs {b}" for a, b, w in self.pairs if w == PLANNED]
        adv = [f"{a} vs {b}" for a, b, w in self.pairs if w == ADVERSARIAL]
        pairs = "; ".join(filter(None, [
            f"planned: {', '.join(planned)}" if planned else "",
            f"adversarially trained vs plain (same head): {', '.join(adv)}" if adv else ""]))
        n_st = len(self.settings)
        where = [f"the per-clip attacked MAE at {'each of the ' if n_st > 1 else 'the '}"
                 f"{n_st} attack setting{'s' if n_st > 1 else ''} "
                 f"({'; '.join(setting_label(st) for st in self.settings)})"]
        if self.curves:
            where.append("the per-clip area under ΔMAE(log10 ε) of "
                         + "; ".join(self.curves))
        ran = sum(not t.skipped for t in self.tests)
        skipped = len(self.tests) - ran
        level = f"{100 * self.level:g} %"
        if ran == 0:
            return (f"No planned comparison could be run: the pairs ({pairs}) lack results "
                    "(the reasons are in the table).")
        return (f"One family of planned comparisons: {ran} two-sided paired t-tests "
                f"(scipy.stats.ttest_rel, pairing the two model types' values by seed and "
                f"clip), {method} over all m = {self.m} at α = {self.alpha:g} (family-wise "
                f"error rate). Pairs ({len(self.pairs)}): {pairs}. Tested on "
                + " and on ".join(where) + ". "
                + (f"{skipped} test(s) could not be run and are listed with the reason; they "
                   "do not count in m. " if skipped else "")
                + f"Beside every p: the mean difference a − b with its {level} interval from "
                f"the {INTERVAL_WORDS} ({self.n_boot} replicates), Cohen's d_z = mean(a − b) / "
                "s.d.(a − b) with its interval from the same bootstrap, t, df, N pairs and "
                "N seeds. The t-test treats the (seed, clip) pairs as independent; the "
                "bootstrap interval does not, and where the two disagree the table says so.")


def planned_family(
    clips: pd.DataFrame,
    runs: pd.DataFrame | None = None,
    comparisons: Sequence[tuple[str, str]] | None = None,
    *,
    adversarial: bool = True,
    alpha: float = 0.05,
    method: str = "holm",
    level: float = 0.95,
    n_boot: int = DEFAULT_N_BOOT,
    seed: int = 0,
) -> PlannedFamily:
    """The report's one family of planned comparisons of a store.

    Pairs: ``comparisons`` (default ``default_comparisons`` of the types present; a store's own
    come from ``store_comparisons``) and, with ``adversarial``, every adversarially trained type
    vs its plain counterpart (``adversarial_comparisons``) not already among them. Each pair is
    tested on the per-clip attacked MAE at every attack setting (bounded budgets and presets)
    and on the per-clip area under ΔMAE(log10 ε) of every curve (``clip_auc``), pairing rows by
    ``(seed, clip_id)`` over the clips of ``done`` runs, with ``intervals.paired_effect`` (t-test,
    mean difference and d_z with crossed-bootstrap intervals, clusters = seeds, items = clips).
    All p-values go through one correction (``intervals.family_correction``, Holm by default):
    the area tests and the per-setting tests are one family, so no test is significant at a
    laxer level than another. A skipped test (a type missing, < 2 pairs) gets a note and does
    not count in m."""
    if method not in FAMILY_METHODS:
        raise ConfigError(f"method={method!r}: expected one of {', '.join(FAMILY_METHODS)}")
    found = settings(clips)
    done = done_clips(clips, runs)
    types = order_model_types(list(done["model_type"].astype(str))
                              + ([] if runs is None else list(runs["model_type"].astype(str))))
    planned = (list(comparisons) if comparisons is not None
               else default_comparisons(types))
    pairs = [(str(a), str(b), PLANNED) for a, b in planned]
    seen = {frozenset((a, b)) for a, b, _ in pairs}
    if adversarial:
        for a, b in adversarial_comparisons(types):
            if frozenset((a, b)) not in seen:
                pairs.append((a, b, ADVERSARIAL))
                seen.add(frozenset((a, b)))
    tests: list[PlannedTest] = []

    def run(values: pd.DataFrame, scope: str, label: str, st: Setting | None,
            unit: str) -> None:
        for a, b, why in pairs:
            paired, note = pair_values(values, a, b, unit)
            effect = None
            if paired is not None:
                try:
                    effect = paired_effect(paired["a"], paired["b"], paired["seed"], level,
                                           items=paired["clip_id"], n_boot=n_boot, seed=seed)
                except ConfigError as err:  # fewer than 2 finite pairs
                    note = f"skipped: {err}"
                if effect is not None and effect.n_excluded:
                    note = "; ".join(filter(None, [note, f"{effect.n_excluded} pairs with a "
                                                   "non-finite value left out"]))
            tests.append(PlannedTest(a, b, why, scope, label, st, effect, note))

    for st in found:
        run(clip_values(select_setting(done, st), "adv"), "setting", setting_label(st), st,
            "clip rows")
    curves = []
    for attack, domain, budgets in curve_groups(done):
        label = curve_label(attack, domain, budgets)
        curves.append(label)
        run(clip_auc(done, attack, domain, budgets), "area", f"area: {label}", None,
            "(seed, clip) areas")
    fam = family_correction([t.effect.p if t.effect is not None else np.nan for t in tests],
                            method, alpha)
    tests = [replace(t, p_adjusted=float(fam.adjusted[i]), significant=bool(fam.reject[i]))
             for i, t in enumerate(tests)]
    return PlannedFamily(tests=tests, pairs=pairs, settings=list(found), curves=curves,
                         method=method, alpha=float(alpha), m=fam.m, level=level,
                         n_boot=n_boot)
