"""Many runs on one device: the same set of (kind, seed) training runs trained (a) one after
another, (b) as N concurrent processes (the study's ``train.jobs``), (c) as batched seeds (one
stacked model, ``robustmer.train.batched``); models x steps per second for each.

Every mode trains the same runs with the same recipe (``TrainConfig`` defaults, ``--epochs``
epochs of ``--steps`` batches, each epoch ending with its validation on ``--val-clips`` clips and
its checkpoints: the defaults 36 steps and 36 clips are the paper's Soundtracks epoch, 288
training clips at batch 8), on in-memory random excerpts of the paper's shape (1 x 313 x 149 by
default), so no audio is needed. The wall
time of a mode covers everything a study pays for its training: for (b) that includes starting
the processes (torch import, CUDA context), for (a) and (c) one warm-up run first in this process.
It also reports how far the batched seeds' weights are from the sequential runs' (max |dw|).
Mode ``attacks`` times the study's attack (BIM, ``--attack-iters`` iterations, all
``--attack-clips`` clips in one batch) of every seed's model one after another against all
seeds' models in one batch through ``models.stacked.SeedInterleaved`` (clip-iterations per
second), on freshly initialised models (the speed does not depend on the weights).
Writes ``benchmarks/results/scale.json``.

    python benchmarks/bench_scale.py --device cuda [--width 1.0] [--seeds 0 1 2 3 4 5 6 7 8 9]
        [--epochs 5] [--steps 36] [--jobs N] [--kind a2e] [--channels-last]
    python benchmarks/bench_scale.py --width 0.0625 --seeds 0 1 2 --epochs 2 --steps 10 \\
        --frames 64 --bands 40                       # a CPU smoke run
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from robustmer import io
from robustmer.study.executor import ProcessExecutor
from robustmer.train import TrainConfig, load_run, train_run
from robustmer.train.batched import train_runs_batched

OUT = Path(__file__).resolve().parent / "results" / "scale.json"


class RandomExcerpts(Dataset):
    """``n`` fixed random excerpts ``(1, frames, bands)`` with random targets (the documented
    item dicts); the same for a given ``seed`` in every process."""

    def __init__(self, n: int, frames: int, bands: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, frames, bands, generator=g)
        self.emotions = torch.rand(n, 8, generator=g)
        self.concepts = torch.rand(n, 7, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"id": f"{i:05d}", "x": self.x[i], "targets": self.emotions[i],
                "concepts": self.concepts[i], "concept_mask": True,
                "label": torch.tensor(-1)}


def _data(args: argparse.Namespace) -> tuple[Dataset, Dataset]:
    train = RandomExcerpts(args.steps * args.batch_size, args.frames, args.bands, seed=1)
    val = RandomExcerpts(args.val_clips, args.frames, args.bands, seed=2)
    return train, val


def _config(args: argparse.Namespace, seed: int = 0) -> TrainConfig:
    return TrainConfig(seed=seed, max_epochs=args.epochs, batch_size=args.batch_size,
                       device=args.device, channels_last=args.channels_last)


def train_one(task: tuple[argparse.Namespace, int, str]) -> float:
    """One run with ``train_run`` (in this process or a worker); its wall seconds."""
    args, seed, run_dir = task
    train, val = _data(args)
    t0 = time.perf_counter()
    train_run(train, val, run_dir, model_type=args.kind, model_settings={"width": args.width},
              config=_config(args, seed), progress=False)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def bench_attacks(args: argparse.Namespace) -> list[dict[str, Any]]:
    """BIM of S models one after another vs in one interleaved batch (clip-iterations / s)."""
    from robustmer.attacks import BIM
    from robustmer.models import build_model
    from robustmer.models.stacked import SeedInterleaved

    dev, s = torch.device(args.device), len(args.seeds)
    models = []
    for seed in args.seeds:
        torch.manual_seed(seed)
        models.append(build_model(args.kind, width=args.width).to(dev).eval())
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.attack_clips, 1, args.frames, args.bands, generator=g).to(dev)
    y = torch.rand(args.attack_clips, 8, generator=g).to(dev)
    attack = BIM(eps=0.001, eta=0.002, max_iters=args.attack_iters, stop="none")
    view = SeedInterleaved.from_models(models).eval()
    xr, yr = x.repeat_interleave(s, 0), y.repeat_interleave(s, 0)
    attack(models[0], x[:2], y[:2])  # warm-up
    attack(view, xr[: 2 * s], yr[: 2 * s])
    work = s * args.attack_clips * args.attack_iters
    out = []
    for mode, fn in (("attack one model at a time", lambda: [attack(m, x, y) for m in models]),
                     ("attack all seeds at once", lambda: attack(view, xr, yr))):
        _sync(args.device)
        t0 = time.perf_counter()
        fn()
        _sync(args.device)
        sec = time.perf_counter() - t0
        out.append({"mode": mode, "models": s, "clips": args.attack_clips,
                    "iterations": args.attack_iters, "wall_s": sec,
                    "clip_iterations_per_s": work / sec})
        print(f"{mode:28s} {s} models x {args.attack_clips} clips x {args.attack_iters} it: "
              f"{sec:7.2f} s, {work / sec:8.1f} clip-iterations/s", flush=True)
    out[1]["speedup_vs_one_at_a_time"] = out[0]["wall_s"] / out[1]["wall_s"]
    return out


def main() -> None:
    """Run the three modes and write the JSON."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--kind", default="a2e", choices=["a2e", "a2b2e", "a2m2e"])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--steps", type=int, default=36, help="training steps per epoch")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--frames", type=int, default=313)
    ap.add_argument("--bands", type=int, default=149)
    ap.add_argument("--val-clips", type=int, default=36)
    ap.add_argument("--jobs", type=int, default=None, help="processes in (b) (default: seeds)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--attack-clips", type=int, default=36, help="clips per model (paper: 36)")
    ap.add_argument("--attack-iters", type=int, default=20)
    ap.add_argument("--modes", nargs="+",
                    default=["sequential", "processes", "batched", "attacks"],
                    choices=["sequential", "processes", "batched", "attacks"])
    ap.add_argument("--work", type=Path, default=None, help="run folders (default: temp dir)")
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()
    jobs = args.jobs or len(args.seeds)
    work = args.work or Path(tempfile.mkdtemp(prefix="robustmer-scale-"))
    n_models = len(args.seeds)
    total_steps = n_models * args.steps * args.epochs
    train, val = _data(args)

    # warm-up in this process: CUDA context, cuDNN handles, allocator
    warm = argparse.Namespace(**{**vars(args), "steps": 2, "epochs": 1})
    train_one((warm, 0, str(work / "warmup")))
    train_runs_batched(_data(warm)[0], val, [work / "warmup-b0", work / "warmup-b1"],
                       model_type=args.kind, seeds=[0, 1],
                       model_settings={"width": args.width}, config=_config(warm),
                       progress=False)

    rows: list[dict[str, Any]] = []

    def record(mode: str, seconds: float, **extra: Any) -> None:
        row = {"mode": mode, "models": n_models, "steps_per_model": args.steps * args.epochs,
               "wall_s": seconds, "model_steps_per_s": total_steps / seconds, **extra}
        rows.append(row)
        print(f"{mode:10s} {n_models} models x {row['steps_per_model']} steps in {seconds:7.2f} s: "
              f"{row['model_steps_per_s']:8.1f} model-steps/s", flush=True)

    if "sequential" in args.modes:
        t0 = time.perf_counter()
        for s in args.seeds:
            train_one((args, s, str(work / f"seq-{s}")))
        _sync(args.device)
        record("sequential", time.perf_counter() - t0)
    if "processes" in args.modes:
        tasks = [(args, s, str(work / f"proc-{s}")) for s in args.seeds]
        t0 = time.perf_counter()
        inner = [sec for _, sec in ProcessExecutor(jobs).map(train_one, tasks)]
        record("processes", time.perf_counter() - t0, jobs=jobs,
               max_run_s=max(inner), mean_run_s=sum(inner) / len(inner))
    if "batched" in args.modes:
        t0 = time.perf_counter()
        train_runs_batched(train, val, [work / f"bat-{s}" for s in args.seeds],
                           model_type=args.kind, seeds=args.seeds,
                           model_settings={"width": args.width}, config=_config(args),
                           progress=False)
        _sync(args.device)
        seconds = time.perf_counter() - t0
        extra: dict[str, Any] = {}
        if "sequential" in args.modes:  # how far batched is from the solo runs
            diffs = []
            for s in args.seeds:
                a = load_run(work / f"seq-{s}", "last").model.state_dict()
                b = load_run(work / f"bat-{s}", "last").model.state_dict()
                diffs.append(max(float((a[k].float() - b[k].float()).abs().max()) for k in a))
            extra["max_abs_weight_diff_vs_sequential"] = max(diffs)
        record("batched", seconds, **extra)
    if "attacks" in args.modes:
        rows.extend(bench_attacks(args))
    base = next((r for r in rows if r["mode"] == "sequential"), None)
    for row in rows:
        if "model_steps_per_s" in row:
            row["speedup_vs_sequential"] = (base["wall_s"] / row["wall_s"]) if base else None
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    io.write_json(args.json, {"settings": {k: str(v) for k, v in vars(args).items()},
                              "device": device, "rows": rows,
                              "meta": io.run_meta(threads=torch.get_num_threads())})
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
