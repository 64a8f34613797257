"""The report's family table: every planned comparison of one store (``family_html``) or of
several side by side (``family_side_by_side_html``), each test with its effect sizes and their
intervals beside its p, grouped by what it tests (``tested_on``).

Apart from ``report.tables`` (Table 1, perceptibility, runs, curves) because the family is one
thing the page shows once per store, computed by ``evaluate.planned``; the cells are built with
the same helpers (``tables.td``, ``tables.table``, ``tables.ci_span``).
"""

from __future__ import annotations

from collections.abc import Mapping

from robustmer.evaluate.clip_stats import INTERVAL_SHORT
from robustmer.evaluate.planned import PlannedFamily, PlannedTest
from robustmer.report.tables import ci_span, esc, fmt, fmt_p, n_range, table, td

TESTED = {"setting": "per-clip attacked MAE", "area": "per-clip area under ΔMAE(log10 ε)"}
"""What a test of each ``PlannedTest.scope`` compares, in words."""


def _decision(t: PlannedTest) -> str:
    if t.skipped:
        return "–"
    word = "yes" if t.significant else "no"
    if t.agrees:
        return word
    if t.significant:
        return (f"{word}, but the bootstrap interval of a − b includes 0: not established "
                "once seeds are treated as clusters")
    return f"{word}, although the bootstrap interval of a − b excludes 0"


def _family_cells(t: PlannedTest) -> list[str]:
    e = t.effect
    if e is None:
        return [td("–")] * 8
    md, dz = e.mean_diff_bootstrap, e.d_z_bootstrap
    return [td(f"{e.n} ({e.n_clusters})"), td(f"{fmt(e.mean_a, 4)} vs {fmt(e.mean_b, 4)}"),
            td(ci_span(md.estimate, md.low, md.high, "diff", 4)),
            td(ci_span(dz.estimate, dz.low, dz.high, "d_z", 2)),
            td(esc(t.formatted)), td(fmt_p(e.p)), td(fmt_p(t.p_adjusted)),
            td(esc(_decision(t)), False)]


FAMILY_HEAD = ("N pairs (seeds)", "mean a vs b", "a − b [95 % interval]",
               "Cohen's d_z [95 % interval]", "t(df)", "p", "p adjusted", "significant")


def tested_on(t: PlannedTest) -> str:
    """``per-clip attacked MAE at bim eps=0.001 (spectrogram)``: what a test compares."""
    return f"{TESTED[t.scope]} at {t.label.removeprefix('area: ')}"


def family_html(family: PlannedFamily) -> str:
    """Every test of the family, grouped by what it tests (each setting, then each curve's
    area: a spanning row), with the effect sizes and intervals beside each p, and one caption
    stating N and the correction."""
    notes = any(t.note for t in family.tests)
    ncol = len(FAMILY_HEAD) + 1 + notes
    method = {"holm": "Holm", "bonferroni": "Bonferroni"}[family.method]
    head = ["<tr><th>comparison (a vs b)</th>"
            + "".join(f"<th>{esc(h if h != 'p adjusted' else f'p ({method})')}</th>"
                      for h in FAMILY_HEAD) + ("<th>note</th>" if notes else "") + "</tr>"]
    rows: list[list[str]] = []
    current = None
    for t in family.tests:
        if tested_on(t) != current:
            current = tested_on(t)
            rows.append([f'<th colspan="{ncol}" class="group">{esc(current)}</th>'])
        why = " (adversarial training)" if t.why != "planned" else ""
        rows.append([td(f"{esc(t.a)} vs {esc(t.b)}{esc(why)}", False), *_family_cells(t),
                     *([td(esc(t.note), False)] if notes else [])])
    ran = [t.effect for t in family.tests if t.effect is not None]
    caption = esc(
        f"The family: {len(family.tests)} tests, {len(ran)} run (m = {family.m}), {method} at "
        f"α = {family.alpha:g}; N = pairs of (seed, clip) values per test, "
        f"{n_range([e.n for e in ran])} pairs over {n_range([e.n_clusters for e in ran])} "
        "seeds. a − b > 0: the first type has the larger error. 'significant': p adjusted "
        f"≤ α; the 95 % intervals are from the {INTERVAL_SHORT}.")
    if not family.tests:
        caption = esc("No planned comparison (N = 0 tests).")
    return '<div class="wide">' + table(head, rows, "family", caption) + "</div>"


def family_side_by_side_html(families: Mapping[str, PlannedFamily]) -> str:
    """The families of several sources: per comparison and setting, the mean difference with its
    interval, the adjusted p and the decision of each source."""
    names = list(families)
    keys = list(dict.fromkeys((t.a, t.b, t.scope, t.label) for f in families.values()
                              for t in f.tests))
    sub = ("N pairs", "a − b [95 % interval]", "p adjusted", "decision")
    head = [
        "<tr><th rowspan=\"2\">comparison</th><th rowspan=\"2\">tested on</th>"
        + "".join(f'<th colspan="{len(sub)}" class="group">{esc(n)}</th>' for n in names)
        + "</tr>",
        "<tr>" + "".join(f"<th>{esc(s)}</th>" for _ in names for s in sub) + "</tr>",
    ]
    rows = []
    for a, b, scope, label in keys:
        cells = [td(f"{esc(a)} vs {esc(b)}", False),
                 td(esc(f"{TESTED[scope]} at {label.removeprefix('area: ')}"), False)]
        for n in names:
            t = next((t for t in families[n].tests
                      if (t.a, t.b, t.scope, t.label) == (a, b, scope, label)), None)
            if t is None or t.effect is None:
                cells += [td("–")] * len(sub)
                continue
            md = t.effect.mean_diff_bootstrap
            cells += [td(str(t.effect.n)), td(ci_span(md.estimate, md.low, md.high, "diff", 4)),
                      td(fmt_p(t.p_adjusted)),
                      td("sig." if t.significant else "n.s.", False)]
        rows.append(cells)
    caption = esc("N = (seed, clip) pairs per test; each source's own family and correction "
                  "(stated in its section).")
    return table(head, rows, "family compare", caption)
