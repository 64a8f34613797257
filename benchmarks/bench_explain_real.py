"""Issue 21's measurement: explainers tested on models that work, with the CLI a user has.

Runs (each step skipped when its result is on disk; every explainer-eval call resumes its
folder) and then summarises into ``benchmarks/results/explain-real.json`` (and a Markdown
digest beside it, ``explain-real.md``, the tables of docs/explainer-eval.md):

1. the voice detection task: ``robustmer data voice`` (400 clips), a detector and its
   shuffled-label control (``robustmer train --model classifier``, width 0.125, 2 epochs,
   one-cycle), ``robustmer evaluate`` (error, recall, specificity);
2. ``robustmer explainer-eval`` on the detector: 110 test excerpts per clean decision (non-
   overlapping 50-frame excerpts of the 60 test clips), the default attack, saliency, GBP, IG
   and their SmoothGrad / SmoothGrad² / VarGrad versions, then LIME (``--lime-samples``,
   default 2048: the study's 8192 cost 5x more and ranked the same segments,
   ``bench_lime_samples.py``), all with the standard tests (localisation against the voice mask,
   cascading and data randomisation, deletion / insertion);
3. the embedded dataset (``robustmer data synth``, 240 clips): the 12-class classifier, A2E and
   A2M2E, each attacked with explainer-eval's defaults (attack success and δ sizes; cheap
   explainers only);
4. the real Soundtracks clips (``--shared``, default ``../shared``): A2E (width 0.125) and
   explainer-eval on its 36 test clips (and, without the standard tests, its 36 validation
   clips) with the cheaper explainers and LIME with 1024 samples (``--st-lime-samples``).

    OMP_NUM_THREADS=1 python benchmarks/bench_explain_real.py --work /tmp/xr
        [--steps voice,detector-eval,embedded,soundtracks,summary]

Long: about 2-3 hours of one busy CPU core (docs/explainer-eval.md, "Measured", has the
times). Results folders stay in ``--work``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer import io

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
GRADIENT = ("saliency,gbp,ig,saliency+smoothgrad,saliency+smoothgrad_sq,saliency+vargrad,"
            "gbp+smoothgrad,gbp+smoothgrad_sq,gbp+vargrad,ig+smoothgrad,ig+smoothgrad_sq,"
            "ig+vargrad")
IG_NOISE = [f"ig+{n}.{k}={v}" for n in ("smoothgrad", "smoothgrad_sq", "vargrad")
            for k, v in (("n_steps", 16), ("nt_samples", 10))]
"""IG inside the noise tunnel: 16 steps x 10 noisy copies (the defaults, 50 x 25, cost 1.4 s
per clip on the detector, 7x more; measured with every method before the run)."""
DETECTOR = ("--width", "0.125", "--dropout", "0", "--epochs", "2", "--batch-size", "64",
            "--lr", "2e-3", "--lr-schedule", "onecycle", "--seed", "0")
EMBEDDED = ("--width", "0.125", "--dropout", "0", "--lr-schedule", "onecycle", "--batch-size",
            "8", "--seed", "0")
STEPS = ("voice", "detector-eval", "embedded", "soundtracks", "summary")


def robustmer(*args: Any) -> None:
    """Run one robustmer command (the installed entry point), echoing it; stop on failure."""
    cmd = [sys.executable, "-m", "robustmer", *[str(a) for a in args]]
    print("$ robustmer " + " ".join(str(a) for a in args), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS":
                                         os.environ.get("OMP_NUM_THREADS", "1")})


def train(model: str, data: Path, out: Path, *options: str) -> None:
    """``robustmer train`` unless ``out`` already holds a finished run, then ``evaluate``."""
    if not (out / "best").is_dir() or not (out / "history.csv").is_file():
        robustmer("train", "--model", model, "--data", data, *options, "--out", out,
                  "--no-progress", *(["--resume"] if (out / "last").is_dir() else []))
    if not (out / "metrics_test.json").is_file():
        robustmer("evaluate", out)


def xeval(run: Path, out: Path, *options: str) -> None:
    """``robustmer explainer-eval``, resuming ``out`` when it holds an evaluation."""
    robustmer("explainer-eval", run, "--out", out, "--no-progress", *options,
              *(["--resume"] if (out / "adversarial.csv").is_file() else []))


def params(items: list[str]) -> list[str]:
    """``--param`` for each ``METHOD.NAME=VALUE``."""
    return [a for p in items for a in ("--param", p)]


# -- the summary -----------------------------------------------------------------------------

def _rate(g: pd.DataFrame) -> dict[str, Any]:
    from robustmer.report.explain import wilson

    n, s = len(g), int(g["flipped"].astype(bool).sum())
    lo, hi = wilson(s, n)
    return {"n": n, "flipped": s, "rate": s / n if n else float("nan"), "ci": [lo, hi]}


def summarise_eval(folder: Path) -> dict[str, Any]:
    """Flip rates (overall and per direction) at every k, the smallest k reaching 50 % / 90 %,
    the recovery histograms, timings, the attack's outcome, and the standard tests."""
    import yaml

    from robustmer.evaluate.intervals import t_interval
    from robustmer.explain.evaluation import read_results
    from robustmer.explain.standard import read_standard, sanity_summary
    from robustmer.report.explain import (
        class_names,
        direction_summary,
        flip_summary,
        localisation_summary,
        recovery_summary,
        smallest_k,
        with_direction,
    )

    t = read_results(folder)
    config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
    adv = t["adversarial"]
    ok = adv[adv["success"].astype(bool)]
    out: dict[str, Any] = {
        "folder": str(folder), "task": config.get("task"), "attack": config.get("attack"),
        "attacked": len(adv), "successful": len(ok),
        "success_rate": float(adv["success"].mean()) if len(adv) else float("nan"),
        "iterations": ok["iterations"].describe().to_dict() if len(ok) else {},
        "delta_l2": ok["delta_l2"].describe().to_dict() if len(ok) else {},
        "delta_linf": ok["delta_linf"].describe().to_dict() if len(ok) else {}}
    flips = t["flips"]
    if not len(flips):
        return out
    full = flips[flips["k"] == flips["k"].max()]
    full = full[full["method"] == "magnitude"]["effect"]
    out["effect_at_full_delta"] = full.describe().to_dict()
    summ = flip_summary(flips)
    out["flip_rate"] = {m: {int(k): {"rate": r, "ci": [lo, hi], "n": int(n)}
                            for k, r, lo, hi, n in zip(g["k"], g["rate"], g["ci_low"],
                                                       g["ci_high"], g["n"], strict=True)}
                        for m, g in summ.groupby("method", sort=False)}
    out["smallest_k"] = {"50": smallest_k(summ, 0.5).to_dict(),
                         "90": smallest_k(summ, 0.9).to_dict()}
    if config.get("task") == "classification":
        names = class_names(folder, config)
        dflips = with_direction(flips, adv, names)
        dsum = direction_summary(dflips)
        if dsum["direction"].nunique() <= 4:
            out["by_direction"] = {
                d: {"flip_rate": {m: {int(k): {"rate": r, "ci": [lo, hi], "n": int(n)}
                                      for k, r, lo, hi, n in zip(
                                          h["k"], h["rate"], h["ci_low"], h["ci_high"], h["n"],
                                          strict=True)}
                                  for m, h in g.groupby("method", sort=False)},
                    "smallest_k_50": {m: v for (dd, m), v in smallest_k(dsum, 0.5).items()
                                      if dd == d},
                    "smallest_k_90": {m: v for (dd, m), v in smallest_k(dsum, 0.9).items()
                                      if dd == d}}
                for d, g in dsum.groupby("direction", sort=True)}
            rec = with_direction(t["recovery"], adv, names)
            out["recovery_by_direction"] = {
                d: recovery_summary(g.drop(columns=["direction"])).to_dict("records")
                for d, g in rec.groupby("direction", sort=True)}
    out["recovery"] = recovery_summary(t["recovery"]).to_dict("records")
    tim = t["timings"]
    out["seconds_per_clip"] = (tim[tim["stage"] == "adversarial"].groupby("method")["seconds"]
                               .mean().to_dict())
    std = read_standard(folder)
    if len(std["localisation"]):
        out["localisation"] = localisation_summary(std["localisation"]).to_dict("records")
    if len(std["cascade"]) or len(std["data_randomisation"]):
        out["sanity"] = sanity_summary(std["cascade"], std["data_randomisation"]).to_dict(
            "records")
        out["cascade_median_by_step"] = {
            m: g.groupby("step")["spearman_abs"].median().to_dict()
            for m, g in std["cascade"].groupby("method", sort=False)}
    if len(std["deletion_auc"]):
        out["deletion_auc"] = {
            m: {mode: t_interval(h["auc"].to_numpy(dtype=float)).to_dict()
                for mode, h in g.groupby("mode")}
            for m, g in std["deletion_auc"].groupby("method", sort=False)}
    if len(std["timings"]):
        out["standard_seconds_per_clip"] = std["timings"].set_index("method")[
            "seconds_per_clip"].to_dict()
    return out


def _ci(r: dict[str, Any] | None, digits: int = 2) -> str:
    if r is None:
        return "–"
    return f"{r['rate']:.{digits}f} [{r['ci'][0]:.{digits}f}, {r['ci'][1]:.{digits}f}]"


def _k(v: Any) -> str:
    return "never" if v is None or not np.isfinite(v) else str(int(v))


def _rate_at(rates: dict[Any, Any], k: int) -> dict[str, Any] | None:
    return rates.get(k) or rates.get(str(k))


def markdown(summary: dict[str, Any]) -> str:
    """The tables of docs/explainer-eval.md, "Measured", from the summary."""
    lines: list[str] = []
    for name, ev in summary["evaluations"].items():
        lines.append(f"## {name}: {ev.get('successful')} of {ev.get('attacked')} attacked clips "
                     f"successful\n")
        dirs = ev.get("by_direction")
        if dirs:
            names = list(dirs)
            lines.append("| method | " + " | ".join(f"{d}: k = 3 [95 % CI]" for d in names)
                         + " | " + " | ".join(f"{d}: smallest k 50 % / 90 %" for d in names)
                         + " |")
            lines.append("|---" * (1 + 2 * len(names)) + "|")
            for m in dirs[names[0]]["flip_rate"]:
                cells = [_ci(_rate_at(dirs[d]["flip_rate"].get(m, {}), 3)) for d in names]
                cells += [f"{_k(dirs[d]['smallest_k_50'].get(m))} / "
                          f"{_k(dirs[d]['smallest_k_90'].get(m))}" for d in names]
                lines.append(f"| {m} | " + " | ".join(cells) + " |")
            n = {d: _rate_at(next(iter(dirs[d]["flip_rate"].values())), 3)["n"] for d in names}
            lines.append(f"\nN: {', '.join(f'{d} {v}' for d, v in n.items())}\n")
        if "flip_rate" in ev:
            lines.append("| method | N | k = 1 | k = 3 | k = 5 | smallest k 50 % | "
                         "smallest k 90 % | s per explained clip |\n"
                         "|---|---|---|---|---|---|---|---|")
            sec = ev.get("seconds_per_clip", {})
            for m, rates in ev["flip_rate"].items():
                n = _rate_at(rates, 1)["n"]
                lines.append(f"| {m} | {n} | {_ci(_rate_at(rates, 1))} | "
                             f"{_ci(_rate_at(rates, 3))} | {_ci(_rate_at(rates, 5))} | "
                             f"{_k(ev['smallest_k']['50'].get(m))} | "
                             f"{_k(ev['smallest_k']['90'].get(m))} | "
                             f"{sec.get(m, float('nan')):.3g} |")
            lines.append("")
        rec = ev.get("recovery") or []
        if rec:
            lines.append("| method | k | partial adversaries | mean recovered | histogram 0..k |"
                         "\n|---|---|---|---|---|")
            for r in rec:
                hist = [int(r.get(f"h{h}") or 0) for h in range(int(r["k"]) + 1)]
                lines.append(f"| {r['method']} | {r['k']} | {r['n']} | "
                             f"{r['mean_hits']:.2f} | {hist} |")
            lines.append("")
        for d, rows in (ev.get("recovery_by_direction") or {}).items():
            mag = [r for r in rows if r["method"] == "magnitude"]
            lines.append(f"partial adversaries, {d}: " + ", ".join(
                f"k = {r['k']}: {r['n']} of {r['attacked']}" for r in mag))
        if ev.get("localisation"):
            lines.append("\n| method | clips | mass share [95 % CI] | region share | pointing "
                         "pixel [95 % CI] | pointing segment [95 % CI] | segment chance |\n"
                         "|---|---|---|---|---|---|---|")
            for r in ev["localisation"]:
                lines.append(
                    f"| {r['method']} | {r['n']} | {r['mass_share']:.3f} [{r['mass_low']:.3f}, "
                    f"{r['mass_high']:.3f}] | {r['region_share']:.3f} | "
                    f"{r['pointing_pixel']:.2f} [{r['pointing_pixel_low']:.2f}, "
                    f"{r['pointing_pixel_high']:.2f}] | {r['pointing_segment']:.2f} "
                    f"[{r['pointing_segment_low']:.2f}, {r['pointing_segment_high']:.2f}] | "
                    f"{r['pointing_segment_chance']:.2f} |")
        if ev.get("sanity"):
            lines.append("\n| method | cascade: median r, every layer random (N) | verdict | "
                         "data randomisation: median r (N) | verdict |\n|---|---|---|---|---|")
            for r in ev["sanity"]:
                def v(key: str, r: dict[str, Any] = r) -> str:
                    x = r.get(key)
                    return "–" if x is None or (isinstance(x, float) and x != x) else (
                        "passes" if x else "fails")
                lines.append(f"| {r['method']} | {r.get('cascade_median', float('nan')):.3f} "
                             f"({r.get('cascade_n', 0)}) | {v('cascade_passed')} | "
                             f"{r.get('data_median', float('nan')):.3f} ({r.get('data_n', 0)})"
                             f" | {v('data_passed')} |")
        if ev.get("deletion_auc"):
            lines.append("\n| method | deletion AUC [95 % CI] | insertion AUC [95 % CI] | "
                         "s per clean explanation |\n|---|---|---|---|")
            sec = ev.get("standard_seconds_per_clip", {})
            for m, modes in ev["deletion_auc"].items():
                cells = []
                for mode in ("deletion", "insertion"):
                    iv = modes.get(mode)
                    cells.append("–" if not iv else
                                 f"{iv['estimate']:.3f} [{iv['low']:.3f}, {iv['high']:.3f}]")
                lines.append(f"| {m} | {cells[0]} | {cells[1]} | "
                             f"{sec.get(m, float('nan')):.3g} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--shared", type=Path,
                    default=Path(os.environ.get("ROBUSTMER_SHARED", REPO.parent / "shared")))
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--per-class", type=int, default=110)
    ap.add_argument("--lime-samples", type=int, default=2048)
    ap.add_argument("--st-lime-samples", type=int, default=1024)
    ap.add_argument("--out", type=Path, default=RESULTS / "explain-real.json")
    args = ap.parse_args()
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    bad = sorted(set(steps) - set(STEPS))
    if bad:
        ap.error(f"unknown steps {bad}; choose from {list(STEPS)}")
    w = args.work
    runs = w / "runs"
    t0 = time.perf_counter()
    voice, det, shuffled = w / "voice-400", runs / "det-w0125", runs / "det-shuffled"
    if "voice" in steps:
        if not (voice / "voice.json").is_file():
            robustmer("data", "voice", "--out", voice, "--clips", 400, "--seed", 0)
        train("classifier", voice, det, *DETECTOR)
        train("classifier", voice, shuffled, *DETECTOR, "--shuffle-labels", "1")
    std = ("--shuffled-run", shuffled)
    if "detector-eval" in steps:
        xeval(det, w / "xe-det", "--methods", GRADIENT, *params(IG_NOISE), "--per-class",
              args.per_class, *std)
        xeval(det, w / "xe-det", "--methods", "lime",
              *params([f"lime.n_samples={args.lime_samples}", "lime.batch_size=256"]),
              "--per-class", args.per_class, *std)
    synth = w / "synth-240"
    cheap = ("--methods", "saliency,gbp,ig,saliency+smoothgrad_sq", "--no-standard")
    if "embedded" in steps:
        if not (synth / "mean_ratings_set1.csv").is_file():
            robustmer("data", "synth", "--out", synth, "--clips", 240, "--seed", 0)
        train("classifier", synth, runs / "cls-synth", *EMBEDDED, "--epochs", "30", "--lr",
              "3e-3", "--cache", w / "cache")
        for split in ("test", "val"):
            xeval(runs / "cls-synth", w / f"xe-cls-{split}", "--methods", "saliency,gbp",
                  "--split", split, "--no-standard")
        for kind in ("A2E", "A2M2E"):
            train(kind, synth, runs / f"{kind}-synth", *EMBEDDED, "--epochs", "25", "--lr",
                  "3e-3", "--cache", w / "cache")
            xeval(runs / f"{kind}-synth", w / f"xe-{kind}-synth", *cheap)
    st = args.shared / "data" / "soundtracks"
    if "soundtracks" in steps:
        train("A2E", st, runs / "A2E-st", *EMBEDDED, "--epochs", "30", "--lr", "3e-3",
              "--cache", w / "cache")
        xeval(runs / "A2E-st", w / "xe-A2E-st", "--methods",
              "saliency,gbp,ig,saliency+smoothgrad_sq,lime",
              *params([f"lime.n_samples={args.st_lime_samples}", "lime.batch_size=64"]),
              "--standard-clips", 36, "--sanity-clips", 4)
        xeval(runs / "A2E-st", w / "xe-A2E-st-val", "--methods",
              "saliency,gbp,ig,saliency+smoothgrad_sq,lime",
              *params([f"lime.n_samples={args.st_lime_samples}", "lime.batch_size=64"]),
              "--split", "val", "--no-standard")
    if "summary" not in steps:
        return
    summary: dict[str, Any] = {"models": {}, "evaluations": {}}
    for name in ("det-w0125", "det-shuffled", "cls-synth", "A2E-synth", "A2M2E-synth",
                 "A2E-st"):
        path = runs / name / "metrics_test.json"
        if path.is_file():
            m = io.read_json(path)
            m.pop("clips", None)
            summary["models"][name] = m
    for name in ("xe-det", "xe-cls-test", "xe-cls-val", "xe-A2E-synth", "xe-A2M2E-synth",
                 "xe-A2E-st", "xe-A2E-st-val"):
        if (w / name / "adversarial.csv").is_file():
            summary["evaluations"][name] = summarise_eval(w / name)
    summary["seconds_this_call"] = time.perf_counter() - t0
    summary["meta"] = io.run_meta()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, summary)
    io.write_text(args.out.with_suffix(".md"), markdown(summary))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")


if __name__ == "__main__":
    main()
