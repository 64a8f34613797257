"""Attack a whole split, batch by batch, into one tidy table (resumable).

:func:`attack_items` takes tensors (an iterable of item dicts) and knows nothing of datasets or
run folders; :func:`attack_dataset` adapts any object with the ``PreparedData`` interface
(``.dataset(part)``, ``.waveform(id)``, ``.standardizer``, ``.frontend``; duck-typed, so this
module does not import ``robustmer.data``). The table is rewritten atomically after every batch,
so a killed run loses at most the batch in progress and ``resume=True`` skips the clips done.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn
from tqdm import tqdm

from robustmer.attacks import norms
from robustmer.attacks.spec import TASKS, AttackSpec, names_for
from robustmer.attacks.waveform import AUDIO_BOX, WaveformModel, pad_batch
from robustmer.audio import SAMPLE_RATE, write_wav
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import per_sample_mae
from robustmer.features import DOMAINS, LogFilteredSpectrogram, Standardizer
from robustmer.folders import require_same_settings
from robustmer.io import (
    atomic_open,
    plain,
    read_json,
    run_meta,
    write_csv,
    write_json,
    write_yaml,
)
from robustmer.protocols import AttackLike

TABLE = "attack.csv"
STAT_COLUMNS: tuple[str, ...] = (
    "clip_id", "iterations", "converged", "final_threshold", "last_passed", "score",
    "delta_linf", "delta_l2", "snr_db", "zero_grad_start")
"""Per-clip columns of ``attack.csv`` before the outputs' ``y_*``, ``pred_*``, ``adv_*``."""


def table_columns(names: Sequence[str]) -> tuple[str, ...]:
    """Columns of ``attack.csv`` for outputs ``names``: one row per clip. Regression: targets
    ``y_*`` and clean / adversarial predictions; classification: the one-hot label and the
    clean / adversarial softmax probabilities (so the per-clip MAE is ``2(1 - p_label)/C``)."""
    return (*STAT_COLUMNS, *(f"y_{e}" for e in names), *(f"pred_{e}" for e in names),
            *(f"adv_{e}" for e in names), "mae_clean", "mae_adv")


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


def read_table(out_dir: str | Path, names: Sequence[str] = ()) -> pd.DataFrame:
    """The ``attack.csv`` of ``out_dir`` (clip ids kept as strings), or an empty table with the
    columns of ``names``. A table written before ``zero_grad_start`` existed reads it as
    False."""
    path = Path(out_dir) / TABLE
    if not path.exists():
        return pd.DataFrame({c: pd.Series(dtype="object" if c == "clip_id" else "float64")
                             for c in table_columns(names)})
    table = pd.read_csv(path, dtype={"clip_id": str})
    if "zero_grad_start" not in table.columns:
        table.insert(list(table.columns).index("snr_db") + 1, "zero_grad_start", False)
    return table


def _prepare_out(out_dir: Path, config: dict[str, Any], resume: bool,
                 names: Sequence[str]) -> pd.DataFrame:
    cfg_path = out_dir / "config.yaml"
    table = read_table(out_dir, names)
    if (out_dir / TABLE).exists() and not resume:
        raise ConfigError(f"{out_dir / TABLE} exists; resume it (--resume) or choose another "
                          f"output folder")
    if resume and cfg_path.exists():
        import yaml

        stored = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        asked = yaml.safe_load(yaml.safe_dump(plain(config), sort_keys=False))
        # the attacked run is identified by its weights; its folder may have moved. Keys added
        # after a folder was written (outputs, task, reference, ...) were their defaults then.
        require_same_settings(stored, asked, f"attack folder {out_dir}",
                              ignore=lambda key: key in ("run.path", "reference")
                              or key.split(".")[0] not in (stored or {}),
                              hint="choose another output folder (--out)")
    write_yaml(cfg_path, config)
    return table


def _resolve(attack: AttackLike | AttackSpec, domain: str,
             task: str) -> tuple[AttackLike, dict[str, Any]]:
    """The attack object and what ``config.yaml`` records of it: the spec (registry name and
    every setting) and the setting key ``{attack, domain, eps}`` of the results store."""
    if isinstance(attack, AttackSpec):
        if attack.model_task != task:
            raise ConfigError(f"attack {attack.name!r} attacks {attack.model_task} models; this "
                              f"model does {task} (choose from {names_for(task)})")
        return attack.build(), {"attack": attack.to_dict(), "setting": {
            "attack": attack.name, "domain": domain, "eps": attack.eps}}
    return attack, {"attack": attack.config()}


def _check_item(item: Any, k: int, keys: Sequence[str]) -> None:
    if not isinstance(item, dict):
        raise ConfigError(f"attack_items: item {k} must be a dict with keys {list(keys)}, found "
                          f"{type(item).__name__}")
    missing = [key for key in keys if key not in item]
    if missing:
        raise ConfigError(f"attack_items: item {k} (id {item.get('id')!r}) lacks {missing}; "
                          f"items need {list(keys)} (y: the targets or class index; None "
                          f"measures against the model's clean prediction)")


def attack_items(model: nn.Module, items: Iterable[dict[str, Any]],
                 attack: AttackLike | AttackSpec, out_dir: str | Path, *, names: Sequence[str],
                 task: str = "regression", domain: str = "spectrogram",
                 frontend: LogFilteredSpectrogram | None = None,
                 standardizer: Standardizer | None = None, batch_size: int = 8,
                 device: str | torch.device = "cpu", resume: bool = False,
                 progress: bool = False, write_examples: bool | int = True,
                 sample_rate: int = SAMPLE_RATE, total: int | None = None,
                 config: dict[str, Any] | None = None) -> pd.DataFrame:
    """Attack ``items`` batch by batch and return (and write) the per-clip table.

    ``names``: the model's outputs (targets, or classes for ``task="classification"``).
    Items: ``{"id", "x", "y"}`` where ``x`` is the model's own input (a standardised
    spectrogram excerpt ``(1, T, F)``, or for a waveform model its audio excerpt ``(S,)``; both
    attacked as given, audio in the box [-1, 1] with ``domain="waveform"``), or, to attack a
    spectrogram model through the front end, ``{"id", "wave" (S,), "frame_index" (T,), "y"}``
    with ``domain="waveform"`` (then ``frontend`` and ``standardizer`` are needed). ``y``: the
    targets ``(K,)`` or the class index; None measures the attack against the model's clean
    prediction (recorded as ``reference`` in ``config.yaml``). Writes ``out_dir/attack.csv``,
    ``config.yaml``, ``meta.json`` and, for the clips ``write_examples`` selects (True: all,
    False: none, N: the first N clips attacked), ``examples/<id>.npz`` (δ; in the spectrogram
    domain also the clean excerpt x) and, in the waveform domain,
    ``audio/<id>_{clean,adv}.wav``. ``attack`` is an attack object or an :class:`AttackSpec`
    (then ``config.yaml`` records the spec). A call that fails before any clip is written
    leaves no folder behind.
    """
    names = _check_request(domain, task, names)
    attack, recorded = _resolve(attack, domain, task)
    if int(batch_size) != batch_size or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if domain == "waveform":
        if attack.box is None:
            attack = copy.copy(attack)
            attack.box = AUDIO_BOX
        if frontend is not None:
            frontend = frontend.to(device)
    out = Path(out_dir)
    full_config = {"domain": domain, **recorded, "batch_size": int(batch_size),
                   "standardizer": None if standardizer is None else standardizer.to_dict(),
                   "task": task, "outputs": names, **(config or {})}
    model = model.to(device).eval()
    t0 = time.perf_counter()

    def attack_batch(batch: list[dict[str, Any]], keep: int) -> tuple[list[dict[str, Any]], str]:
        return _attack_batch(model, batch, attack, out, domain, frontend, standardizer, device,
                             keep, sample_rate, names, task)

    rows, references = _attack_all(items, out, full_config, resume, names, batch_size, total,
                                   write_examples, progress, attack_batch)
    frame = pd.DataFrame(rows, columns=list(table_columns(names)))
    if not (out / TABLE).exists():
        write_csv(out / TABLE, frame)
    if references:
        stored = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
        known = set(stored.get("reference", "").split("+")) - {""}
        write_yaml(out / "config.yaml", {**stored, "reference": "+".join(sorted(
            known | references))})
    meta_path = out / "meta.json"
    seconds = time.perf_counter() - t0
    if meta_path.exists():
        seconds += float(read_json(meta_path).get("seconds", 0.0))
    write_json(meta_path, run_meta(seconds=seconds, clips=len(frame), device=str(device)))
    return frame


def _check_request(domain: str, task: str, names: Sequence[str]) -> list[str]:
    """The output names as text, once the domain, task and names are valid."""
    if domain not in DOMAINS:
        raise ConfigError(f"domain must be one of {list(DOMAINS)}, got {domain!r}")
    if task not in TASKS:
        raise ConfigError(f"task must be one of {list(TASKS)}, got {task!r}")
    out = [str(n) for n in names]
    if not out:
        raise ConfigError("attack_items: names: give the model's output names")
    return out


def _attack_all(items: Iterable[dict[str, Any]], out: Path, full_config: dict[str, Any],
                resume: bool, names: list[str], batch_size: int, total: int | None,
                write_examples: bool | int, progress: bool,
                attack_batch: Callable[[list[dict[str, Any]], int],
                                       tuple[list[dict[str, Any]], str]],
                ) -> tuple[list[dict[str, Any]], set[str]]:
    """The clips not in the folder yet, attacked batch by batch, the table rewritten after
    each; the rows (old and new) and the references measured against. A call that fails
    before any clip is written leaves no folder behind."""
    created = not out.exists() or not any(out.iterdir())
    rows: list[dict[str, Any]] = []
    references: set[str] = set()
    try:
        out.mkdir(parents=True, exist_ok=True)
        table = _prepare_out(out, full_config, resume, names)
        done = set(table["clip_id"].astype(str))
        rows = table.to_dict("records")
        todo = (it for it in items if str(it.get("id")) not in done)
        n_batches = None if total is None else -(-max(total - len(done), 0) // batch_size)
        for batch in tqdm(batches(todo, batch_size), total=n_batches, desc="attack",
                          disable=not progress, leave=False):
            new, ref = attack_batch(batch, _examples_left(write_examples, len(rows)))
            rows.extend(new)
            references.add(ref)
            write_csv(out / TABLE, pd.DataFrame(rows, columns=list(table_columns(names))))
    except BaseException:
        if created and not (out / TABLE).exists():
            shutil.rmtree(out, ignore_errors=True)  # nothing attacked: leave nothing behind
        raise
    return rows, references


@torch.no_grad()
def _predict(model: nn.Module, x: torch.Tensor) -> np.ndarray:
    out: torch.Tensor = model(x)
    return np.asarray(out.double().cpu().numpy())


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def _examples_left(write_examples: bool | int, done: int) -> int:
    """How many clips of the next batch get their examples written: ``write_examples`` True
    (all), False (none) or N (the first N clips attacked), with ``done`` clips before it."""
    if write_examples is True:
        return 2**31
    if write_examples is False:
        return 0
    return max(0, int(write_examples) - done)


def _attack_batch(model: nn.Module, batch: list[dict[str, Any]], attack: AttackLike, out: Path,
                  domain: str, frontend: LogFilteredSpectrogram | None,
                  standardizer: Standardizer | None, device: str | torch.device,
                  write_examples: int, sample_rate: int, names: Sequence[str],
                  task: str) -> tuple[list[dict[str, Any]], str]:
    """Attack one batch; its table rows and the reference it was measured against."""
    through_frontend = "wave" in batch[0]
    keys = ("id", "wave", "frame_index", "y") if through_frontend else ("id", "x", "y")
    for k, it in enumerate(batch):
        _check_item(it, k, keys)
    ids = [str(it["id"]) for it in batch]
    mask = None
    if not through_frontend:
        x = torch.stack([torch.as_tensor(it["x"], dtype=torch.float32) for it in batch]).to(device)
        target: nn.Module = model
        if domain == "waveform":
            mask = torch.ones_like(x, dtype=torch.bool)
    else:
        if frontend is None or standardizer is None:
            raise ConfigError("attacking a spectrogram model in the waveform domain needs "
                              "frontend= and standardizer=")
        x, m = pad_batch([it["wave"] for it in batch])
        x, mask = x.to(device), m.to(device)
        idx = np.stack([np.asarray(it["frame_index"], dtype=np.int64) for it in batch])
        target = WaveformModel(model, frontend, standardizer, idx)
    target.eval()  # predictions below are the model's eval-mode outputs (BatchNorm, dropout)
    clean = _predict(target, x)
    if clean.ndim != 2 or clean.shape[1] != len(names):
        raise ConfigError(f"the model returns outputs of shape {tuple(clean.shape)}; the data "
                          f"names {len(names)} outputs {list(names)}")
    y, ref = _reference(batch, clean, task, device)
    res = attack(target, x, y, mask=mask)
    # the reported adversarial prediction: at the returned δ (or, for the reference preset, at
    # the last δ the loop evaluated, as the reference logged it)
    logged = res.delta if res.logged_delta is None else res.logged_delta
    pred, adv = clean, _predict(target, x + logged)
    if task == "classification":
        y_np = np.eye(len(names))[y.cpu().numpy()]
        pred, adv = _softmax(pred), _softmax(adv)
    else:
        y_np = y.double().cpu().numpy()
    delta = res.delta
    if domain == "spectrogram":
        mean, std = (0.0, 1.0) if standardizer is None else (standardizer.mean, standardizer.std)
        snr = norms.spectrogram_snr_db(x, delta, mean, std)
    else:
        snr = norms.snr_db(x, delta, mask)
    d_linf, d_l2 = norms.linf(delta).double().cpu(), norms.l2(delta).double().cpu()
    zero = res.extra.get("zero_grad_start", torch.zeros(len(ids), dtype=torch.bool))
    mae_c, mae_a = per_sample_mae(y_np, pred), per_sample_mae(y_np, adv)
    rows = []
    for i, cid in enumerate(ids):
        row: dict[str, Any] = {
            "clip_id": cid, "iterations": int(res.iterations[i]),
            "converged": bool(res.converged[i]),
            "final_threshold": float(res.final_threshold[i]),
            "last_passed": float(res.last_passed[i]), "score": float(res.score[i]),
            "delta_linf": float(d_linf[i]), "delta_l2": float(d_l2[i]), "snr_db": float(snr[i]),
            "zero_grad_start": bool(zero[i]),
        }
        for k, e in enumerate(names):
            row[f"y_{e}"] = float(y_np[i, k])
            row[f"pred_{e}"] = float(pred[i, k])
            row[f"adv_{e}"] = float(adv[i, k])
        row["mae_clean"], row["mae_adv"] = float(mae_c[i]), float(mae_a[i])
        rows.append(row)
        if i < write_examples:
            _write_example(out, cid, domain, x[i], delta[i], mask, i, batch[i], sample_rate)
    return rows, ref


def _reference(batch: list[dict[str, Any]], clean: np.ndarray, task: str,
               device: str | torch.device) -> tuple[torch.Tensor, str]:
    """What the attack is measured against: the items' ``y`` (labels) or, where an item has
    none, the model's clean prediction (its predicted class for classification)."""
    given = [it.get("y") is not None for it in batch]
    ys = []
    for it, c in zip(batch, clean, strict=True):
        if it.get("y") is not None:
            ys.append(torch.as_tensor(it["y"]))
        else:
            ys.append(torch.as_tensor(int(c.argmax()) if task == "classification" else c))
    if task == "classification":
        y = torch.stack([v.reshape(()).long() for v in ys]).to(device)
    else:
        y = torch.stack([v.float() for v in ys]).to(device)
    ref = "labels" if all(given) else "clean_prediction" if not any(given) else (
        "clean_prediction+labels")
    return y, ref


def _write_example(out: Path, cid: str, domain: str, x: torch.Tensor, delta: torch.Tensor,
                   mask: torch.Tensor | None, i: int, item: dict[str, Any],
                   sample_rate: int) -> None:
    if domain == "waveform":
        assert mask is not None
        n = int(mask[i].sum())
        x, delta = x[:n], delta[:n]
        write_wav(out / "audio" / f"{cid}_clean.wav", x, sample_rate)
        write_wav(out / "audio" / f"{cid}_adv.wav", x + delta, sample_rate)
    arrays: dict[str, Any]
    if domain == "waveform":  # the clean audio is in the WAV; δ as float16 (~3 digits)
        arrays = {"delta": delta.detach().cpu().numpy().astype(np.float16)}
    else:
        arrays = {"x": x.detach().cpu().numpy(), "delta": delta.detach().cpu().numpy()}
    if "frame_index" in item:
        arrays["frame_index"] = np.asarray(item["frame_index"], dtype=np.int64)
    (out / "examples").mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "examples" / f"{cid}.npz", "wb") as fh:
        np.savez_compressed(fh, **arrays)


def dataset_items(data: Any, split: str, domain: str,
                  model_input: Mapping[str, Any] | None = None, task: str = "regression",
                  ) -> tuple[list[str], Iterator[dict[str, Any]], list[str]]:
    """``(ids, items, output names)`` of one split of a ``PreparedData``-like object (lazy:
    audio is decoded as the attack reaches it). ``model_input``: the model's input contract
    (``robustmer.models.types``; None: robustmer's spectrogram). A waveform model's items
    hold its own audio excerpt; a spectrogram model attacked in the waveform domain gets the
    whole clip and the frame indices of its fixed excerpt. ``y`` is the targets, or for
    classification the class index (None where the clip has no label: the attack is then
    measured against the clean prediction)."""
    kind = "spectrogram" if model_input is None else str(model_input.get("kind"))
    if kind == "waveform" and domain != "waveform":
        raise ConfigError(f"domain {domain!r}: this model reads audio (input: waveform); it is "
                          f"attacked in the waveform domain")
    ds = data.dataset_for(model_input, split, mode="fixed")
    ids = [str(i) for i in ds.ids]
    names = list(ds.classes if task == "classification" else ds.target_names)

    def y_of(item: dict[str, Any]) -> Any:
        if task == "classification":
            return int(item["label"]) if int(item["label"]) >= 0 else None
        return item["targets"]

    def gen() -> Iterator[dict[str, Any]]:
        for k, cid in enumerate(ids):
            item = ds[k]
            if kind == "waveform" or domain == "spectrogram":
                yield {"id": cid, "x": item["x"], "y": y_of(item)}
            else:
                yield {"id": cid, "wave": data.waveform(cid), "frame_index":
                       ds.excerpt_index(cid), "y": y_of(item)}

    return ids, gen(), names


def attack_dataset(model: nn.Module, data: Any, split: str, attack: AttackLike | AttackSpec,
                   out_dir: str | Path, *, domain: str = "spectrogram",
                   model_input: Mapping[str, Any] | None = None, task: str = "regression",
                   batch_size: int = 8, device: str | torch.device = "cpu",
                   resume: bool = False, progress: bool = False,
                   write_examples: bool | int = True,
                   run: dict[str, Any] | None = None) -> pd.DataFrame:
    """Attack split ``split`` of ``data`` (``PreparedData`` interface) with :func:`attack_items`.

    The waveform-domain excerpt of a spectrogram model is the same window as the dataset's
    fixed excerpt (``dataset(split).excerpt_index(id)``), cut from the spectrogram of the audio
    under attack; a waveform model (``model_input``) is attacked on its own fixed excerpt.
    ``run`` identifies the attacked model (folder and weights hash) in ``config.yaml``, so that a
    resume on another model is refused; the dataset's content id is recorded too.
    """
    if domain not in DOMAINS:
        raise ConfigError(f"domain must be one of {list(DOMAINS)}, got {domain!r}")
    ids, items, names = dataset_items(data, split, domain, model_input, task)
    waveform_model = model_input is not None and model_input.get("kind") == "waveform"
    frontend = (LogFilteredSpectrogram(data.frontend) if domain == "waveform"
                and not waveform_model else None)
    rate = int(model_input["sample_rate"]) if waveform_model and model_input is not None else (
        int(data.frontend.sample_rate))
    return attack_items(model, items, attack, out_dir, names=names, task=task, domain=domain,
                        frontend=frontend, standardizer=data.standardizer,
                        batch_size=batch_size, device=device, resume=resume, progress=progress,
                        write_examples=write_examples, sample_rate=rate, total=len(ids),
                        config={"split": split, "run": run, "model_input": dict(
                                    model_input or {"kind": "spectrogram"}),
                                "data": {"content_id": getattr(data, "content_id", None),
                                         "split_id": getattr(getattr(data, "split", None),
                                                             "split_id", None)}})
