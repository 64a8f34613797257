"""Does LIME's sample count change what the label-flip test sees? 2048 against 8192 samples.

Reads the successful adversarial examples of an explainer-eval folder (``examples/<clip>.npz``:
``x``, ``δ``; ``adversarial.csv``: the explained class) for the first ``--clips`` clips, explains
``x + δ`` with LIME at each ``--samples`` count (the same seed), and reports per count the
agreement of the top-1 / top-3 / top-5 segment sets with the largest count's, the Spearman
correlation of the
segment weights, the label-flip rate at k = 1, 3, 5 (δ kept in the top-k segments, as
explainer-eval judges it), the surrogate's weighted R² and the seconds per clip. Writes
``benchmarks/results/lime-samples-<folder>.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_lime_samples.py XEVAL_DIR RUN_DIR
        [--clips 24] [--samples 2048,8192]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats

from robustmer import io
from robustmer.explain import make_explainer
from robustmer.explain.evaluation import (
    EXAMPLES,
    keep_segments,
    predict,
    rank_segments,
)
from robustmer.explain.segments import grid_segments
from robustmer.io import read_npz, safe_name
from robustmer.train import load_run

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--samples", default="2048,8192")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    counts = sorted(int(v) for v in args.samples.split(","))
    adv = pd.read_csv(args.folder / "adversarial.csv", dtype={"clip_id": str})
    adv = adv[adv["success"].astype(bool)].head(args.clips)
    arrays = [read_npz(args.folder / EXAMPLES / f"{safe_name(c)}.npz") for c in adv["clip_id"]]
    x = torch.stack([torch.as_tensor(a["x"]) for a in arrays])
    delta = torch.stack([torch.as_tensor(a["delta"]) for a in arrays])
    target = torch.as_tensor(adv["explained"].to_numpy(), dtype=torch.int64)
    model = load_run(args.run_dir).model.eval()
    seg = grid_segments(tuple(x.shape[-2:]), 4, 5)
    scores, r2, seconds = {}, {}, {}
    for n in counts:
        lime = make_explainer("lime", n_samples=n, batch_size=256)
        t0 = time.perf_counter()
        expl = lime(model, x + delta, target, seg)
        seconds[n] = (time.perf_counter() - t0) / len(x)
        scores[n], r2[n] = expl.segment_scores.double(), expl.extra["r2"].double()
        print(f"{n} samples: {seconds[n]:.2f} s per clip", flush=True)
    ref = rank_segments(scores[counts[-1]])
    rows: dict[str, Any] = {}
    for n in counts:
        rank = rank_segments(scores[n])
        row: dict[str, Any] = {"seconds_per_clip": seconds[n],
                               "r2_median": float(r2[n].median())}
        for k in (1, 3, 5):
            same = [len(set(rank[i, :k].tolist()) & set(ref[i, :k].tolist())) / k
                    for i in range(len(x))]
            row[f"top{k}_overlap_with_{counts[-1]}"] = float(np.mean(same))
            out = predict(model, x + keep_segments(delta, seg, rank[:, :k]))
            row[f"flip_rate_k{k}"] = float((out.argmax(1) == target).double().mean())
        row["spearman_with_largest"] = float(np.median([
            stats.spearmanr(scores[n][i].numpy(), scores[counts[-1]][i].numpy()).statistic
            for i in range(len(x))]))
        rows[str(n)] = row
    out = args.out or RESULTS / f"lime-samples-{args.folder.name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(out, {"folder": str(args.folder), "clips": len(x), "results": rows,
                        "meta": io.run_meta()})
    print(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
