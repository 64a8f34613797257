"""L2I measurements: dictionary and interpreter fit times, fidelity, faithfulness (FF_median per
τ vs random removal, Wilcoxon), and for an A2M2E on the embedded dataset the alignment of the
selected components with the concepts of the generating map.

Two ways to run it:

    # existing trained runs (e.g. width-0.125 models on `robustmer data synth` output)
    python benchmarks/bench_l2i.py --runs RUN_A2E RUN_A2M2E RUN_CLASSIFIER --out results/x.json
    # train small models first (real Soundtracks by default; GPU when available)
    python benchmarks/bench_l2i.py --data ../shared/data/soundtracks --kinds a2e,classifier

Every run's L2I results go to RUN/l2i (reused when the settings match). Writes one JSON
(default benchmarks/results/l2i_soundtracks.json) with the settings, the device, the thread
count and versions.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from robustmer import CONCEPTS, EMOTIONS, io

RESULTS = Path(__file__).resolve().parent / "results"


def train_models(data_root: Path, kinds: list[str], width: float, epochs: int, device: str,
                 work: Path, seed: int) -> list[Path]:
    """Train the small models the benchmark explains (resumes what exists)."""
    from robustmer.data import prepare_data
    from robustmer.train import train_run
    from robustmer.train.config import TrainConfig

    data = prepare_data(data_root, cache_dir=work / "cache", split_path=work / "split.json")
    runs = []
    for kind in kinds:
        cfg = TrainConfig(seed=seed, max_epochs=epochs, lr=1e-3, device=device)
        run = work / "runs" / kind
        train_run(data.dataset("train", mode="random", seed=seed), data.dataset("val"), run,
                  model_type=kind, model_settings={"width": width}, config=cfg,
                  data_description=data.to_dict(), normaliser=data.standardizer.to_dict(),
                  resume=True, progress=False)
        runs.append(run)
    return runs


def concept_alignment(run: Any, data: Any, out: Path, tau: float) -> dict[str, Any]:
    """Do the components L2I selects for each emotion track the concepts that drive it?

    Over every clip of the dataset: z_k (Θ_ATT's pooled activation of component k) is
    correlated (Spearman) with each annotated concept; the components selected for emotion c
    are those whose mean relevance r_{k,c} over clips exceeds τ; the "implied" concept profile
    of c is sum over selected k of mean r_{k,c} * corr(z_k, concept). Compared with the
    generating map's weights of c: Pearson r of the two 7-vectors and whether the
    top-|implied| concept is among the map's top-2 |weights|.
    """
    from scipy.stats import pearsonr, spearmanr

    from robustmer.explain.l2i import clip_tensors, excerpt_waves, interpret_batches, relevance
    from robustmer.features import LogFilteredSpectrogram
    from robustmer.train.interpreter import load_interpreter

    gen = io.read_json(Path(data.root) / "generating_map.json")
    weights = np.asarray(gen["weights"], dtype=float)
    interp, _ = load_interpreter(out / "interpreter_att")
    fe = LogFilteredSpectrogram()
    ids, zs, rs = [], [], []
    for part in ("train", "val", "test"):
        clips = excerpt_waves(data, part, frontend=fe)
        x, X = clip_tensors(clips, fe, data.standardizer)
        _, H, _ = interpret_batches(run.model, interp, x, X.shape[1])
        with torch.no_grad():
            zs.append(interp.theta.pool(H))
        rs.append(relevance(interp.theta, H))
        ids += clips.ids
    z = torch.cat(zs).numpy()
    r = torch.cat(rs).numpy()  # (N, C, K)
    concepts = data.table.concepts.loc[ids, list(CONCEPTS)].to_numpy(float)
    corr = np.zeros((z.shape[1], len(CONCEPTS)))
    for k in range(z.shape[1]):
        for j in range(len(CONCEPTS)):
            rho = spearmanr(z[:, k], concepts[:, j]).statistic if np.ptp(z[:, k]) > 0 else 0.0
            corr[k, j] = 0.0 if not np.isfinite(rho) else rho
    rows = {}
    for c, emotion in enumerate(EMOTIONS):
        rbar = r[:, c].mean(0)
        sel = np.flatnonzero(rbar > tau)
        implied = (rbar[sel, None] * corr[sel]).sum(0) if len(sel) else np.zeros(len(CONCEPTS))
        w = weights[c]
        top_true = [CONCEPTS[i] for i in np.argsort(-np.abs(w))[:2]]
        top_implied = CONCEPTS[int(np.argmax(np.abs(implied)))] if len(sel) else None
        rows[emotion] = {
            "selected": [int(k) for k in sel],
            "implied_profile": dict(zip(CONCEPTS, np.round(implied, 3).tolist(), strict=True)),
            "map_weights": dict(zip(CONCEPTS, w.tolist(), strict=True)),
            "pearson_r_implied_vs_map": (float(pearsonr(implied, w).statistic)
                                         if len(sel) and np.ptp(implied) > 0 else None),
            "top_implied": top_implied, "map_top2": top_true,
            "top_implied_in_map_top2": top_implied in top_true if top_implied else False}
    return {"tau": tau, "clips": len(ids), "per_emotion": rows,
            "mean_pearson_r": float(np.nanmean([v["pearson_r_implied_vs_map"] or np.nan
                                                for v in rows.values()])),
            "top_hits": int(sum(v["top_implied_in_map_top2"] for v in rows.values()))}


def bench_run(run_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    from robustmer.cli.attack import load_run_and_data  # the CLI's loader (a script may)
    from robustmer.explain.l2i import InterpreterConfig
    from robustmer.train.l2i import evaluate_l2i, fit_l2i

    run, data = load_run_and_data(run_dir, None, args.device)
    kind = run.model_config["kind"]
    out = run_dir / args.l2i_dir
    cfg = InterpreterConfig(epochs=args.epochs_interp, seed=args.seed, device=args.device,
                            hidden=args.hidden)
    t0 = time.perf_counter()
    fit = fit_l2i(run.model, run.task, data, out, k=args.components, mu=args.mu,
                  nmf_iterations=args.nmf_iterations, frames_per_clip=args.frames_per_clip,
                  seed=args.seed, config=cfg, progress=True, max_clips=args.interp_clips,
                  poolings=tuple(args.poolings.split(",")))
    fit_s = time.perf_counter() - t0
    run.model.to("cpu")
    t0 = time.perf_counter()
    fid, ff = evaluate_l2i(run.model, run.task, data, out, max_clips=args.max_test_clips,
                           seed=args.seed, poolings=tuple(args.poolings.split(",")),
                           ff_poolings=tuple(args.ff_poolings.split(",")))
    res: dict[str, Any] = {
        "run": str(run_dir), "kind": kind, "width": run.model_config["width"],
        "fit": {k: fit[k] for k in ("dictionary", "dictionary_reused", "dictionary_fit_seconds",
                                    "interpreter_seconds_this_call", "interpreter")},
        "fit_wall_seconds": fit_s, "evaluate_wall_seconds": time.perf_counter() - t0,
        "fidelity": fid.to_dict(orient="records"), "faithfulness": ff.to_dict(orient="records")}
    if kind == "a2m2e" and (Path(data.root) / "generating_map.json").is_file():
        res["concept_alignment"] = concept_alignment(run, data, out, args.align_tau)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="*", type=Path, default=[])
    p.add_argument("--data", type=Path, default=Path("../shared/data/soundtracks"))
    p.add_argument("--kinds", default="a2e,classifier")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--train-epochs", type=int, default=20)
    p.add_argument("--work", type=Path, default=Path("benchmarks/work-l2i"))
    p.add_argument("--components", type=int, default=100)
    p.add_argument("--mu", type=float, default=1.0)
    p.add_argument("--nmf-iterations", type=int, default=200)
    p.add_argument("--frames-per-clip", type=int, default=64)
    p.add_argument("--epochs-interp", type=int, default=30)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--max-test-clips", type=int, default=None)
    p.add_argument("--interp-clips", type=int, default=None,
                   help="train the interpreters on the first N training clips")
    p.add_argument("--ff-poolings", default="att,max", help="poolings to measure FF for")
    p.add_argument("--poolings", default="att,max", help="interpreters to train")
    p.add_argument("--l2i-dir", default="l2i", help="results sub-folder of each run")
    p.add_argument("--align-tau", type=float, default=0.5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", type=Path, default=RESULTS / "l2i_soundtracks.json")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    runs = list(args.runs)
    train_s = None
    if not runs:
        t0 = time.perf_counter()
        runs = train_models(args.data, args.kinds.split(","), args.width, args.train_epochs,
                            args.device, args.work, args.seed)
        train_s = time.perf_counter() - t0
    results = [bench_run(r, args) for r in runs]
    payload = {"settings": {k: str(v) if isinstance(v, Path) else v
                            for k, v in vars(args).items()},
               "device": args.device, "gpu": torch.cuda.get_device_name(0)
               if args.device.startswith("cuda") else None,
               "threads": torch.get_num_threads(), "model_training_seconds": train_s,
               "results": results, **io.run_meta()}
    io.write_json(args.out, payload)
    print(json.dumps({r["run"]: {"fidelity": r["fidelity"][:3]} for r in results}, indent=1,
                     default=str)[:3000])
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
