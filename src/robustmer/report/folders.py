"""``robustmer report`` on the folders other commands write, each page titled and described for
what it is: an explanation (``robustmer explain``), L2I results (``robustmer l2i``), and a run
folder holding several of them (an index page linking each, plus its attack folders and
explainer evaluations). A results store, an attack folder and an explainer-eval folder have
their own pages (``report/html.py``, ``report/explain.py``); :func:`folder_kind` says which a
folder is.
"""

from __future__ import annotations

import os
from pathlib import Path

from robustmer.errors import ConfigError
from robustmer.io import read_json, write_text
from robustmer.report.l2i import find_l2i, l2i_section_html
from robustmer.report.page import REPORT_FILE, data_uri, dump, page
from robustmer.report.tables import esc, fmt, table, td

EXPLANATION_FILE = "explanation.json"
KINDS: tuple[str, ...] = ("store", "attack", "explainer-eval", "explanation", "l2i", "run")


def folder_kind(path: str | os.PathLike[str]) -> str | None:
    """What a folder is, by the files a command leaves there: ``store`` (``clips.csv`` and
    ``runs.csv``), ``attack`` (``attack.csv``), ``explainer-eval`` (``adversarial.csv``),
    ``explanation`` (``explanation.json`` and ``attribution.npz``; an L2I example has no
    ``attribution.npz``), ``l2i`` (``fit.json`` or ``fidelity.csv``), ``run``
    (``best/``), else None."""
    p = Path(path)
    if (p / "clips.csv").is_file() and (p / "runs.csv").is_file():
        return "store"
    if (p / "attack.csv").is_file():
        return "attack"
    if (p / "adversarial.csv").is_file():
        return "explainer-eval"
    if (p / EXPLANATION_FILE).is_file() and (p / "attribution.npz").is_file():
        return "explanation"
    if (p / "fit.json").is_file() or (p / "fidelity.csv").is_file():
        return "l2i"
    if (p / "best").is_dir():
        return "run"
    return None


def explanation_page(folder: str | os.PathLike[str],
                     out: str | os.PathLike[str] | None = None) -> Path:
    """The page of one ``robustmer explain`` folder: each explained output's attribution map
    (with its alt text), the ranking of its segments with their scores, and for a concept
    bottleneck the concept contributions."""
    d = Path(folder)
    info = read_json(d / EXPLANATION_FILE)
    targets = info.get("targets") or []
    view = info.get("view", "spectrogram")
    title = f"Explanation of clip {info.get('clip_id')} by {info.get('method')}"
    grid = info.get("grid") or {}
    n_seg = grid.get("n_freq", 1) * grid.get("n_time", 1)
    desc = (f"{esc(info.get('method'))} attributions of a {esc(info.get('task', 'model'))} "
            f"model's outputs on the fixed excerpt of clip {esc(info.get('clip_id'))} "
            f"({esc(info.get('split'))} split), in the {esc(view)} view, with {n_seg} "
            f"segments ({esc(grid.get('n_freq'))} frequency bands × {esc(grid.get('n_time'))} "
            "time blocks; a segment's score aggregates the attribution inside it, higher = more "
            "important). See docs/explain.md.")
    body = []
    for t in targets:
        png = d / str(t.get("figure", ""))
        scores = t.get("segment_scores") or []
        ranking = t.get("ranking") or []
        body.append(f"<h2>{esc(t.get('target'))} (output {fmt(t.get('output'))})</h2>")
        if png.is_file():
            alt = (f"{info.get('method')} attribution map of clip {info.get('clip_id')} for "
                   f"{t.get('target')}, {n_seg} segments")
            body.append(f'<figure><img alt="{esc(alt)}" src="{data_uri(png.read_bytes())}">'
                        "</figure>")
        rows = [[td(str(rank + 1)), td(str(seg)), td(f"{scores[seg]:.3g}")]
                for rank, seg in enumerate(ranking[:10]) if seg < len(scores)]
        head = ["<tr><th>rank</th><th>segment</th><th>score</th></tr>"]
        body.append(table(head, rows).replace(
            "<table>", f"<table><caption>The 10 highest-scoring of N = {len(scores)} "
                       f"segments</caption>", 1))
    if (d / "concepts.png").is_file():
        body.append("<h2>Concept contributions</h2><figure>"
                    f'<img alt="Each concept\'s contribution to each output of clip '
                    f'{esc(info.get("clip_id"))}" '
                    f'src="{data_uri((d / "concepts.png").read_bytes())}"></figure>')
    body.append(f"<details><summary>Settings</summary><pre>{esc(dump(info.get('explainer')))}"
                "</pre></details>")
    path = Path(out) if out is not None else d / REPORT_FILE
    write_text(path, page(title, desc, "\n".join(body)))
    return path


def l2i_page(l2i_dir: str | os.PathLike[str], out: str | os.PathLike[str]) -> Path:
    """The page of a run's L2I results alone."""
    d = Path(l2i_dir)
    run = d.parent.name if d.name == "l2i" else d.name
    fit = read_json(d / "fit.json") if (d / "fit.json").is_file() else {}
    desc = ("Listen to Interpret (Parekh et al. 2022; docs/l2i.md) on run "
            f"{esc(run)}: an NMF dictionary of the audio and an interpreter trained to "
            f"reproduce the model from its hidden layers ({esc(', '.join(fit.get('layers') or []))}"
            "); how well it reproduces the model (fidelity), whether the components it selects "
            "matter to the model (faithfulness), and listenable interpretations.")
    path = Path(out)
    write_text(path, page(f"Listen to Interpret: run {run}", desc,
                          l2i_section_html(d, path.parent, title=f"run {run}")))
    return path


def run_index_page(run_dir: str | os.PathLike[str],
                   out: str | os.PathLike[str] | None = None) -> Path:
    """A run folder's page linking one page per result inside it (explanations, L2I, attack
    folders, explainer evaluations), writing each of those pages first."""
    from robustmer.evaluate.attack_folder import attack_folder_store
    from robustmer.report.explain import build_explain_report
    from robustmer.report.html import build_report

    d = Path(run_dir)
    path = Path(out) if out is not None else d / REPORT_FILE
    items: list[tuple[str, str, Path]] = []
    for sub in sorted(p for p in d.rglob("*") if p.is_dir()):
        kind = folder_kind(sub)
        if kind == "explanation":
            items.append(("explanation", sub.name, explanation_page(sub)))
        elif kind == "attack":
            store = attack_folder_store(sub)
            items.append(("attack", str(sub.relative_to(d)),
                          build_report(store.path, sub / REPORT_FILE)))
        elif kind == "explainer-eval":
            items.append(("explainer-eval", sub.name, build_explain_report(sub)))
    l2i = find_l2i(d)
    if l2i is not None:
        items.append(("l2i", l2i.name, l2i_page(l2i, l2i / REPORT_FILE)))
    if not items:
        raise ConfigError(f"{d}: a run folder without results to report (no explain/, l2i/, "
                          "attack or explainer-eval folder inside)")
    rows = [[td(esc(kind), False), td(esc(name), False),
             td(f'<a href="{esc(Path(os.path.relpath(p, path.parent)).as_posix())}">'
                 f"{esc(p.name)}</a>", False)] for kind, name, p in items]
    body = table(["<tr><th>kind</th><th>folder</th><th>page</th></tr>"], rows).replace(
        "<table>", f"<table><caption>N = {len(items)} results in this run folder</caption>", 1)
    write_text(path, page(f"Run {d.name}", f"The results kept in the run folder {esc(d)}: one "
                          "page each (explanations, Listen to Interpret, attacks and explainer "
                          "evaluations of this run).", body))
    return path
