"""One model of the demo's data and sizes with a given training variant: test metrics against
the mean predictor, the bottleneck's concept r and the CPU seconds of training (docs/demo.md).

    python benchmarks/bench_demo_recipe.py --kind a2m2e --std --lr 5e-3 [--sched onecycle]
        [--bn] [--amp] [--seed 1] [--epochs 25] [--clips 120 --duration 12] [--threads 1]
        [--version 3] [--dropout 0]

Appends one JSON line per run to ``--jsonl`` (default benchmarks/results/demo_recipe.jsonl).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from pathlib import Path

import torch

from robustmer import EMOTIONS
from robustmer.data import prepare_data, synthesize
from robustmer.data.synth import FORMAT_VERSION
from robustmer.evaluate.metrics import mean_predictor_metrics
from robustmer.train import TrainConfig, evaluate_model, train_run


def cpu_seconds() -> float:
    """User + system CPU time of this process (load-independent cost, unlike wall time)."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--version", type=int, default=None, help="synthetic-data format version")
    ap.add_argument("--kind", default="a2m2e", choices=["a2e", "a2b2e", "a2m2e"])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--patience", type=int, default=50)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--dropout", type=float, default=0.3, help="Dropout2d p (the demo: 0)")
    ap.add_argument("--emotion-weight", type=float, default=0.5)
    ap.add_argument("--std", action="store_true", help="standardize_targets")
    ap.add_argument("--sched", default="constant", choices=["constant", "onecycle"])
    ap.add_argument("--bn", action="store_true", help="bn_recalibrate")
    ap.add_argument("--amp", action="store_true", help="bfloat16 autocast on the CPU")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="data + runs (default: a temp dir)")
    ap.add_argument("--jsonl", type=Path,
                    default=Path(__file__).parent / "results" / "demo_recipe.jsonl")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="robustmer-demo-recipe-"))
    version = args.version or FORMAT_VERSION
    tag = f"{args.clips}-{args.duration:g}-v{version}"
    c0, t0 = cpu_seconds(), time.time()
    root = synthesize(work / f"data-{tag}", clips=args.clips, seed=0, duration=args.duration,
                      version=version).root
    data = prepare_data(root, cache_dir=work / f"cache-{tag}",
                        split_path=work / f"split-{tag}.json", split_seed=0, progress=False)
    c1 = cpu_seconds()
    emotions = data.table.targets[list(EMOTIONS)]
    base = mean_predictor_metrics(emotions.loc[list(data.split.train)].to_numpy(),
                                  emotions.loc[list(data.split.test)].to_numpy())
    cfg = TrainConfig(seed=args.seed, lr=args.lr, max_epochs=args.epochs, patience=args.patience,
                      emotion_weight=args.emotion_weight, standardize_targets=args.std,
                      lr_schedule=args.sched, bn_recalibrate=args.bn, amp=args.amp)
    run_dir = work / "runs" / f"{args.kind}-s{args.seed}-{time.time_ns()}"
    res = train_run(data.dataset("train", mode="random", seed=args.seed), data.dataset("val"),
                    run_dir, model_type=args.kind,
                    model_settings={"width": args.width, "dropout": args.dropout}, config=cfg,
                    data_description=data.to_dict(), progress=False)
    c2 = cpu_seconds()
    ev = evaluate_model(res.model, data.dataset("test"))
    concept = ev.get("concept_metrics")
    out = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
           "train_cpu_s": round(c2 - c1, 1), "data_cpu_s": round(c1 - c0, 1),
           "wall_s": round(time.time() - t0), "best_epoch": res.best_epoch,
           "test_mean_r": ev["metrics"]["mean_r"], "test_mae": ev["metrics"]["mae"],
           "mean_predictor_mae": base["mae"],
           "concept_mean_r": concept["mean_r"] if concept else None,
           "split": [len(data.split.train), len(data.split.val), len(data.split.test)]}
    print(json.dumps(out), flush=True)
    args.jsonl.parent.mkdir(parents=True, exist_ok=True)
    with args.jsonl.open("a", encoding="utf-8") as f:
        f.write(json.dumps(out) + "\n")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
