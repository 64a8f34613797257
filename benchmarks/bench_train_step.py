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
from robustmer.models.types import get_type
from robustmer.train import TrainConfig, mixed_precision, solo_loss

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


def train_step_time(width: float, device: torch.device, steps: int, batch: int = 8,
                    amp: bool = False, channels_last: bool = False) -> dict[str, Any]:
    """Median seconds of one a2m2e training step (the heaviest head) at ``width``, optionally
    with mixed precision and channels-last (the speed options of ``TrainConfig``)."""
    torch.manual_seed(0)
    model = build_model("a2m2e", width=width).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=TrainConfig().lr)
    autocast, scaler = mixed_precision(device, amp)  # the trainer's own amp policy
    data = {"x": torch.randn(batch, 1, 313, 149, device=device).contiguous(memory_format=fmt),
            "targets": torch.rand(batch, 8, device=device),
            "concepts": torch.rand(batch, 7, device=device),
            "concept_mask": torch.ones(batch, dtype=torch.bool, device=device)}

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = solo_loss(get_type(model.kind), model.forward_all(data["x"]), data)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    times = _timed(step, steps, device)
    return {"width": width, "batch": batch, "steps": steps, "amp": amp,
            "channels_last": channels_last,
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
        # The speed options are measured where they are meant to be used (CUDA); the first
        # variant of each width (float32, default layout) is the paper recipe and the baseline.
        variants = ([(False, False), (False, True), (True, False), (True, True)]
                    if dev.type == "cuda" else [(False, False)])
        for w in args.widths:
            fp32 = None
            for amp, cl in variants:
                row = train_step_time(w, dev, args.steps, amp=amp, channels_last=cl)
                fp32 = fp32 or row
                row["matmuls_per_step"] = row["median_s"] / base
                row["speedup_vs_fp32"] = fp32["median_s"] / row["median_s"]
                rows.append(row)
                print(f"{dev.type:5s} width {w:<6} amp={amp!s:5} channels_last={cl!s:5} "
                      f"{row['median_s']:.4f} s/step (= {row['matmuls_per_step']:.1f} baseline "
                      f"matmuls, {row['params']} params)")
        results["devices"][dev.type] = {
            "name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "matmul_1024_s": base, "train_step": rows}
    io.write_json(args.out, results)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
