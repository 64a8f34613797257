"""The paper's recipe at the paper's size on the real Soundtracks clips: what test performance do
A2E and A2B2E reach, and how long does it take (meant for a GPU)?

Trains each (model type, seed) with ``TrainConfig()`` defaults (Adam 5e-4, batch 8, at most 200
epochs, early stopping with patience 50 on validation mean r), width 1.0, on the persisted 80/10/10
split, then scores the best checkpoint on the test split against the mean predictor (training
mean). Writes ``benchmarks/results/paper_recipe.json``. A2M2E needs the Mid-level annotations,
which are not available here, so it is not part of this benchmark.

The spectrograms can come from the audio (``--data``) or from a pack made with ``--make-pack``
(float16, each clip cut to its first ``--pack-frames`` frames) for a machine that has no copy of
the audio; the pack also holds the split, so both machines train on the same clips.

    python benchmarks/bench_paper_recipe.py --data ../shared/data/soundtracks --device cuda \\
        [--kinds a2e a2b2e] [--seeds 0 1 2 3] [--jobs 8]
    python benchmarks/bench_paper_recipe.py --data ../shared/data/soundtracks --make-pack P.npz
    python benchmarks/bench_paper_recipe.py --pack P.npz --ratings mean_ratings_set1.csv ...
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustmer import EMOTIONS, io
from robustmer.data import load_dataset, prepare_data
from robustmer.data.table import ClipTable
from robustmer.data.torchdata import ExcerptDataset
from robustmer.evaluate.metrics import mean_predictor_metrics
from robustmer.features import Standardizer
from robustmer.train import TrainConfig, evaluate_model, train_run

OUT = Path(__file__).resolve().parent / "results" / "paper_recipe.json"


def make_pack(data: Path, pack: Path, frames: int, work: Path) -> None:
    """Write the clips' spectrograms (float16, first ``frames`` frames) and the split."""
    prepared = prepare_data(data, cache_dir=work / "cache", split_path=work / "split.json",
                            progress=False)
    ids = sorted(prepared.specs)
    specs = [prepared.specs[i][:frames].astype(np.float16) for i in ids]
    split = {p: list(prepared.split.part(p)) for p in ("train", "val", "test")}
    with io.atomic_open(pack, "wb") as f:
        np.savez(f, data=np.concatenate(specs), lengths=np.array([len(s) for s in specs]),
                 ids=np.array(ids),
                 split=np.array(json.dumps(split | {"split_id": prepared.split.split_id})))
    print(f"wrote {pack}: {len(ids)} clips, {pack.stat().st_size / 1e6:.1f} MB")


def load_specs(args: argparse.Namespace, work: Path) -> tuple[
        dict[str, np.ndarray], dict[str, Any], ClipTable]:
    """Spectrograms, split and ratings table, from the audio or from a pack."""
    if args.pack is None:
        prepared = prepare_data(args.data, cache_dir=work / "cache",
                                split_path=work / "split.json", progress=False)
        split = {p: list(prepared.split.part(p)) for p in ("train", "val", "test")}
        return prepared.specs, split | {"split_id": prepared.split.split_id}, prepared.table
    with np.load(args.pack, allow_pickle=False) as z:
        offsets = np.concatenate([[0], np.cumsum(z["lengths"])])
        specs = {str(i): z["data"][offsets[k]:offsets[k + 1]].astype(np.float32)
                 for k, i in enumerate(z["ids"])}
        split = json.loads(str(z["split"]))
    # The ratings table needs a dataset folder; without the audio, placeholders stand in for it
    # (the audio is never read: the spectrograms come from the pack).
    root = work / "ratings-only"
    (root / "Set1").mkdir(parents=True, exist_ok=True)
    (root / "mean_ratings_set1.csv").write_bytes(Path(args.ratings).read_bytes())
    for clip_id in specs:
        (root / "Set1" / f"{clip_id}.mp3").touch()
    return specs, split, load_dataset(root)


def train_one(args: argparse.Namespace, kind: str, seed: int, work: Path) -> dict[str, Any]:
    """Train one run with the paper's recipe and score it on the test split."""
    specs, split, table = load_specs(args, work)
    standardizer = Standardizer.fit(specs[i] for i in split["train"])

    def dataset(part: str, mode: str) -> ExcerptDataset:
        return ExcerptDataset(split[part], specs, table, standardizer, mode=mode, seed=seed)

    config = TrainConfig(seed=seed, device=args.device, amp=args.amp, max_epochs=args.epochs,
                         channels_last=args.channels_last)
    t0 = time.perf_counter()
    res = train_run(dataset("train", "random"), dataset("val", "fixed"),
                    work / f"{kind}-seed{seed}", model_type=kind,
                    model_settings={"width": args.width}, config=config,
                    data_description={"split_id": split["split_id"]},
                    normaliser=standardizer.to_dict(), resume=True, progress=False)
    seconds = time.perf_counter() - t0
    ev = evaluate_model(res.model, dataset("test", "fixed"), device=args.device)
    baseline = mean_predictor_metrics(
        table.targets.loc[split["train"], list(EMOTIONS)].to_numpy(), ev["targets"], EMOTIONS)
    return {"kind": kind, "seed": seed, "width": args.width, "seconds": seconds,
            "epochs": res.last_epoch, "best_epoch": res.best_epoch,
            "test": ev["metrics"], "mean_predictor_test_mae": baseline["mae"],
            "test_clips": len(split["test"]), "split_id": split["split_id"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get(
        "ROBUSTMER_SOUNDTRACKS", "../shared/data/soundtracks")))
    ap.add_argument("--pack", type=Path, default=None, help="train from this pack")
    ap.add_argument("--ratings", type=Path, default=None,
                    help="mean_ratings_set1.csv (needed with --pack)")
    ap.add_argument("--make-pack", type=Path, default=None, help="write a pack and stop")
    ap.add_argument("--pack-frames", type=int, default=500, help="frames kept per clip")
    ap.add_argument("--kinds", nargs="+", default=["a2e", "a2b2e"], choices=["a2e", "a2b2e"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--width", type=float, default=1.0)
    ap.add_argument("--epochs", type=int, default=200, help="at most (the recipe: 200)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--amp", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--jobs", type=int, default=1, help="runs trained at once (processes)")
    ap.add_argument("--work", type=Path, default=None, help="run folders (default: temp dir)")
    ap.add_argument("--json", type=Path, default=OUT)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # worker: "kind:seed"
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="robustmer-paper-"))
    if args.make_pack is not None:
        make_pack(args.data, args.make_pack, args.pack_frames, work)
        return
    if args.pack is not None and args.ratings is None:
        ap.error("--pack needs --ratings (the dataset's mean_ratings_set1.csv)")
    if args.one is not None:  # a worker: one run, one JSON line on stdout
        kind, seed = args.one.split(":")
        print(json.dumps(train_one(args, kind, int(seed), work), default=float), flush=True)
        return
    if args.pack is None:  # featurise once, before any worker reads the cache
        load_specs(args, work)
    runs = [f"{k}:{s}" for k in args.kinds for s in args.seeds]
    base_cmd = [sys.executable, __file__, *sys.argv[1:], "--work", str(work)]
    results: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for start in range(0, len(runs), args.jobs):
        procs = [subprocess.Popen([*base_cmd, "--one", r], stdout=subprocess.PIPE, text=True)
                 for r in runs[start:start + args.jobs]]
        for run, proc in zip(runs[start:start + args.jobs], procs, strict=True):
            out, _ = proc.communicate()
            if proc.returncode != 0:
                sys.exit(f"run {run} failed (exit {proc.returncode})")
            row = json.loads(out.strip().splitlines()[-1])
            results.append(row)
            print(f"{row['kind']} seed {row['seed']}: test r {row['test']['mean_r']:.3f}, MAE "
                  f"{row['test']['mae']:.4f} (mean predictor {row['mean_predictor_test_mae']:.4f})"
                  f", best epoch {row['best_epoch']}/{row['epochs']}, {row['seconds']:.0f} s",
                  flush=True)
    summary = {}
    for kind in args.kinds:
        rows = [r for r in results if r["kind"] == kind]
        for key in ("mean_r", "mae"):
            vals = np.array([r["test"][key] for r in rows])
            summary[f"{kind}_{key}"] = {"mean": float(vals.mean()), "sd": float(vals.std(ddof=1))
                                        if len(vals) > 1 else float("nan")}
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    io.write_json(args.json, {"settings": {k: str(v) for k, v in vars(args).items()},
                              "device": device, "wall_seconds": time.perf_counter() - t0,
                              "summary": summary, "runs": results,
                              "meta": io.run_meta(threads=torch.get_num_threads())})
    print(json.dumps(summary, indent=1))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
