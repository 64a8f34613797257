"""Run the gradient-masking / convergence checks (``attacks/checks.py``) for every finished run
of a study and write them to ``checks.csv`` in the results store (schema:
``evaluate/checks_table.py``), resumably.

The checks attack the first ``checks.clips`` test clips' standardised spectrogram excerpts (the
model's own input) with the study's BIM at each budget of ``checks.eps``. Resume granularity is
one (run, check, ε): the table is rewritten atomically after each, and a restarted study skips
what ``checks.csv`` already holds.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from robustmer import io
from robustmer.attacks import checks as ck
from robustmer.attacks.bim import BIM
from robustmer.data.prepared import PreparedData
from robustmer.errors import ConfigError
from robustmer.evaluate.checks_table import CHECKS_COLUMNS, CHECKS_FILE, read_checks
from robustmer.study.checkspec import CheckSpec
from robustmer.study.config import StudyConfig
from robustmer.study.layout import run_id_of, train_dir_of
from robustmer.train import load_run

Log = Callable[[str], None]


def _study_settings(config: StudyConfig) -> list[dict[str, Any]]:
    """The study's bounded spectrogram-domain attack settings as plain dicts (``eps``, ``eta``,
    ``max_iters``, ``norm``, ``stop``): one per budget and preset of the ``attack:`` block."""
    out = []
    for st in config.attack.settings:
        s = st.spec.settings
        if st.domain == "spectrogram" and st.spec.eps == st.spec.eps and "eta" in s:
            out.append({k: s.get(k) for k in ("eps", "eta", "max_iters", "norm", "stop")})
    return out


def _budgets(config: StudyConfig, spec: CheckSpec) -> list[float]:
    if spec.eps is not None:
        return [float(e) for e in spec.eps]
    budgets = [float(s["eps"]) for s in _study_settings(config)]
    if not budgets:
        raise ConfigError("checks.eps: the study has no bounded spectrogram-domain attack; "
                          "give the checks' budgets")
    return list(dict.fromkeys(budgets))


def check_attack(config: StudyConfig, spec: CheckSpec, eps: float) -> BIM:
    """The gradient attack every check compares with: the study's BIM on spectrograms at ``eps``
    (η = ``eta_ratio``·ε, default the study's η/ε; iterations ``attack_iters`` or the study's;
    the study's norm and stop rule)."""
    study = _study_settings(config)
    first = study[0] if study else {}
    if spec.eta_ratio is not None:
        ratio = spec.eta_ratio
    elif first.get("eta") and first.get("eps"):
        ratio = float(first["eta"]) / float(first["eps"])
    else:
        ratio = 2.0
    iters = spec.attack_iters or int(first.get("max_iters") or 1000)
    return BIM(eps=eps, eta=ratio * eps, max_iters=iters, norm=first.get("norm") or "linf",
               stop=first.get("stop") or "corr")


def test_clips(data: PreparedData, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` test clips' fixed excerpts ``(N, 1, 313, 149)`` and emotions ``(N, 8)``."""
    ds = data.dataset("test", mode="fixed")
    items = [ds[i] for i in range(min(n, len(ds)))]
    if len(items) < 2:
        raise ConfigError(f"checks need at least 2 test clips, the split has {len(ds)}")
    x = torch.stack([torch.as_tensor(it["x"]) for it in items]).float()
    y = torch.stack([torch.as_tensor(it["targets"]) for it in items]).float()
    return x, y


class _Table:
    """``checks.csv`` rows in memory, rewritten atomically after each finished piece."""

    def __init__(self, out: Path) -> None:
        self.path = out / CHECKS_FILE
        self.frame = read_checks(self.path)

    def has(self, run_id: str, check: str, eps: float) -> bool:
        f = self.frame
        hit = (f["run_id"] == run_id) & (f["check"] == check)
        if check != "unbounded":  # the unbounded check does not depend on the budget
            hit &= (f["eps"] - eps).abs() <= 1e-12 * max(1.0, abs(eps))
        return bool(hit.any())

    def add(self, rows: pd.DataFrame, run: dict[str, Any], clips: int) -> None:
        rows = rows.assign(run_id=run["run_id"], model_type=run["model_type"],
                           seed=int(run["seed"]), clips=clips)
        self.frame = pd.concat([self.frame, rows[list(CHECKS_COLUMNS)]], ignore_index=True)
        io.write_csv(self.path, self.frame)


def run_checks(config: StudyConfig, data: PreparedData, out: Path, runs: pd.DataFrame, *,
               progress: bool = False, log: Log = print) -> pd.DataFrame:
    """Run the configured checks for every ``done`` run of ``runs`` into ``out/checks.csv``."""
    spec = config.checks
    if spec is None or not spec.enabled:
        return read_checks(out)
    # one row per run (runs.csv may hold one row per run x attack setting)
    done = runs[runs["status"] == "done"].drop_duplicates("run_id").to_dict("records")
    table = _Table(Path(out))
    x, y = test_clips(data, spec.clips)
    device = config.train.device
    x, y = x.to(device), y.to(device)
    models: dict[str, nn.Module] = {}
    refs: dict[tuple[str, float], ck.Outcome] = {}

    by_id = {str(r["run_id"]): r for r in done}

    def model_of(run_id: str) -> nn.Module:
        if run_id not in models:
            run = by_id[run_id]
            models[run_id] = load_run(train_dir_of(Path(out), run["model_type"], int(run["seed"])),
                                      device=device).model.eval()
        return models[run_id]

    def ref_of(run_id: str, attack: BIM) -> ck.Outcome:
        key = (run_id, attack.eps)
        if key not in refs:
            refs[key] = ck.run_attack(model_of(run_id), x, y, attack, spec.batch_size)
        return refs[key]

    single = [c for c in spec.run if c != "transfer"]
    for eps in _budgets(config, spec):
        attack = check_attack(config, spec, eps)
        for run in done:
            rid = str(run["run_id"])
            for check in single:
                if table.has(rid, check, eps):
                    continue
                if check == "unbounded" and eps != _budgets(config, spec)[0]:
                    continue  # the unbounded limit does not depend on the budget
                rows = ck.model_checks(
                    model_of(rid), x, y, attack, checks=[check], iters=spec.iters,
                    restarts=spec.restarts, unbounded_eps=spec.unbounded_eps,
                    unbounded_eta=spec.unbounded_eta, unbounded_iters=spec.unbounded_iters,
                    mse_limit=spec.mse_limit, min_fraction=spec.min_fraction,
                    queries=spec.queries, p_init=spec.p_init, seed=spec.seed,
                    rel_tol=spec.rel_tol, abs_tol=spec.abs_tol, batch_size=spec.batch_size,
                    reference=None if check == "unbounded" else ref_of(rid, attack))
                table.add(rows, run, len(x))
                flags = int((rows["status"] == "flag").sum())
                log(f"checks {rid} {check} eps={eps:g}: "
                    f"{'FLAG' if flags else 'pass'}")
        if "transfer" not in spec.run:
            continue
        for src_id, tgt_id in _transfer_pairs(config, spec, by_id):
            tgt = by_id[tgt_id]
            setting = f"{src_id} -> {tgt_id}"
            f = table.frame
            if bool(((f["check"] == "transfer") & (f["setting"] == setting)
                     & ((f["eps"] - eps).abs() <= 1e-12 * max(1.0, eps))).any()):
                continue
            rows = ck.transfer_check(
                model_of(src_id), model_of(tgt_id), x, y, attack, source_name=src_id,
                target_name=tgt_id, rel_tol=spec.rel_tol, abs_tol=spec.abs_tol,
                batch_size=spec.batch_size,
                source_outcome=ref_of(src_id, attack), reference=ref_of(tgt_id, attack))
            table.add(rows, tgt, len(x))
            log(f"checks transfer {setting} eps={eps:g}: {rows['status'].iloc[0]}")
    return table.frame


def _transfer_pairs(config: StudyConfig, spec: CheckSpec,
                    done: dict[str, Any]) -> list[tuple[str, str]]:
    """(source run, target run) pairs: each configured type pair at every seed both ran, and
    (``transfer_seeds``) the first two seeds of each type, both ways."""
    pairs: list[tuple[str, str]] = []
    for a, b in spec.transfer:
        for s in config.seeds:
            ra, rb = run_id_of(a, s), run_id_of(b, s)
            if ra in done and rb in done:
                pairs.append((ra, rb))
    if spec.transfer_seeds:
        for m in config.models:
            ids = [run_id_of(m, s) for s in config.seeds if run_id_of(m, s) in done][:2]
            if len(ids) == 2:
                pairs += [(ids[0], ids[1]), (ids[1], ids[0])]
    return list(dict.fromkeys(pairs))
