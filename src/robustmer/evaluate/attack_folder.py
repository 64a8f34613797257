"""A single attack folder (``robustmer attack --out DIR``) as a one-run results store, so that
train -> attack -> report works without a study.

The store is built from ``attack.csv`` with the same code the study uses
(``clips_from_attack_table``, ``run_row``), and the first clips' audio or δ examples are
copied as its media; everything in the report is then computed as for a study.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from robustmer.errors import DatasetError
from robustmer.evaluate.store import ResultsStore
from robustmer.evaluate.summary import clips_from_attack_table, run_row
from robustmer.io import read_json, run_meta

TABLE = "attack.csv"
STORE_DIR = "report-store"
"""Where the derived store is written inside the attack folder."""


def is_attack_folder(path: str | os.PathLike[str]) -> bool:
    """A folder written by ``robustmer attack`` (``attack.csv`` and no ``clips.csv``)."""
    p = Path(path)
    return (p / TABLE).is_file() and not (p / "clips.csv").is_file()


def _setting(config: dict[str, Any]) -> tuple[str, str, float]:
    attack = config.get("attack") or {}
    setting = config.get("setting") or {}
    name = setting.get("attack") or attack.get("name") or attack.get("attack") or "bim"
    eps = setting.get("eps", attack.get("eps"))
    eps = float("nan") if eps is None or attack.get("clip") == "reference_noop" else float(eps)
    return str(name), str(setting.get("domain") or config.get("domain") or "spectrogram"), eps


def _model_type(folder: Path, config: dict[str, Any]) -> tuple[str, str, int]:
    """``(model type, run id, seed)`` of the attacked run, from its own config.yaml: the run
    the attack config names (``robustmer attack``), else the study run the folder sits in
    (``runs/<run>/attack/<setting>/`` beside ``runs/<run>/train/``)."""
    run = config.get("run") or {}
    candidates: list[tuple[Path, str]] = []
    if run.get("path"):
        path = Path(run["path"])
        candidates += [(path / "config.yaml", path.name)]
    study_run = folder.resolve().parent.parent
    candidates += [(study_run / "train" / "config.yaml", study_run.name)]
    for cfg_path, run_id in candidates:
        if cfg_path.is_file():
            cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
            kind = (cfg.get("model") or {}).get("kind", "model")
            seed = (cfg.get("train") or {}).get("seed", cfg.get("seed", 0))
            return str(cfg.get("model_type") or str(kind).upper()), run_id, int(seed or 0)
    return "model", candidates[0][1] if run.get("path") else folder.name, 0


def attack_folder_store(folder: str | os.PathLike[str], media_clips: int = 2) -> ResultsStore:
    """Write (again) ``FOLDER/report-store/``: the folder's ``attack.csv`` as ``clips.csv`` +
    ``runs.csv`` of one run, its config and meta, and the first ``media_clips`` clips' media."""
    src = Path(folder)
    table = pd.read_csv(src / TABLE, dtype={"clip_id": str})
    if table.empty:
        raise DatasetError(f"{src / TABLE}: no attacked clip yet")
    config = yaml.safe_load((src / "config.yaml").read_text(encoding="utf-8")) or {}
    setting = _setting(config)
    domain = setting[1]
    model_type, run_id, seed = _model_type(src, config)
    clips = clips_from_attack_table(table, run_id, model_type, seed, setting)
    dest = src / STORE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    store = ResultsStore(dest)
    dest.mkdir(parents=True)
    store.write_clips(clips)
    store.write_runs(pd.DataFrame([run_row(run_id, model_type, seed, clips=clips,
                                           task=str(config.get("task") or "regression"))]))
    store.write_config({"source": "attack folder", "attack_folder": str(src.resolve()),
                        **config})
    meta = read_json(src / "meta.json") if (src / "meta.json").is_file() else {}
    store.write_meta(run_meta(source="attack folder", attack_meta=meta))
    for clip in table["clip_id"].tolist()[:media_clips]:
        for kind, path in (("clean.wav", src / "audio" / f"{clip}_clean.wav"),
                           ("adv.wav", src / "audio" / f"{clip}_adv.wav"),
                           ("delta.npz", src / "examples" / f"{clip}.npz")):
            if path.is_file() and not (kind == "delta.npz" and domain == "waveform"):
                target = store.media_path(run_id, clip, kind)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
    return store
