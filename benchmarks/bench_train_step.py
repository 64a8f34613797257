"""Seconds per training step (forward + backward + Adam) at batch 8 on 313x149 excerpts.

Measures the paper's width (1.0) and the demo width (0.125) on CPU, and on CUDA when available,
plus a 1024x1024 float32 matmul in the same run as a machine-speed baseline, so a result can be
read as "steps cost N matmuls" across machines. Writes benchmarks/results/train_step.json.

    python benchmarks/bench_train_step.py [--steps 3] [--widths 1.0 0.125] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from robustmer import io
from robustmer.models import build_model
from robustmer.train import TrainConfig, compute_loss

OUT = Path(__file__).resolve().parent / "results" / "train_step.json"


def _timed(fn: Callable[[], None], steps: int, device: torch.device) -> list[float]:
    fn()  # warm-up (allocations, cuDNN autotune)
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - t0)
    return times


def matmul_baseline(device: torch.device, steps: int) -> float:
    """Median seconds of one 1024x1024 @ 1024x1024 float32 matmul."""
    a = torch.randn(1024, 1024, device=device)
    b = torch.randn(1024, 1024, device=device)
    return statistics.median(_timed(lambda: (a @ b).sum().item(), max(steps, 5), device))


def train_step_time(width: float, device: torch.device, steps: int,
                    batch: int = 8) -> dict[str, Any]:
    """Median seconds of one a2m2e training step (the heaviest head) at ``width``."""
    torch.manual_seed(0)
    model = build_model("a2m2e", width=width).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=TrainConfig().lr)
    data = {"x": torch.randn(batch, 1, 313, 149, device=device),
            "emotions": torch.rand(batch, 8, device=device),
            "concepts": torch.rand(batch, 7, device=device),
            "concept_mask": torch.ones(batch, dtype=torch.bool, device=device)}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss = compute_loss(model, model.forward_all(data["x"]), data)
        loss.backward()
        opt.step()

    times = _timed(step, steps, device)
    return {"width": width, "batch": batch, "steps": steps,
            "params": sum(p.numel() for p in model.parameters()),
            "median_s": statistics.median(times), "min_s": min(times)}


def main() -> None:
    """Run the benchmark and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--widths", type=float, nargs="+", default=[1.0, 0.125])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    results: dict[str, Any] = {"meta": io.run_meta(threads=args.threads), "devices": {}}
    for dev in devices:
        base = matmul_baseline(dev, args.steps)
        rows = []
        for w in args.widths:
            row = train_step_time(w, dev, args.steps)
            row["matmuls_per_step"] = row["median_s"] / base
            rows.append(row)
            print(f"{dev.type:5s} width {w:<6} {row['median_s']:.4f} s/step "
                  f"(= {row['matmuls_per_step']:.1f} baseline matmuls, {row['params']} params)")
        results["devices"][dev.type] = {
            "name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "matmul_1024_s": base, "train_step": rows}
    io.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
