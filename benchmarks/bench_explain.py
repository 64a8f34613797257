"""Explainers against adversarial ground truth, end to end: train small models, attack their test
clips, and measure every explainer's label-flip rate, recovery histograms and time per clip.

Two datasets: ``--dataset embedded`` (the synthetic concept dataset, made with ``synthesize``:
classifier, A2E and A2M2E) and ``--dataset soundtracks`` (the real audio in
``../shared/data/soundtracks``: classifier and A2E). Models are trained with the library's
``train_run`` (an unfinished run folder is continued, a finished one reused), then evaluated with
``robustmer.explain.evaluation.evaluate_explainers`` (resumable: a rerun with the same ``--work``
continues). Uses ``--device cuda`` when asked and available. Writes
``benchmarks/results/explain-<dataset>.json`` (settings, per model: test score, attack outcome,
label-flip rate at k = 1, 3, 5 with 95 % Wilson intervals, recovery histograms, seconds per
explained clip per method, wall time of each phase).

    python benchmarks/bench_explain.py --dataset embedded --work /tmp/xe [--clips 60]
        [--epochs 15] [--max-clips 6] [--methods saliency,gbp,ig,lime,...]
        [--param lime.n_samples=256] [--attack-iters 300] [--device cpu]
    python benchmarks/bench_explain.py --dataset soundtracks --device cuda --work /tmp/xs
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from robustmer import io
from robustmer.attacks import BIM, CWAudio, TargetedPGD
from robustmer.data import prepare_data, synthesize
from robustmer.explain import grid_segments, make_explainer, parse_grid
from robustmer.explain.evaluation import evaluate_explainers
from robustmer.report.explain import flip_summary, recovery_summary
from robustmer.train import TrainConfig, evaluate_model, train_run

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = {"embedded": ("classifier", "a2e", "a2m2e"), "soundtracks": ("classifier", "a2e")}
DEFAULT_METHODS = "saliency,gbp,ig,smoothgrad,smoothgrad_sq,vargrad,lime"


def _params(values: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in values:
        key, _, value = item.partition("=")
        method, _, name = key.partition(".")
        out.setdefault(method, {})[name] = yaml.safe_load(value)
    return out


def train(prepared: Any, run: Path, kind: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train one model (or reuse it) and score it on the test split."""
    t0 = time.perf_counter()
    # resume=True continues an unfinished run and returns at once for a finished one
    train_run(prepared.dataset("train", mode="random", seed=args.seed),
              prepared.dataset("val", mode="fixed", seed=args.seed), run, model_type=kind,
              model_settings={"width": args.width},
              config=TrainConfig(seed=args.seed, lr=args.lr, max_epochs=args.epochs,
                                 patience=args.epochs, device=args.device),
              data_description={**prepared.to_dict(), "split_id": prepared.split.split_id},
              normaliser=prepared.standardizer.to_dict(), progress=False, resume=True)
    prepared.split.save(run / "split.json")
    seconds = time.perf_counter() - t0
    from robustmer.train import load_run

    loaded = load_run(run, device=args.device)
    ev = evaluate_model(loaded.model, prepared.dataset("test", mode="fixed"), args.device)
    score: dict[str, Any] = {"train_seconds": seconds, "epoch": loaded.epoch}
    if kind == "classifier":
        score["test_accuracy"] = ev.get("accuracy")
        score["n_classes"] = len(prepared.table.classes)
    else:
        score["test_mean_r"] = ev["metrics"]["mean_r"]
    return {"model": loaded.model, **score}


def evaluate(model: torch.nn.Module, prepared: Any, kind: str, out: Path,
             args: argparse.Namespace) -> dict[str, Any]:
    """The explainer evaluation of one model on its test split, summarised."""
    ds = prepared.dataset("test", mode="fixed")
    n = min(len(ds), args.max_clips)
    items = [{"id": str(ds.ids[i]), "x": ds[i]["x"], "y": ds[i]["targets"]} for i in range(n)]
    n_freq, n_time = parse_grid(args.grid)
    segments = grid_segments(tuple(items[0]["x"].shape[-2:]), n_freq=n_freq, n_time=n_time)
    task = "classifier" if kind == "classifier" else "regressor"
    if task == "classifier" and args.classifier_attack == "cw":
        attack: Any = CWAudio(alpha=15.0, eps=0.1, eta=5e-4, max_iters=args.attack_iters,
                              box=None)
    elif task == "classifier":
        attack = TargetedPGD(eps=args.pgd_eps, eta=args.pgd_eta, max_iters=args.attack_iters,
                             norm=args.pgd_norm)
    else:
        attack = BIM(eps=args.reg_eps, eta=args.reg_eta, max_iters=args.reg_iters,
                     norm=args.reg_norm)
    params = _params(args.param)
    methods = [m for m in args.methods.split(",") if m]
    explainers = {m: make_explainer(m, **params.get(m, {})) for m in methods}
    t0 = time.perf_counter()
    res = evaluate_explainers(model, items, segments, explainers, out, task=task, attack=attack,
                              batch_size=args.batch_size, device=args.device, resume=True,
                              seed=args.seed, progress=args.progress,
                              config={"kind": kind, "split": "test"})
    wall = time.perf_counter() - t0
    fs = flip_summary(res.flips) if len(res.flips) else None
    flips: dict[str, Any] = {}
    if fs is not None:
        for k in (1, 3, 5):
            sel = fs[fs["k"] == k]
            flips[f"k{k}"] = {r.method: {"rate": r.rate, "ci95": [r.ci_low, r.ci_high],
                                         "n": int(r.n)} for r in sel.itertuples()}
    rec: dict[str, Any] = {}
    if len(res.recovery):
        for r in recovery_summary(res.recovery).to_dict("records"):
            hist = [int(r[f"h{h}"]) for h in range(int(r["k"]) + 1)]
            rec.setdefault(r["method"], {})[f"k{r['k']}"] = {
                "clips_partial_flip": int(r["n"]), "histogram_0_to_k": hist,
                "mean_hits": r["mean_hits"]}
    tim = res.timings
    per_clip = (tim[tim["stage"] == "adversarial"].groupby("method")["seconds"].mean()
                .to_dict() if len(tim) else {})
    per_clip_all = (tim.groupby("method")["seconds"].mean().to_dict() if len(tim) else {})
    return {"task": task, "attack": attack.config(), "clips_attacked": res.n_attacked,
            "successful_adversarial": res.n_successful,
            "mean_attack_iterations": float(res.adversarial["iterations"].mean()),
            "flip_rate": flips, "recovery": rec,
            "seconds_per_explained_clip": per_clip,
            "seconds_per_explanation_incl_recovery": per_clip_all,
            "evaluation_wall_seconds_this_call": wall, "out_dir": str(out)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=sorted(KINDS), default="embedded")
    ap.add_argument("--data", type=Path, default=None,
                    help="dataset root (soundtracks default: ../shared/data/soundtracks; "
                         "embedded default: WORK/data, synthesised)")
    ap.add_argument("--work", type=Path, required=True, help="runs, cache and evaluations")
    ap.add_argument("--kinds", default=None, help="comma list (default: classifier,a2e[,a2m2e])")
    ap.add_argument("--clips", type=int, default=60, help="embedded: clips to synthesise")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--width", type=float, default=0.125)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-clips", type=int, default=6, help="test clips to evaluate")
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--param", action="append", default=[],
                    help="METHOD.NAME=VALUE, e.g. lime.n_samples=256 (repeatable)")
    ap.add_argument("--grid", default="4x5", help="frequency bands x time blocks")
    ap.add_argument("--classifier-attack", choices=("cw", "targeted-pgd"), default="cw")
    ap.add_argument("--attack-iters", type=int, default=1000, help="classifier attack iterations")
    ap.add_argument("--pgd-eps", type=float, default=0.1, help="targeted PGD: ε")
    ap.add_argument("--pgd-eta", type=float, default=0.002, help="targeted PGD: step")
    ap.add_argument("--pgd-norm", choices=("linf", "l2"), default="linf")
    ap.add_argument("--reg-iters", type=int, default=1000, help="regression BIM iterations")
    ap.add_argument("--reg-eps", type=float, default=0.001)
    ap.add_argument("--reg-eta", type=float, default=0.002)
    ap.add_argument("--reg-norm", choices=("linf", "l2"), default="linf",
                    help="regression BIM norm (l2 steps localise δ; L∞ sign steps spread it)")
    ap.add_argument("--tag", default="", help="suffix of the evaluation folders")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default results/explain-*)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    if args.dataset == "embedded":
        root = args.data or work / "data"
        synthesize(root, clips=args.clips, seed=args.seed)
    else:
        root = args.data or Path(__file__).resolve().parents[1].parent / "shared" / "data" / \
            "soundtracks"
    t0 = time.perf_counter()
    prepared = prepare_data(root, cache_dir=work / "cache")
    prep_s = time.perf_counter() - t0
    kinds = args.kinds.split(",") if args.kinds else list(KINDS[args.dataset])
    out_json = args.out or RESULTS / f"explain-{args.dataset}.json"
    previous = io.read_json(out_json) if out_json.is_file() else {}
    payload: dict[str, Any] = {
        "dataset": args.dataset, "root": str(root), "settings": vars(args) | {"work": str(work)},
        "split_sizes": {p: len(getattr(prepared.split, p)) for p in ("train", "val", "test")},
        "prepare_seconds": prep_s, "models": dict(previous.get("models", {})),
        "device": args.device, "torch_threads": torch.get_num_threads(),
        "meta": io.run_meta()}
    for kind in kinds:
        trained = train(prepared, work / f"run-{kind}", kind, args)
        model = trained.pop("model")
        folder = work / f"xeval-{kind}{args.tag}"
        entry = {**trained, **evaluate(model, prepared, kind, folder, args),
                 "command_settings": {k: str(v) for k, v in vars(args).items()}}
        payload["models"][kind + args.tag] = entry
        payload["total_seconds"] = time.perf_counter() - t_all
        io.write_json(out_json, payload)
        print(f"{kind}: {entry['successful_adversarial']}/{entry['clips_attacked']} successful; "
              f"k=3 flip rates {({m: round(v['rate'], 3) for m, v in entry['flip_rate'].get('k3', {}).items()})}",  # noqa: E501
              flush=True)
    print(f"wrote {out_json}")


if __name__ == "__main__":
    main()
