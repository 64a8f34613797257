"""Attack a whole split, batch by batch, into one tidy table (resumable).

:func:`attack_items` takes tensors (an iterable of item dicts) and knows nothing of datasets or
run folders; :func:`attack_dataset` adapts any object with the ``PreparedData`` interface
(``.dataset(part)``, ``.waveform(id)``, ``.standardizer``, ``.frontend``; duck-typed, so this
module does not import ``robustmer.data``). The table is rewritten atomically after every batch,
so a killed run loses at most the batch in progress and ``resume=True`` skips the clips done.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from robustmer import EMOTIONS
from robustmer.attacks import norms
from robustmer.attacks.base import Attack
from robustmer.attacks.spec import AttackSpec
from robustmer.attacks.waveform import AUDIO_BOX, WaveformModel, pad_batch, write_wav
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.features import LogFilteredSpectrogram, Standardizer
from robustmer.folders import require_same_settings
from robustmer.io import atomic_open, read_json, run_meta, write_csv, write_json, write_yaml

DOMAINS: tuple[str, ...] = ("spectrogram", "waveform")
TABLE = "attack.csv"
COLUMNS: tuple[str, ...] = (
    "clip_id", "iterations", "converged", "final_threshold", "last_passed", "score",
    "delta_linf", "delta_l2", "snr_db",
    *(f"y_{e}" for e in EMOTIONS), *(f"pred_{e}" for e in EMOTIONS),
    *(f"adv_{e}" for e in EMOTIONS), "mae_clean", "mae_adv",
)
"""Columns of ``attack.csv``: one row per clip."""


def batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items (the last may be shorter), from any iterable."""
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def read_table(out_dir: str | Path) -> pd.DataFrame:
    """The ``attack.csv`` of ``out_dir`` (clip ids kept as strings), or an empty table."""
    path = Path(out_dir) / TABLE
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "clip_id" else "float64")
                             for c in COLUMNS})
    return pd.read_csv(path, dtype={"clip_id": str})


def _prepare_out(out_dir: Path, config: dict[str, Any], resume: bool) -> pd.DataFrame:
    cfg_path = out_dir / "config.yaml"
    table = read_table(out_dir)
    if (out_dir / TABLE).exists() and not resume:
        raise ConfigError(f"{out_dir / TABLE} exists; resume it (--resume) or choose another "
                          f"output folder")
    if resume and cfg_path.exists():
        import yaml

        stored = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        asked = yaml.safe_load(yaml.safe_dump(_plain(config), sort_keys=False))
        # the attacked run is identified by its weights; its folder may have moved
        require_same_settings(stored, asked, f"attack folder {out_dir}",
                              ignore=lambda key: key == "run.path",
                              hint="choose another output folder (--out)")
    write_yaml(cfg_path, config)
    return table


def _plain(obj: Any) -> Any:
    import json

    from robustmer.io import _json_default

    return json.loads(json.dumps(obj, default=_json_default))


def _resolve(attack: Attack | AttackSpec, domain: str) -> tuple[Attack, dict[str, Any]]:
    """The attack object and what ``config.yaml`` records of it: the spec (registry name and
    every setting) and the setting key ``{attack, domain, eps}`` of the results store."""
    if isinstance(attack, AttackSpec):
        if attack.task != "regression":
            raise ConfigError(f"attack {attack.name!r} attacks a classifier (targets are class "
                              f"indices); the attack runner attacks the emotion regressors")
        return attack.build(), {"attack": attack.to_dict(), "setting": {
            "attack": attack.name, "domain": domain, "eps": attack.eps}}
    return attack, {"attack": attack.config()}


def attack_items(model: nn.Module, items: Iterable[dict[str, Any]],
                 attack: Attack | AttackSpec, out_dir: str | Path, *, domain: str = "spectrogram",
                 frontend: LogFilteredSpectrogram | None = None,
                 standardizer: Standardizer | None = None, batch_size: int = 8,
                 device: str | torch.device = "cpu", resume: bool = False,
                 progress: bool = False, write_examples: bool = True,
                 sample_rate: int = 22050, total: int | None = None,
                 config: dict[str, Any] | None = None) -> pd.DataFrame:
    """Attack ``items`` batch by batch and return (and write) the per-clip table.

    Items: ``{"id", "x" (1, T, F) standardised excerpt, "y" (8,)}`` in the spectrogram domain;
    ``{"id", "wave" (S,), "frame_index" (T,), "y" (8,)}`` in the waveform domain (which also
    needs ``frontend`` and ``standardizer``). Writes ``out_dir/attack.csv``, ``config.yaml``,
    ``meta.json``, ``examples/<id>.npz`` and, for waveforms, ``audio/<id>_{clean,adv}.wav``.
    In the waveform domain an attack without a box gets the audio box [-1, 1]. ``attack`` is an
    attack object or an :class:`AttackSpec` (then ``config.yaml`` records the spec).
    """
    if domain not in DOMAINS:
        raise ConfigError(f"domain must be one of {list(DOMAINS)}, got {domain!r}")
    attack, recorded = _resolve(attack, domain)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if domain == "waveform":
        if frontend is None or standardizer is None:
            raise ConfigError("the waveform domain needs frontend= and standardizer=")
        if attack.box is None:
            attack = copy.copy(attack)
            attack.box = AUDIO_BOX
        frontend = frontend.to(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    full_config = {"domain": domain, **recorded, "batch_size": int(batch_size),
                   "standardizer": None if standardizer is None else standardizer.to_dict(),
                   **(config or {})}
    table = _prepare_out(out, full_config, resume)
    done = set(table["clip_id"].astype(str))
    model = model.to(device).eval()
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = table.to_dict("records")
    todo = (it for it in items if str(it["id"]) not in done)
    n_batches = None if total is None else -(-max(total - len(done), 0) // batch_size)
    for batch in tqdm(batches(todo, batch_size), total=n_batches, desc="attack",
                      disable=not progress, leave=False):
        rows.extend(_attack_batch(model, batch, attack, out, domain, frontend, standardizer,
                                  device, write_examples, sample_rate))
        write_csv(out / TABLE, pd.DataFrame(rows, columns=list(COLUMNS)))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if not (out / TABLE).exists():
        write_csv(out / TABLE, frame)
    meta_path = out / "meta.json"
    seconds = time.perf_counter() - t0
    if meta_path.exists():
        seconds += float(read_json(meta_path).get("seconds", 0.0))
    write_json(meta_path, run_meta(seconds=seconds, clips=len(frame), device=str(device)))
    return frame


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    return model(x).double().cpu().numpy()


def _attack_batch(model: nn.Module, batch: list[dict[str, Any]], attack: Attack, out: Path,
                  domain: str, frontend: LogFilteredSpectrogram | None,
                  standardizer: Standardizer | None, device: str | torch.device,
                  write_examples: bool, sample_rate: int) -> list[dict[str, Any]]:
    ids = [str(it["id"]) for it in batch]
    y = torch.stack([torch.as_tensor(it["y"], dtype=torch.float32) for it in batch]).to(device)
    mask = None
    if domain == "spectrogram":
        x = torch.stack([torch.as_tensor(it["x"], dtype=torch.float32) for it in batch]).to(device)
        target: nn.Module = model
    else:
        assert frontend is not None and standardizer is not None
        x, m = pad_batch([it["wave"] for it in batch])
        x, mask = x.to(device), m.to(device)
        idx = np.stack([np.asarray(it["frame_index"], dtype=np.int64) for it in batch])
        target = WaveformModel(model, frontend, standardizer, idx)
    target.eval()  # predictions below are the model's eval-mode outputs (BatchNorm, dropout)
    res = attack(target, x, y, mask=mask)
    # the reported adversarial prediction: at the returned δ (or, for the reference preset, at
    # the last δ the loop evaluated, as the reference logged it)
    logged = res.delta if res.logged_delta is None else res.logged_delta
    pred, adv = _predict(target, x), _predict(target, x + logged)
    delta = res.delta
    if domain == "spectrogram":
        mean, std = (0.0, 1.0) if standardizer is None else (standardizer.mean, standardizer.std)
        snr = norms.spectrogram_snr_db(x, delta, mean, std)
    else:
        snr = norms.snr_db(x, delta, mask)
    d_linf, d_l2 = norms.linf(delta).double().cpu(), norms.l2(delta).double().cpu()
    y_np = y.double().cpu().numpy()
    mae_c, mae_a = per_sample_mae(y_np, pred), per_sample_mae(y_np, adv)
    rows = []
    for i, cid in enumerate(ids):
        row: dict[str, Any] = {
            "clip_id": cid, "iterations": int(res.iterations[i]),
            "converged": bool(res.converged[i]),
            "final_threshold": float(res.final_threshold[i]),
            "last_passed": float(res.last_passed[i]), "score": float(res.score[i]),
            "delta_linf": float(d_linf[i]), "delta_l2": float(d_l2[i]), "snr_db": float(snr[i]),
        }
        for k, e in enumerate(EMOTIONS):
            row[f"y_{e}"] = float(y_np[i, k])
            row[f"pred_{e}"] = float(pred[i, k])
            row[f"adv_{e}"] = float(adv[i, k])
        row["mae_clean"], row["mae_adv"] = float(mae_c[i]), float(mae_a[i])
        rows.append(row)
        if write_examples:
            _write_example(out, cid, domain, x[i], delta[i], mask, i, batch[i], sample_rate)
    return rows


def _write_example(out: Path, cid: str, domain: str, x: torch.Tensor, delta: torch.Tensor,
                   mask: torch.Tensor | None, i: int, item: dict[str, Any],
                   sample_rate: int) -> None:
    if domain == "waveform":
        assert mask is not None
        n = int(mask[i].sum())
        x, delta = x[:n], delta[:n]
        write_wav(out / "audio" / f"{cid}_clean.wav", x, sample_rate)
        write_wav(out / "audio" / f"{cid}_adv.wav", x + delta, sample_rate)
    arrays = {"x": x.detach().cpu().numpy(), "delta": delta.detach().cpu().numpy(),
              "x_adv": (x + delta).detach().cpu().numpy()}
    if domain == "waveform":
        arrays["frame_index"] = np.asarray(item["frame_index"], dtype=np.int64)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "examples" / f"{cid}.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)


def dataset_items(data: Any, split: str, domain: str) -> tuple[list[str], Iterator[dict]]:
    """Item dicts of one split of a ``PreparedData``-like object (lazy: audio is decoded as the
    attack reaches it)."""
    ds = data.dataset(split, mode="fixed")
    ids = [str(i) for i in ds.ids]

    def gen() -> Iterator[dict[str, Any]]:
        for k, cid in enumerate(ids):
            item = ds[k]
            if domain == "spectrogram":
                yield {"id": cid, "x": item["x"], "y": item["emotions"]}
            else:
                yield {"id": cid, "wave": data.waveform(cid), "frame_index":
                       ds.excerpt_index(cid), "y": item["emotions"]}

    return ids, gen()


def attack_dataset(model: nn.Module, data: Any, split: str, attack: Attack | AttackSpec,
                   out_dir: str | Path, *, domain: str = "spectrogram", batch_size: int = 8,
                   device: str | torch.device = "cpu", resume: bool = False,
                   progress: bool = False, write_examples: bool = True,
                   run: dict[str, Any] | None = None) -> pd.DataFrame:
    """Attack split ``split`` of ``data`` (``PreparedData`` interface) with :func:`attack_items`.

    The waveform-domain excerpt is the same window as the dataset's fixed excerpt
    (``dataset(split).excerpt_index(id)``), cut from the spectrogram of the audio under attack.
    ``run`` identifies the attacked model (folder and weights hash) in ``config.yaml``, so that a
    resume on another model is refused; the dataset's content id is recorded too.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"domain must be one of {list(DOMAINS)}, got {domain!r}")
    ids, items = dataset_items(data, split, domain)
    frontend = LogFilteredSpectrogram(data.frontend) if domain == "waveform" else None
    return attack_items(model, items, attack, out_dir, domain=domain, frontend=frontend,
                        standardizer=data.standardizer, batch_size=batch_size, device=device,
                        resume=resume, progress=progress, write_examples=write_examples,
                        sample_rate=int(data.frontend.sample_rate), total=len(ids),
                        config={"split": split, "run": run,
                                "data": {"content_id": getattr(data, "content_id", None),
                                         "split_id": getattr(getattr(data, "split", None),
                                                             "split_id", None)}})
