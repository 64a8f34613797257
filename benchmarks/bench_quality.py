"""Quality benchmark on the embedded concept dataset: do the models learn, do attacks bite, and
what does adversarial training cost?

Trains A2E, A2B2E, A2M2E and aA2E (thin network, CPU-sized recipe) on one synthetic dataset,
compares each with the mean predictor on the test split, reports A2M2E's concept correlation,
attacks every model in the spectrogram domain (at the paper's ε and at a larger one) and in the
waveform domain, and times adversarial training against normal training in the same run.
Writes ``benchmarks/results/quality.json``. About 20 minutes on 2 CPU cores.

    python benchmarks/bench_quality.py [--clips 240] [--epochs 200] [--lr 0.001] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from robustmer import EMOTIONS, io
from robustmer.attacks import BIM
from robustmer.attacks.runner import attack_dataset
from robustmer.data import prepare_data, synthesize
from robustmer.evaluate.metrics import mean_predictor_metrics
from robustmer.evaluate.summary import summarize_run
from robustmer.train import TrainConfig, evaluate_model, train_run


def attack_summary(table: Any) -> dict[str, float]:
    """MAE before/after, mean r, SNR and iterations of one attacked split: the same
    ``evaluate.summary.summarize_run`` the study and the report use."""
    m = summarize_run(table)
    return {"mae_clean": m["clean_mae"], "mae_adv": m["adv_mae"], "delta_mae": m["delta_mae"],
            "r_clean": m["clean_mean_r"], "r_adv": m["adv_mean_r"],
            "mean_snr_db": m["mean_snr_db"], "mean_iterations": m["mean_iterations"],
            "max_delta_linf": float(table["delta_linf"].max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=240)
    ap.add_argument("--epochs", type=int, default=200, help="at most (the paper's 200)")
    ap.add_argument("--patience", type=int, default=50, help="early stopping (the paper's 50)")
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--lr", type=float, default=0.001,
                    help="Adam learning rate (the paper's 5e-4 is slow for the thin network)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cost-epochs", type=int, default=10,
                    help="epochs of the A2E vs aA2E training-cost comparison")
    ap.add_argument("--out", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--json", type=Path,
                    default=Path(__file__).parent / "results" / "quality.json")
    args = ap.parse_args()
    work = args.out or Path(tempfile.mkdtemp(prefix="robustmer-quality-"))
    root = synthesize(work / "data", clips=args.clips, seed=0).root
    data = prepare_data(root, cache_dir=work / "cache", split_path=work / "split.json")
    emotions = data.table.targets[list(EMOTIONS)]
    baseline = mean_predictor_metrics(emotions.loc[list(data.split.train)].to_numpy(),
                                      emotions.loc[list(data.split.test)].to_numpy(), EMOTIONS)
    result: dict[str, Any] = {"settings": vars(args) | {"out": str(work), "json": str(args.json)},
                              "split_sizes": {p: len(data.split.part(p))
                                              for p in ("train", "val", "test")},
                              "mean_predictor_test_mae": baseline["mae"], "models": {}}
    attacks = {
        "spectrogram_eps0.001": ("spectrogram", BIM(eps=0.001, eta=0.002, max_iters=100)),
        "spectrogram_eps0.05": ("spectrogram", BIM(eps=0.05, eta=0.01, max_iters=100)),
        "waveform_eps0.002": ("waveform", BIM(eps=0.002, eta=0.0005, max_iters=50)),
        "waveform_eps0.01": ("waveform", BIM(eps=0.01, eta=0.002, max_iters=50)),
    }
    for name, kind, adversarial in (("A2E", "a2e", False), ("A2B2E", "a2b2e", False),
                                    ("A2M2E", "a2m2e", False), ("aA2E", "a2e", True)):
        cfg = TrainConfig(seed=args.seed, lr=args.lr, max_epochs=args.epochs,
                          patience=args.patience, adversarial_every=5 if adversarial else 0)
        attack = BIM(eps=0.05, eta=0.01, max_iters=10) if adversarial else None
        t0 = time.perf_counter()
        res = train_run(data.dataset("train", mode="random", seed=args.seed), data.dataset("val"),
                        work / name, model_type=kind, model_settings={"width": args.width},
                        config=cfg,
                        data_description=data.to_dict(), attack=attack, resume=True,
                        progress=False)
        seconds = time.perf_counter() - t0  # wall time of this call (less if it resumed)
        ev = evaluate_model(res.model, data.dataset("test"))
        mae = ev["metrics"]["mae"]
        entry: dict[str, Any] = {"train_seconds": seconds, "best_epoch": res.best_epoch,
                                 "test_mean_r": ev["metrics"]["mean_r"], "test_mae": mae,
                                 "test_mae_vs_mean_predictor": mae / baseline["mae"]}
        if ev.get("concept_metrics"):
            entry["concept_mean_r"] = ev["concept_metrics"]["mean_r"]
            entry["concept_r"] = ev["concept_metrics"]["r"]
        for aname, (domain, atk) in attacks.items():
            table = attack_dataset(res.model, data, "test", atk, work / name / f"attack-{aname}",
                                   domain=domain, batch_size=12, resume=True)
            entry[aname] = attack_summary(table)
        result["models"][name] = entry
        print(json.dumps({name: entry}, indent=1, default=float), flush=True)
    # Cost of adversarial training: A2E and aA2E trained back to back in this process, same
    # recipe and epochs; seconds are summed from each run's history (so a resumed run counts
    # the epochs it trained before, too).
    cost = {}
    for name, every in (("A2E", 0), ("aA2E", 5)):
        cfg = TrainConfig(seed=args.seed, lr=args.lr, max_epochs=args.cost_epochs,
                          adversarial_every=every)
        res = train_run(data.dataset("train", mode="random", seed=args.seed),
                        data.dataset("val"), work / f"cost-{name}", model_type="A2E",
                        model_settings={"width": args.width}, config=cfg, resume=True,
                        progress=False,
                        attack=BIM(eps=0.05, eta=0.01, max_iters=10) if every else None)
        cost[name] = {"seconds": float(sum(h["time_s"] for h in res.history)),
                      "attack_seconds": float(sum(h.get("attack_time_s") or 0.0
                                                  for h in res.history)),
                      "epochs": len(res.history)}
    cost["ratio"] = cost["aA2E"]["seconds"] / cost["A2E"]["seconds"]
    result["adversarial_training_cost"] = cost
    print(json.dumps({"adversarial_training_cost": cost}, indent=1), flush=True)
    result["meta"] = io.run_meta(threads=torch.get_num_threads())
    io.write_json(args.json, result)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
