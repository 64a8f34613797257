"""The checks' unbounded-limit test again, with more iterations, on a finished study's models.

A model that the unbounded check flags (fewer than 90 % of the clips driven to the MSE limit)
has either broken gradients or a slower climb to the limit; more iterations tell them apart
(docs/results.md used it on the embedded study's aA2E models). Same clips (the first
``--clips`` test clips, fixed excerpts) and attack settings as the study's ``checks:`` block.

    python scripts/unbounded_iterations.py /tmp/emb aA2E_seed1 aA2E_seed2 --iters 100 300 1000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from robustmer.attacks.checks import unbounded_check
from robustmer.data import prepare_data
from robustmer.study.checks import test_clips
from robustmer.train.checkpoint import load_run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path, help="a study folder (data/, cache/, split.json, runs/)")
    ap.add_argument("runs", nargs="+", help="run ids, e.g. aA2E_seed1")
    ap.add_argument("--iters", type=int, nargs="+", default=[100, 300, 1000])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--eps", type=float, default=10.0)
    ap.add_argument("--eta", type=float, default=0.1)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = args.study
    data = prepare_data(out / "data", cache_dir=out / "cache", split_path=out / "split.json",
                        split_seed=args.split_seed, progress=False)
    x, y = test_clips(data, args.clips)
    for rid in args.runs:
        model = load_run(out / "runs" / rid / "train").model.eval()
        for iters in args.iters:
            t = time.perf_counter()
            df = unbounded_check(model, x, y, eps=args.eps, eta=args.eta, iters=iters,
                                 batch_size=args.clips)
            print(json.dumps({"run": rid, "iters": iters,
                              "fraction_at_limit": dict(zip(df["setting"], df["value"],
                                                            strict=True)),
                              "seconds": round(time.perf_counter() - t, 1)}), flush=True)


if __name__ == "__main__":
    main()
