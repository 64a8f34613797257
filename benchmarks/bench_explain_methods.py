"""Time per explained clip for each explanation method, on one clip at the paper's model size.

Model: build_model("a2e", width=1.0) (random init; the cost does not depend on the weights),
input (1, 1, 313, 149), target output 0, the default 4x5 segment grid. Each method is timed
with the settings given on the command line (small by default, so the whole script stays within
a few CPU minutes on 2 shared cores) and the time is also extrapolated linearly to the method's
defaults (25 noisy samples, 50 IG steps, 8192 LIME samples): every one of these costs is a
count of model passes, so the time per pass times the default count is the estimate. The JSON
says which numbers were measured and which are extrapolated. Best (minimum) of ``--reps`` runs
after one warm-up run of saliency; the load average is recorded because the machine is shared.
Writes benchmarks/results/explain_methods.json.

    python benchmarks/bench_explain_methods.py [--reps 1] [--threads 2] [--device cpu]
        [--nt-samples 4] [--n-steps 4] [--lime-samples 64]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

from robustmer import io
from robustmer.explain import grid_segments, make_explainer
from robustmer.models import build_model

OUT = Path(__file__).resolve().parent / "results" / "explain_methods.json"
SHAPE = (1, 313, 149)
DEFAULTS = {"nt_samples": 25, "n_steps": 50, "n_samples": 8192}
METHODS = ("saliency", "gbp", "ig", "smoothgrad", "smoothgrad_sq", "vargrad", "gbp+smoothgrad",
           "ig+smoothgrad", "lime")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def settings(method: str, nt_samples: int, n_steps: int, lime_samples: int) -> dict[str, Any]:
    """The reduced settings a method is timed with."""
    if method == "lime":
        return {"n_samples": lime_samples}
    params: dict[str, Any] = {}
    base, _, noise = method.partition("+")
    if base == "ig":
        params["n_steps"] = n_steps
    if noise or method in ("smoothgrad", "smoothgrad_sq", "vargrad"):
        params["nt_samples"] = nt_samples
    return params


def scale_to_defaults(params: dict[str, Any]) -> float:
    """How many times more model passes the defaults take than ``params``."""
    factor = 1.0
    for key, value in params.items():
        factor *= DEFAULTS[key] / value
    return factor


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--nt-samples", type=int, default=4)
    ap.add_argument("--n-steps", type=int, default=4)
    ap.add_argument("--lime-samples", type=int, default=64)
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("a2e", width=1.0).to(device).eval()
    x = torch.randn(1, *SHAPE, device=device)
    seg = grid_segments(SHAPE[-2:]).to(device)
    make_explainer("saliency")(model, x, 0, seg)  # warm-up
    rows = []
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        params = settings(method, args.nt_samples, args.n_steps, args.lime_samples)
        explainer = make_explainer(method, **params)
        times = []
        for _ in range(args.reps):
            _sync(device)
            t0 = time.perf_counter()
            explainer(model, x, 0, seg)
            _sync(device)
            times.append(time.perf_counter() - t0)
        factor = scale_to_defaults(params)
        row = {"method": method, "settings": params, "measured_s": min(times),
               "all_runs_s": times, "default_settings": {k: DEFAULTS[k] for k in params},
               "estimated_default_s": min(times) * factor, "extrapolated": factor != 1.0}
        rows.append(row)
        print(f"{method:16s} {min(times):8.2f} s with {params or 'defaults'}; "
              f"{'~' if factor != 1.0 else ''}{row['estimated_default_s']:.1f} s at defaults")
    payload = {"model": "a2e", "width": 1.0, "input": [1, *SHAPE], "device": str(device),
               "threads": args.threads, "reps": args.reps,
               "loadavg_after": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
               "cpu_count": os.cpu_count(), "results": rows, "meta": io.run_meta()}
    io.write_json(args.out, payload)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
