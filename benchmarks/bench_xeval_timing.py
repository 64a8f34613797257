"""Seconds per explained clip of every method of an explainer-eval folder, timed on its own.

``timings.csv`` of a folder records what each explanation took during the run, on a machine
shared with whatever else ran then. This script re-explains the first ``--clips`` successful
adversarial examples (``x + δ``, the explained class) with each method at the folder's own
settings (``config.yaml: explainers``), in batches of the folder's ``batch_size`` as the run
did, and reports the seconds per clip (best of ``--reps``) with the load average before and
after. Writes ``benchmarks/results/xeval-timing-<folder>.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_xeval_timing.py XEVAL_DIR RUN_DIR [--clips 16]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import pandas as pd
import torch
import yaml

from robustmer import io
from robustmer.explain import make_explainer
from robustmer.explain.evaluation import EXAMPLES
from robustmer.explain.segments import grid_segments
from robustmer.io import read_npz, safe_name
from robustmer.train import load_run

RESULTS = Path(__file__).resolve().parent / "results"
NOT_PARAMS = {"method", "base", "noise", "baseline", "surrogate"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--clips", type=int, default=16)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load((args.folder / "config.yaml").read_text(encoding="utf-8"))
    adv = pd.read_csv(args.folder / "adversarial.csv", dtype={"clip_id": str})
    adv = adv[adv["success"].astype(bool)].head(args.clips)
    arrays = [read_npz(args.folder / EXAMPLES / f"{safe_name(c)}.npz") for c in adv["clip_id"]]
    x = torch.stack([torch.as_tensor(a["x"]) + torch.as_tensor(a["delta"]) for a in arrays])
    target = torch.as_tensor(adv["explained"].to_numpy(), dtype=torch.int64)
    model = load_run(args.run_dir).model.eval()
    n_freq, n_time = config.get("grid", [4, 5])
    seg = grid_segments(tuple(x.shape[-2:]), n_freq, n_time)
    batch = int(config.get("batch_size", 8))
    load_before = os.getloadavg()
    out = {}
    for name, cfg in (config.get("explainers") or {}).items():
        params = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()
                  if k not in NOT_PARAMS}
        explainer = make_explainer(name, **params)
        best = float("inf")
        for _ in range(args.reps):
            t0 = time.perf_counter()
            for i in range(0, len(x), batch):
                explainer(model, x[i:i + batch], target[i:i + batch], seg)
            best = min(best, (time.perf_counter() - t0) / len(x))
        out[name] = best
        print(f"{name}: {best:.4f} s per clip", flush=True)
    path = args.out or RESULTS / f"xeval-timing-{args.folder.name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(path, {"folder": str(args.folder), "clips": len(x), "threads": args.threads,
                         "seconds_per_clip": out, "loadavg_before": load_before,
                         "loadavg_after": os.getloadavg(), "meta": io.run_meta()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
