"""The ε axis of the report's figures: plain decimal tick labels at the budgets present
(``eps_label``, ``eps_axis``), thinned then rotated until no two visible labels overlap
(``declutter_ticks``, measured on the drawn figure: ``visible_tick_boxes``). Matplotlib's log
locator would label 3×10⁻³ and 4×10⁻³ on top of each other (issue 22)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FixedLocator, NullFormatter


def eps_label(eps: float) -> str:
    """A budget as a plain decimal (``0.003``, ``0.0001``), never ``3×10⁻³`` or ``1e-04``."""
    return np.format_float_positional(float(eps), trim="-")


def _overlaps(boxes: Sequence[Any], pad: float = 2.0) -> bool:
    """True when two of the (display-coordinate) boxes, each grown by ``pad`` pixels, meet."""
    return any(b.x0 - pad < a.x1 + pad and a.x0 - pad < b.x1 + pad
               and a.y0 - pad < b.y1 + pad and b.y0 - pad < a.y1 + pad
               for a, b in itertools.combinations(boxes, 2))


def visible_tick_boxes(fig: Figure, ax: Axes, axis: str = "x") -> list[Any]:
    """The display-coordinate boxes of the non-empty, visible major tick labels of ``ax``."""
    if not hasattr(fig.canvas, "get_renderer"):  # e.g. after plt.close: attach Agg again
        from matplotlib.backends.backend_agg import FigureCanvasAgg

        FigureCanvasAgg(fig)
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    labels = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    return [t.get_window_extent(renderer) for t in labels if t.get_visible() and t.get_text()]


def eps_axis(ax: Axes, budgets: Sequence[float], margin: float = 0.08) -> None:
    """A log ε axis with one major tick per budget present, labelled as a plain decimal, and no
    minor tick labels (they are where ``3×10⁻³`` and ``4×10⁻³`` collided), and ``margin`` x the
    decades spanned as room either side. Call
    ``declutter_ticks`` after the layout is final to rotate or thin the labels if they meet."""
    bud = sorted({float(e) for e in budgets if np.isfinite(e) and e > 0})
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(FixedLocator(bud))
    ax.set_xticks(bud, [eps_label(e) for e in bud])
    ax.xaxis.set_minor_formatter(NullFormatter())
    if len(bud) >= 2:  # room either side: ``margin`` x the decades spanned
        lo, hi = np.log10(bud[0]), np.log10(bud[-1])
        pad = margin * (hi - lo)
        ax.set_xlim(10 ** (lo - pad), 10 ** (hi + pad))


def _rotate(ax: Axes) -> None:
    for t in ax.get_xticklabels():
        t.set_rotation(45)
        t.set_horizontalalignment("right")
        t.set_rotation_mode("anchor")


def declutter_ticks(fig: Figure, axes: Axes | Sequence[Axes]) -> None:
    """Rotate the x tick labels of each of ``axes`` by 45° if any two overlap, then blank every
    second, third, ... label (the first and the last kept) until none does. Needs the final
    layout; draws the figure once, and again only for axes that needed a change."""
    todo = [axes] if isinstance(axes, Axes) else list(axes)
    fig.canvas.draw()
    todo = [ax for ax in todo if _overlaps(visible_tick_boxes(fig, ax))]
    for ax in todo:
        _rotate(ax)
    texts = {id(ax): [t.get_text() for t in ax.get_xticklabels()] for ax in todo}
    step = 1
    while todo:
        fig.canvas.draw()
        todo = [ax for ax in todo if _overlaps(visible_tick_boxes(fig, ax))]
        step += 1
        for ax in todo:
            labels = texts[id(ax)]
            if step >= len(labels):  # even two labels do not fit: keep the first
                keep = {0}
            else:
                keep = {i for i in range(len(labels)) if i % step == 0} | {len(labels) - 1}
            ax.set_xticks(ax.get_xticks(),
                          [x if i in keep else "" for i, x in enumerate(labels)])
            _rotate(ax)
        todo = [ax for ax in todo if step < len(texts[id(ax)])]
