"""The analysis behind a results store's section of the HTML report: read the store, compute
every table, test and curve (``evaluate``), draw the figures (written to ``FIGURES_DIR`` beside
the page) and find the listening examples, into one ``SourceResults`` per store.

Kept apart from the page (``report.html``, which only renders ``SourceResults`` as HTML) so that
what the report *says* and how it is *laid out* can be read, tested and changed separately.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer import EMOTIONS
from robustmer.errors import ConfigError, DatasetError
from robustmer.evaluate.attack_settings import Setting, select_setting, setting_label, settings
from robustmer.evaluate.curves import Curve, curve_points, robustness_curves
from robustmer.evaluate.planned import PlannedFamily, PlannedTest, planned_family, store_comparisons
from robustmer.evaluate.resampling import DEFAULT_N_BOOT
from robustmer.evaluate.store import ResultsStore, order_model_types, output_names
from robustmer.evaluate.study_tables import snr_table, table1, zero_delta_clips
from robustmer.evaluate.summary import summarize_runs
from robustmer.report import figures
from robustmer.report.checks import checks_section
from robustmer.report.page import FIGURES_DIR, data_uri


@dataclass
class MediaItem:
    """One clip's media for the page: audio paths (relative URLs) or a δ image (data URI)."""

    model_type: str
    run_id: str
    clip_id: str
    clean_src: str | None = None
    adv_src: str | None = None
    delta_src: str | None = None


@dataclass
class SettingPart:
    """Table 1, the family's tests at this setting, the SNR table with its clip accounting
    (``zero``: ``study_tables.zero_delta_clips``) and Figures 3-4 (``figure4``: one figure per
    output) of one attack setting of a store."""

    setting: Setting | None
    slug: str
    table1: pd.DataFrame
    tests: list[PlannedTest]
    snr: pd.DataFrame
    zero: pd.DataFrame = field(default_factory=pd.DataFrame)
    figure3: bytes = b""
    figure4: dict[str, bytes] = field(default_factory=dict)

    @property
    def label(self) -> str:
        """The setting's human label (``attack_settings.setting_label``)."""
        return setting_label(self.setting) if self.setting is not None else "no attack setting"


@dataclass
class SourceResults:
    """Everything the report shows for one results store. ``table1``, ``snr``, ``figure3`` and
    ``figure4`` are those of the first attack setting (the only one of a one-setting store);
    ``parts`` has them for every setting, ``family`` the store's one family of planned
    comparisons, ``curves`` the robustness curves (empty unless an attack has two bounded
    budgets), ``media_setting`` the label of the setting the adversarial media come from."""

    name: str
    slug: str
    store: ResultsStore
    per_run: pd.DataFrame
    clips: pd.DataFrame
    table1: pd.DataFrame
    family: PlannedFamily
    snr: pd.DataFrame
    config: dict[str, Any]
    meta: dict[str, Any]
    figure3: bytes = b""
    figure4: dict[str, bytes] = field(default_factory=dict)
    media: list[MediaItem] = field(default_factory=list)
    parts: list[SettingPart] = field(default_factory=list)
    curves: list[Curve] = field(default_factory=list)
    curve_points: pd.DataFrame = field(default_factory=pd.DataFrame)
    curve_figure: bytes = b""
    outputs: list[str] = field(default_factory=list)
    units: str = ""
    media_setting: str = ""

    @property
    def settings(self) -> list[Setting]:
        """The store's attack settings (``attack_settings.settings`` order)."""
        return [p.setting for p in self.parts if p.setting is not None]
    checks: str = ""


def _slug(text: str) -> str:
    """``text`` as a lower-case id for HTML anchors and figure file names."""
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-").lower() or "source"


def _rel_url(target: Path, base_dir: Path) -> str:
    rel = os.path.relpath(target.resolve(), base_dir.resolve())
    return urllib.parse.quote(Path(rel).as_posix())


def _source_name(store: ResultsStore, meta: dict[str, Any], config: dict[str, Any]) -> str:
    origin = meta.get("source") or config.get("source") or "robustmer"
    # an attack folder's page is named by the folder, not by the store derived inside it
    folder = config.get("attack_folder")
    return f"{origin} ({Path(folder).name if folder else store.path.resolve().name})"


def _collect_media(store: ResultsStore, per_run: pd.DataFrame, out_dir: Path,
                   per_type: int) -> list[MediaItem]:
    """Up to ``per_type`` clips with media per model type, from its lowest-seed runs first."""
    items: list[MediaItem] = []
    if per_type <= 0 or not store.media_dir.is_dir():
        return items
    for t in order_model_types(per_run["model_type"]):
        runs = per_run[(per_run["model_type"] == t) & (per_run["status"] == "done")]
        found: list[MediaItem] = []
        for run_id in runs.sort_values(["seed", "run_id"])["run_id"].drop_duplicates():
            run_dir = store.media_dir / str(run_id)
            if not run_dir.is_dir():
                continue
            clip_ids = sorted({p.name.rsplit("_", 1)[0] for p in run_dir.iterdir()
                               if re.fullmatch(r".+_(clean\.wav|adv\.wav|delta\.png|delta\.npz)",
                                               p.name)})
            for clip in clip_ids:
                item = MediaItem(t, str(run_id), clip)
                clean = store.media_path(run_id, clip, "clean.wav")
                adv = store.media_path(run_id, clip, "adv.wav")
                png = store.media_path(run_id, clip, "delta.png")
                npz = store.media_path(run_id, clip, "delta.npz")
                if clean.is_file() and adv.is_file():
                    item.clean_src = _rel_url(clean, out_dir)
                    item.adv_src = _rel_url(adv, out_dir)
                if png.is_file():
                    item.delta_src = data_uri(png.read_bytes())
                elif npz.is_file():
                    item.delta_src = data_uri(figures.delta_image(
                        _load_delta(npz), title=f"δ {t} run {run_id} clip {clip}"))
                if item.clean_src or item.delta_src:
                    found.append(item)
                if len(found) >= per_type:
                    break
            if len(found) >= per_type:
                break
        items.extend(found)
    return items


def _load_delta(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            key = "delta" if "delta" in z.files else (z.files[0] if z.files else None)
            if key is None:
                raise DatasetError(f"{path}: no array inside")
            return np.asarray(z[key])
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable .npz with a 'delta' array ({err})") from err


def media_setting(config: dict[str, Any], found: Sequence[Setting]) -> Setting | None:
    """The attack setting a study's adversarial media come from: the first entry of its
    ``config.yaml`` ``attack.settings`` (the study copies media from its first setting),
    matched to the store's settings by attack, domain and budget (a preset without an effective
    bound has ε NaN in the store); the only setting of a one-setting store; else ``None``."""
    attack = config.get("attack") if isinstance(config.get("attack"), dict) else {}
    first = (attack.get("settings") or [None])[0] if isinstance(attack, dict) else None
    if isinstance(first, dict):
        spec = first.get("attack") or {}
        name, domain = str(spec.get("name", "")), str(first.get("domain", ""))
        same = [st for st in found if st[0] == name and st[1] == domain]
        eps = spec.get("eps")
        for st in same:
            if eps is not None and np.isfinite(st[2]) and np.isclose(st[2], float(eps)):
                return st
        unbounded = [st for st in same if not np.isfinite(st[2])]
        if unbounded:
            return unbounded[0]
    return found[0] if len(found) == 1 else None


def _unique_slug(name: str, taken: set[str]) -> str:
    """The slug of ``name``, numbered (``-2``, ``-3``...) until it is not in ``taken``; added
    to ``taken``."""
    slug = _slug(name)
    base, k = slug, 2
    while slug in taken:
        slug, k = f"{base}-{k}", k + 1
    taken.add(slug)
    return slug


def _outputs(runs: pd.DataFrame, clips: pd.DataFrame, emotions: Sequence[str] | None
             ) -> tuple[list[str], list[str]]:
    """The store's outputs and those Figure 4 offers (``emotions``, default all of them)."""
    outputs = output_names(clips, "y_") or output_names(runs, "r_")
    fig4_outputs = list(outputs) if emotions is None else list(emotions)
    for e in fig4_outputs:
        if e not in outputs:
            raise ConfigError(f"--emotion {e!r}: expected one of the store's outputs "
                              f"{', '.join(outputs)}")
    return outputs, fig4_outputs


def _units(config: dict[str, Any], outputs: Sequence[str]) -> str:
    """The targets' units from ``config.yaml: target_info``."""
    return str((config.get("target_info") or {}).get("units") or (
        # stores written before units were recorded: the paper's layout, ratings / 10
        "ratings divided by 10" if list(outputs) == list(EMOTIONS) else ""))


def _setting_part(st: Setting | None, one: bool, runs: pd.DataFrame, clips: pd.DataFrame,
                  done_ids: set[str], family: PlannedFamily, name: str, slug: str,
                  fig_dir: Path, fig4_outputs: Sequence[str], n_boot: int) -> SettingPart:
    """Table 1, the family's tests, the SNR table and Figures 3-4 of one setting ``st``
    (``None``: a store without settings); ``one``: the store has only this setting."""
    c_sel = clips if st is None else select_setting(clips, st)
    r_sel = runs if st is None else select_setting(runs, st, keep_unset=True)
    label = "" if one else f" ({setting_label(st)})" if st else ""
    pslug = slug if one else f"{slug}-{_slug(setting_label(st))}" if st else slug
    d_sel = c_sel[c_sel["run_id"].isin(done_ids)]
    pr_sel = summarize_runs(c_sel, r_sel)
    part = SettingPart(
        setting=st, slug=pslug, table1=table1(r_sel, c_sel, n_boot=n_boot),
        tests=family.for_setting(st) if st is not None else list(family.tests),
        snr=snr_table(r_sel, c_sel, n_boot=n_boot), zero=zero_delta_clips(d_sel))
    part.figure3 = figures.delta_mae_boxplot(
        pr_sel[pr_sel["status"] == "done"], fig_dir / f"{pslug}-figure3.png",
        title=f"ΔMAE per model type: {name}{label}")
    for o in fig4_outputs:
        part.figure4[o] = figures.prediction_scatter(
            d_sel, [o], None, fig_dir / f"{pslug}-figure4-{_slug(o)}.png",
            title=f"{o}: true vs predicted, clean (x) and adversarial (o): {name}{label}")
    return part


def analyse_store(
    path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    emotions: Sequence[str] | None = None,
    comparisons: Sequence[tuple[str, str]] | None = None,
    alpha: float = 0.05,
    media_clips: int = 2,
    taken: set[str] | None = None,
    n_boot: int = DEFAULT_N_BOOT,
) -> SourceResults:
    """Read one results store and compute every table, test and figure of its report section.

    ``emotions``: the outputs Figure 4 offers (default: every output of the store, one figure
    each, the reader picks one); ``comparisons``: the planned pairs (default: the store's own,
    else ``models.types.default_comparisons`` of its types), to which the family adds every
    adversarially trained type vs its plain counterpart; ``taken``: slugs of the stores already
    on the page (this store's is added); ``n_boot``: bootstrap replicates of every interval."""
    store = ResultsStore(path)
    if not store.path.is_dir():
        raise ConfigError(f"RESULTS_DIR {store.path}: not a folder")
    runs = store.read_runs()
    clips = store.read_clips()
    outputs, fig4_outputs = _outputs(runs, clips, emotions)
    config, meta = store.read_config(), store.read_meta()
    if comparisons is None:
        comparisons = store_comparisons(config, order_model_types(runs["model_type"]))
    name = _source_name(store, meta, config)
    slug = _unique_slug(name, taken if taken is not None else set())
    per_run = summarize_runs(clips, runs)
    done_ids = set(per_run.loc[per_run["status"] == "done", "run_id"])
    fig_dir = Path(out_dir) / FIGURES_DIR
    found: list[Setting | None] = list(settings(clips)) or [None]
    # one family over pairs x (settings + curve areas), Holm
    family = planned_family(clips, runs, comparisons, alpha=alpha, n_boot=n_boot)
    parts = [_setting_part(st, len(found) == 1, runs, clips, done_ids, family, name, slug,
                           fig_dir, fig4_outputs, n_boot) for st in found]
    first = parts[0]
    m_st = media_setting(config, [st for st in found if st is not None])
    res = SourceResults(
        name=name, slug=slug, store=store, per_run=per_run,
        clips=clips[clips["run_id"].isin(done_ids)], outputs=list(outputs),
        units=_units(config, outputs), table1=first.table1, family=family, snr=first.snr,
        config=config, meta=meta, figure3=first.figure3, figure4=first.figure4, parts=parts,
        curves=robustness_curves(runs, clips, comparisons, alpha=alpha, n_boot=n_boot),
        media_setting=setting_label(m_st) if m_st is not None else "",
    )
    if res.curves:
        res.curve_points = curve_points(per_run, clips, n_boot=n_boot)
        res.curve_figure = figures.robustness_curves(
            res.curve_points, fig_dir / f"{slug}-curves.png",
            title=f"Robustness against the attack budget: {name} (mean over seeds, 95 % "
                  "bootstrap interval over seeds and clips)")
    res.media = _collect_media(store, per_run, Path(out_dir), media_clips)
    res.checks = checks_section(store.path, fig_dir, slug)
    return res
