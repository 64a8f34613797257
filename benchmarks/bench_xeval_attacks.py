"""Budget search for explainer-eval's default attack, on a run's validation clips.

For each candidate attack (``robustmer.attacks.spec`` descriptions) on the same validation
clips: the share of successful adversarial examples, the iterations, the δ sizes (L2, L∞), the
target class's probability at ``x + δ`` (classifiers), the share of ``Σδ²`` in the 3 largest of
the 20 segments (a uniform spread gives 0.15), and the label-flip rate of the magnitude
baseline (δ kept in its k largest segments) at k = 1, 3, 5, 10: the attack must succeed, and
its δ must be concentrated enough that part of it can carry the decision, or the flip test has
nothing to resolve. Regressors: success by the RMSE rise (``--min-rise`` × the training
targets' range), the flip judged as explainer-eval judges it (half of the MSE rise).

    OMP_NUM_THREADS=1 python benchmarks/bench_xeval_attacks.py RUN_DIR [--clips 60]
        [--excerpt-hop 50] [--out benchmarks/results/xeval-attacks-<run>.json]

Candidates: ``--candidates FILE.json`` (a list of attack dicts) or the built-in list for the
run's task.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustmer import io
from robustmer.attacks import AttackSpec, per_sample_mse
from robustmer.cli.common import load_run_and_data
from robustmer.explain import grid_segments
from robustmer.explain.evaluation import (
    attack_targets,
    keep_segments,
    predict,
    rank_segments,
    segment_energy,
)

RESULTS = Path(__file__).resolve().parent / "results"
CLASSIFICATION: list[dict[str, Any]] = [
    {"name": "cw", "alpha": 15.0, "eps": 0.1, "eta": 5e-4, "max_iters": 1000, "box": None},
    {"name": "cw", "alpha": 15.0, "eps": 0.1, "eta": 5e-4, "max_iters": 1000, "box": None,
     "confidence": 0.9},
    {"name": "targeted_pgd", "norm": "linf", "eps": 1.0, "eta": 0.002, "max_iters": 1000,
     "confidence": 0.9},
    {"name": "targeted_pgd", "norm": "l2", "eps": 10.0, "eta": 0.05, "max_iters": 1000},
    {"name": "targeted_pgd", "norm": "l2", "eps": 10.0, "eta": 0.05, "max_iters": 1000,
     "confidence": 0.9},
    {"name": "targeted_pgd", "norm": "l2", "eps": 10.0, "eta": 0.05, "max_iters": 1000,
     "confidence": 0.99},
]
REGRESSION: list[dict[str, Any]] = [
    {"name": "bim", "eps": 0.001, "eta": 0.002, "max_iters": 100},
    {"name": "bim", "norm": "linf", "eps": 0.05, "eta": 0.01, "max_iters": 50, "stop": "none"},
    {"name": "bim", "norm": "l2", "eps": 2.0, "eta": 0.05, "max_iters": 100, "stop": "none"},
    {"name": "bim", "norm": "l2", "eps": 10.0, "eta": 0.05, "max_iters": 100, "stop": "none"},
    {"name": "bim", "norm": "l2", "eps": 10.0, "eta": 0.1, "max_iters": 100, "stop": "none"},
]


def _stats(values: torch.Tensor) -> dict[str, float]:
    v = values.double().numpy()
    if not v.size:
        return {}
    return {"median": float(np.median(v)), "q1": float(np.quantile(v, 0.25)),
            "q3": float(np.quantile(v, 0.75)), "min": float(v.min()), "max": float(v.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--clips", type=int, default=60)
    ap.add_argument("--split", default="val")
    ap.add_argument("--excerpt-hop", type=int, default=50)
    ap.add_argument("--min-rise", type=float, default=0.1)
    ap.add_argument("--candidates", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    run, data = load_run_and_data(args.run_dir, None, "cpu")
    task = run.task
    voice = getattr(data, "kind", None) == "voice"
    ds = (data.excerpts(args.split, hop=args.excerpt_hop) if voice
          else data.dataset(args.split, mode="fixed"))
    rows = np.linspace(0, len(ds) - 1, min(args.clips, len(ds))).astype(int)
    items = [ds[int(i)] for i in rows]
    ids = [str(it["id"]) for it in items]
    x = torch.stack([it["x"] for it in items])
    model = run.model.eval()
    clean = predict(model, x)
    seg = grid_segments(tuple(x.shape[-2:]), 4, 5)
    if args.candidates is not None:
        candidates = json.loads(args.candidates.read_text(encoding="utf-8"))
    else:
        candidates = CLASSIFICATION if task == "classification" else REGRESSION
    target_range = None
    if task == "classification":
        y = attack_targets(clean, "runner_up", ids, 0)
    else:
        y = torch.stack([it["targets"] for it in items])
        train = data.table.targets.loc[list(data.split.train)].to_numpy(dtype=float)
        target_range = float(np.nanmax(train) - np.nanmin(train))
    results = []
    for raw in candidates:
        attack = AttackSpec.from_dict(raw, n_outputs=clean.shape[1],
                                      target_range=target_range).build()
        t0 = time.perf_counter()
        res = attack(model, x, y)
        seconds = time.perf_counter() - t0
        adv = predict(model, res.x_adv)
        energy = segment_energy(res.delta, seg)
        top3 = energy.sort(dim=1, descending=True).values[:, :3].sum(1) / energy.sum(1).clamp(
            min=1e-30)
        ranking = rank_segments(energy)
        row: dict[str, Any] = {"attack": raw, "seconds": seconds,
                               "iterations": _stats(res.iterations),
                               "delta_l2": _stats(res.delta.flatten(1).norm(dim=1)),
                               "delta_linf": _stats(res.delta.flatten(1).abs().amax(1))}
        if task == "classification":
            ok = adv.argmax(1) == y
            row["target_probability"] = _stats(torch.softmax(adv, 1).gather(
                1, y[:, None])[:, 0][ok])
        else:
            mse0, mse1 = per_sample_mse(clean, y.double()), per_sample_mse(adv, y.double())
            ok = (mse1.sqrt() - mse0.sqrt()) >= args.min_rise * target_range
            row["rmse_rise"] = _stats(mse1.sqrt() - mse0.sqrt())
        row["success"] = float(ok.float().mean())
        row["n"] = len(ids)
        row["top3_energy_share"] = _stats(top3[ok])
        flips = {}
        for k in (1, 3, 5, 10):
            out = predict(model, x + keep_segments(res.delta, seg, ranking[:, :k]))
            if task == "classification":
                hit = out.argmax(1) == y
            else:
                rise = per_sample_mse(out, y.double()) - mse0
                hit = rise >= 0.5 * (mse1 - mse0)
            flips[str(k)] = float((hit & ok).float().sum() / ok.float().sum().clamp(min=1))
        row["magnitude_flip_rate"] = flips
        results.append(row)
        print(json.dumps({k: row[k] for k in ("attack", "success", "magnitude_flip_rate")}),
              flush=True)
    out = args.out or RESULTS / f"xeval-attacks-{args.run_dir.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out, {"run": str(args.run_dir), "task": task, "split": args.split,
                        "clips": len(ids), "target_range": target_range, "results": results,
                        "meta": io.run_meta()})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
