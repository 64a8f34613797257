"""The report page of an explainer-eval folder (written by ``robustmer explainer-eval``), under
its historical module name: the page is ``report/xeval_page.py``, its numbers
``report/xeval_stats.py``, its figures ``report/xeval_figures.py`` and the standard tests'
sections ``report/xeval_standard.py``. The names below are re-exported for the CLI, the tests
and the benchmarks that import them from here."""

from __future__ import annotations

from robustmer.report.xeval_figures import (
    BASELINE_STYLE,
    explainer_colors,
    flip_curves_png,
    flip_direction_png,
    map_png,
    recovery_png,
)
from robustmer.report.xeval_page import (
    attack_html,
    build_explain_report,
    is_explainer_eval,
    render_explain_html,
)
from robustmer.report.xeval_standard import (
    deletion_png,
    localisation_png,
    sanity_maps_png,
    sanity_png,
    standard_html,
)
from robustmer.report.xeval_stats import (
    class_names,
    direction_summary,
    flip_summary,
    localisation_summary,
    recovery_summary,
    smallest_k,
    wilson,
    with_direction,
)

__all__ = [
    "BASELINE_STYLE", "attack_html", "build_explain_report", "class_names", "deletion_png",
    "direction_summary", "explainer_colors", "flip_curves_png", "flip_direction_png",
    "flip_summary", "is_explainer_eval", "localisation_png", "localisation_summary", "map_png",
    "recovery_png", "recovery_summary", "render_explain_html", "sanity_maps_png", "sanity_png",
    "smallest_k", "standard_html", "wilson", "with_direction",
]
