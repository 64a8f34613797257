"""The L2I (Listen to Interpret) section of the report: fidelity and faithfulness tables and
audio players for the input, the interpretation and each selected component.

Reads only what ``robustmer l2i evaluate`` / ``explain`` wrote into a run's ``l2i/`` folder
(``fidelity.csv``, ``faithfulness.csv``, ``explain/*/explanation.json`` + WAVs + figure.png).
Audio is linked (relative paths from the page), the figures are embedded.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pandas as pd

from robustmer.io import read_json
from robustmer.report.tables import esc, fmt, fmt_p, table, td

L2I_DIR = "l2i"


def find_l2i(path: str | os.PathLike[str]) -> Path | None:
    """``path/l2i`` or ``path`` itself when it holds L2I results (``fit.json`` or
    ``fidelity.csv``: a run's ``explain/`` folder of ``robustmer explain`` is not one), else
    None."""
    p = Path(path)
    for cand in (p / L2I_DIR, p):
        if (cand / "fit.json").is_file() or (cand / "fidelity.csv").is_file():
            return cand
    return None


def _df_html(df: pd.DataFrame, p_cols: tuple[str, ...] = ()) -> str:
    head = ["<tr>" + "".join(f"<th>{esc(c)}</th>" for c in df.columns) + "</tr>"]
    rows = []
    for _, row in df.iterrows():
        cells = []
        for c in df.columns:
            v = row[c]
            if c in p_cols:
                cells.append(td(fmt_p(float(v))))
            elif c == "n" or (isinstance(v, float) and c.startswith("n_") and v == int(v)):
                cells.append(td(str(int(v))))
            elif isinstance(v, int | float) and not isinstance(v, bool):
                cells.append(td(fmt(v)))
            else:
                cells.append(td(esc(v), numeric=False))
        rows.append(cells)
    return table(head, rows).replace("<table>", f"<table><caption>N = {len(df)} rows"
                                                  "</caption>", 1)


def _audio(path: Path, base: Path, label: str) -> str:
    src = esc(Path(os.path.relpath(path, base)).as_posix())
    return f'<div>{esc(label)} <audio controls preload="metadata" src="{src}"></audio></div>'


def l2i_section_html(l2i_dir: str | os.PathLike[str], page_dir: str | os.PathLike[str],
                     title: str = "") -> str:
    """One ``<section>`` for the L2I results in ``l2i_dir``; audio links relative to
    ``page_dir`` (the folder of the HTML page)."""
    d, base = Path(l2i_dir), Path(page_dir)
    parts = [f'<section id="l2i-{esc(d.parent.name)}"><h2>Listen to Interpret '
             f"{esc(title or d.parent.name)}</h2>",
             '<p class="caption">Post-hoc NMF interpreter (Parekh et al. 2022), see '
             "docs/l2i.md. Fidelity: agreement of the interpreter Θ with the model (top-k for a "
             "classifier, Pearson r / MAE for a regressor). Faithfulness: drop of the model's "
             "output when the selected components are removed, FF = f(x) − f(x without them), "
             "against removing as many random components; FF &gt; 0: the selected components "
             "raise the output (removing them lowers it, as a faithful explanation should), "
             "FF &lt; 0: they lower it. n = the (clip, output) pairs; Wilcoxon signed-rank p of "
             "the paired difference.</p>"]
    if (d / "fidelity.csv").is_file():
        parts += ["<h3>Fidelity</h3>", _df_html(pd.read_csv(d / "fidelity.csv"))]
    if (d / "faithfulness.csv").is_file():
        parts += ["<h3>Faithfulness</h3>",
                  _df_html(pd.read_csv(d / "faithfulness.csv"), p_cols=("wilcoxon_p",))]
    examples = sorted((d / "explain").glob("*/explanation.json")) if (d / "explain").is_dir() \
        else []
    if examples:
        parts.append('<h3>Listen</h3><div class="media">')
        for ex in examples:
            info = read_json(ex)
            folder = ex.parent
            inner = [f"<figcaption>{esc(folder.name)}: output {esc(info.get('target_name'))}, "
                     f"τ = {esc(info.get('tau'))}, model {fmt(info.get('model_output'))}, "
                     f"interpreter {fmt(info.get('interpreter_output'))}</figcaption>",
                     _audio(folder / "input.wav", base, "input"),
                     _audio(folder / "interpretation.wav", base, "interpretation")]
            for k, name in sorted(info.get("component_files", {}).items(),
                                  key=lambda kv: -info["relevance"].get(str(kv[0]), 0.0)):
                rel = info["relevance"].get(str(k))
                inner.append(_audio(folder / name, base, f"component {k} (r = {fmt(rel, 2)})"))
            fig = folder / "figure.png"
            if fig.is_file():
                uri = base64.b64encode(fig.read_bytes()).decode("ascii")
                inner.append(f'<img alt="L2I figure {esc(folder.name)}" '
                             f'src="data:image/png;base64,{uri}">')
            parts.append("<figure>" + "".join(inner) + "</figure>")
        parts.append("</div>")
    parts.append("</section>")
    return "\n".join(parts)
