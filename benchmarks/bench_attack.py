"""Attack throughput: the batched BIM loop vs a one-sample-at-a-time loop, same settings.

At the paper's model size and input shape (build_model("a2e", width=1.0), 1x313x149 excerpts,
batch 8), on CPU (and CUDA when available). Throughput is in sample-iterations per second
(samples x update steps / seconds; the loop's extra start and final forward checks are included
in the time). The CPU figure is also given as a fraction of the machine's float32 matmul FLOP/s
measured in the same run (fastest of 7 runs, before and after). FLOPs are counted with
torch.utils.flop_counter.FlopCounterMode: the counted step (forward + backward w.r.t. the input
only, about 2 x forward since no weight gradients are needed) is used, and the rule-of-thumb
3 x forward is reported beside it. Writes benchmarks/results/attack.json.

    python benchmarks/bench_attack.py [--iters 3] [--batch 8] [--rounds 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from robustmer import io
from robustmer.attacks import BIM
from robustmer.models import build_model

OUT = Path(__file__).resolve().parent / "results" / "attack.json"
SHAPE = (1, 313, 149)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(device: torch.device, size: int = 1024, reps: int = 7) -> dict[str, float]:
    """Float32 matmul throughput (median of ``reps``): the machine-speed baseline."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    (a @ b).sum().item()
    times = []
    for _ in range(reps):
        _sync(device)
        t0 = time.perf_counter()
        (a @ b).sum().item()
        _sync(device)
        times.append(time.perf_counter() - t0)
    # the fastest run: on a shared machine the median mostly measures the other tenants
    t = min(times)
    return {"matmul_size": size, "matmul_s": t, "matmul_median_s": statistics.median(times),
            "flops_per_s": 2.0 * size**3 / t}


def forward_flops(model: torch.nn.Module, device: torch.device) -> int:
    """FLOPs of one forward pass on one excerpt (FlopCounterMode: convs + matmuls)."""
    x = torch.randn(1, *SHAPE, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return int(counter.get_total_flops())


def step_flops(model: torch.nn.Module, device: torch.device) -> int:
    """FLOPs of one attack step on one excerpt: forward + backward w.r.t. the *input* only.

    The attack never asks for weight gradients, so a step costs about 2x forward, not the 3x
    of a training step. Counted with ``.backward()`` on a frozen copy because FlopCounterMode's
    module hooks do not support ``torch.autograd.grad``.
    """
    import copy

    frozen = copy.deepcopy(model)
    for p in frozen.parameters():
        p.requires_grad_(False)
    x = torch.randn(1, *SHAPE, device=device, requires_grad=True)
    counter = FlopCounterMode(display=False)
    with counter:
        frozen(x).sum().backward()
    return int(counter.get_total_flops())


def _time(fn: Any, device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def bench_device(device: torch.device, iters: int, batch: int,
                 rounds: int = 2) -> dict[str, Any]:
    """Batched vs one-at-a-time throughput of the same attack on ``device`` (alternating
    ``rounds`` times; the fastest of each is kept)."""
    torch.manual_seed(0)
    model = build_model("a2e", width=1.0).to(device).eval()
    x = torch.randn(batch, *SHAPE, device=device)
    y = torch.rand(batch, 8, device=device)
    attack = BIM(eps=0.001, eta=0.002, max_iters=iters, stop="none")
    attack(model, x[:2], y[:2])  # warm-up (allocations, cuDNN autotune)
    res: dict[str, Any] = {}
    tb, ts = [], []
    for _ in range(rounds):
        tb.append(_time(lambda: attack(model, x, y), device))
        ts.append(_time(lambda: [attack(model, x[i:i + 1], y[i:i + 1]) for i in range(batch)],
                        device))
    t_batched, t_single = min(tb), min(ts)
    work = batch * iters
    res["batched"] = {"seconds": t_batched, "sample_iters_per_s": work / t_batched}
    res["one_at_a_time"] = {"seconds": t_single, "sample_iters_per_s": work / t_single}
    res["speedup_batched_vs_single"] = t_single / t_batched
    return res


def main() -> None:
    """Run the benchmark and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-cuda", action="store_true")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = [torch.device("cpu")]
    if torch.cuda.is_available() and not args.no_cuda:
        devices.append(torch.device("cuda"))
    model = build_model("a2e", width=1.0).eval()
    fwd = forward_flops(model, torch.device("cpu"))
    step = step_flops(model, torch.device("cpu"))
    out: dict[str, Any] = {
        "model": {"kind": "a2e", "width": 1.0, "input": list(SHAPE),
                  "params": sum(p.numel() for p in model.parameters()),
                  "forward_flops_per_sample": fwd,
                  "attack_step_flops_per_sample_counted": step,
                  "attack_step_flops_per_sample_3x_forward": 3 * fwd},
        "settings": {"iters": args.iters, "batch": args.batch, "rounds": args.rounds,
                     "eps": 0.001, "eta": 0.002, "stop": "none", "norm": "linf"},
        "devices": {},
    }
    for dev in devices:
        base = matmul_flops(dev)
        r = bench_device(dev, args.iters, args.batch, args.rounds)
        after = matmul_flops(dev)
        if after["flops_per_s"] > base["flops_per_s"]:
            base = after
        for k in ("batched", "one_at_a_time"):
            achieved = r[k]["sample_iters_per_s"] * step
            r[k]["achieved_flops_per_s"] = achieved
            r[k]["fraction_of_matmul_flops"] = achieved / base["flops_per_s"]
            r[k]["fraction_of_matmul_flops_3x_forward"] = (
                r[k]["sample_iters_per_s"] * 3 * fwd / base["flops_per_s"])
        out["devices"][dev.type] = {"name": (torch.cuda.get_device_name(dev)
                                             if dev.type == "cuda" else "cpu"),
                                    **base, **r}
        print(f"{dev.type}: batched {r['batched']['sample_iters_per_s']:.2f} sample-it/s, "
              f"one-at-a-time {r['one_at_a_time']['sample_iters_per_s']:.2f} sample-it/s "
              f"(x{r['speedup_batched_vs_single']:.2f}); batched = "
              f"{r['batched']['fraction_of_matmul_flops']:.1%} of matmul FLOP/s "
              f"({base['flops_per_s'] / 1e9:.1f} GFLOP/s)")
    out["meta"] = io.run_meta(threads=torch.get_num_threads())
    io.write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
