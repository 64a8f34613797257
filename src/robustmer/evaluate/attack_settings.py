"""Attack settings of a results store: what one setting ``(attack, domain, eps)`` is, which
settings a table holds, the rows of one setting, and the setting an old store was attacked with.

Kept apart from the store's reading and writing (``evaluate.store``) because every statistic and
every page groups rows by setting while only the store does I/O. The human label of a setting is
``attacks.spec.setting_label`` (one label for the whole package); it is importable from here so
that report/, which may not import attacks/, reaches the same function.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from robustmer.attacks.spec import setting_label
from robustmer.errors import DatasetError

__all__ = [
    "DEFAULT_SETTING", "DOMAINS", "REFERENCE_SETTING", "SETTING_COLUMNS", "Setting",
    "check_settings", "config_setting", "select_setting", "setting_key", "setting_label",
    "setting_sort_key", "settings",
]

SETTING_COLUMNS: tuple[str, ...] = ("attack", "domain", "eps")
"""One attack *setting* (docs/report.md): the attack's name (``bim``, ``pgd``, a preset such as
``reference``), its domain and its budget ε (NaN for an attack without an effective bound)."""

DOMAINS: tuple[str, ...] = ("spectrogram", "waveform")
"""Allowed values of the ``domain`` column."""

Setting = tuple[str, str, float]
"""``(attack, domain, eps)``."""

DEFAULT_SETTING: Setting = ("bim", "spectrogram", float("nan"))
"""The setting of an old store without setting columns and without an attack block in its
``config.yaml``."""

REFERENCE_SETTING: Setting = ("reference", "spectrogram", float("nan"))
"""The setting of the imported published logs (study/cpjku.py): the reference study's attack,
whose nominal budget (ε = 0.001, kept in the store's config.yaml) never took effect (see
docs/attacks.md), so it has no bound -- the same setting as robustmer's ``reference`` preset, so
that a study listing the preset lines up with the published logs under ``--compare``."""


def _nan_last(eps: float) -> tuple[bool, float]:
    return (math.isnan(eps), 0.0 if math.isnan(eps) else eps)


def setting_sort_key(setting: Setting) -> tuple[str, str, bool, float]:
    """Sort key of a setting: attack, domain, then ε with NaN (no bound) last."""
    attack, domain, eps = setting
    return (attack, domain, *_nan_last(float(eps)))


def settings(frame: pd.DataFrame) -> list[Setting]:
    """The attack settings ``(attack, domain, eps)`` present in a ``clips.csv`` or ``runs.csv``
    frame, sorted by (attack, domain, eps) with NaN ε last; rows without a setting (runs that
    failed before any attack) are ignored. A frame without the setting columns has none."""
    if len(frame) == 0 or any(c not in frame.columns for c in SETTING_COLUMNS):
        return []
    sub = frame[list(SETTING_COLUMNS)]
    sub = sub[sub["attack"].astype(str).str.strip() != ""]
    found: dict[tuple[str, str, str], Setting] = {}
    for attack, domain, eps in sub.itertuples(index=False, name=None):
        st: Setting = (str(attack), str(domain), float(eps))
        found.setdefault(setting_key(st), st)
    return sorted(found.values(), key=setting_sort_key)


def setting_key(setting: Setting) -> tuple[str, str, str]:
    """A hashable, NaN-safe key of a setting (NaN != NaN, so floats are no dict keys)."""
    attack, domain, eps = setting
    e = float(eps)
    return (str(attack), str(domain), "nan" if math.isnan(e) else repr(e))


def select_setting(frame: pd.DataFrame, setting: Setting, *, keep_unset: bool = False
                   ) -> pd.DataFrame:
    """The rows of ``frame`` with this setting (ε compared NaN-equal); with ``keep_unset`` also
    the rows without a setting (runs that failed or were not runnable)."""
    if any(c not in frame.columns for c in SETTING_COLUMNS):
        return frame
    attack, domain, eps = setting
    e = float(eps)
    col = frame["eps"].to_numpy(np.float64)
    same_eps = np.isnan(col) if math.isnan(e) else np.isclose(col, e, rtol=1e-12, atol=0.0)
    mask = (frame["attack"].astype(str) == str(attack)) & (frame["domain"].astype(str)
                                                            == str(domain)) & same_eps
    if keep_unset:
        mask |= frame["attack"].astype(str).str.strip() == ""
    return frame[mask.to_numpy()]


def check_settings(out: pd.DataFrame, where: str, need_all: bool) -> None:
    """Check the setting columns of a store table being validated (``store.validate_frame``):
    every clip row (``need_all``), and every ``done`` run row, names its setting; a domain is
    one of ``DOMAINS``; a finite ε is positive. ``DatasetError`` names ``where`` (the file) and
    the CSV line (data row ``i`` is line ``i + 2``: line 1 is the header)."""
    named = out["attack"].astype(str).str.strip() != ""
    must = (pd.Series(True, index=out.index) if need_all
            else out.get("status", pd.Series("done", index=out.index)) == "done")
    for col in ("attack", "domain"):
        bad = must & (out[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            what = "every row" if need_all else "a done run"
            raise DatasetError(f"{where}: line {i + 2}: column {col} is empty ({what} "
                               "names its attack setting)")
    bad = named & ~out["domain"].isin(DOMAINS)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(f"{where}: line {i + 2}: domain {out['domain'].iloc[i]!r} is not "
                           f"one of {', '.join(DOMAINS)}")
    eps = out["eps"].to_numpy(np.float64)
    bad = np.isfinite(eps) & (eps <= 0) | np.isinf(eps)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DatasetError(f"{where}: line {i + 2}: eps must be a positive number or empty "
                           f"(no bound), found {eps[i]!r}")


def config_setting(config: dict[str, Any]) -> Setting:
    """The one setting an old store (without setting columns) was attacked with, from its
    ``config.yaml``: the imported published logs (``source: cpjku``) get ``REFERENCE_SETTING``;
    an ``attack`` block gives its ``name`` (default ``bim``), ``domain`` and a single ``eps``;
    otherwise ``DEFAULT_SETTING``."""
    if config.get("source") == "cpjku":
        return REFERENCE_SETTING
    block = config.get("attack")
    if not isinstance(block, dict):
        return DEFAULT_SETTING
    attack = str(block.get("name") or DEFAULT_SETTING[0])
    domain = str(block.get("domain") or DEFAULT_SETTING[1])
    raw: Any = block.get("eps")
    if isinstance(raw, list | tuple) and len(raw) == 1:
        raw = raw[0]
    try:
        eps = float(raw) if raw is not None and not isinstance(raw, bool) else float("nan")
    except (TypeError, ValueError):
        eps = float("nan")
    if not (math.isfinite(eps) and eps > 0):
        eps = float("nan")
    return (attack, domain if domain in DOMAINS else DEFAULT_SETTING[1], eps)
