"""Is the voice detection task learnable? A tiny CNN on 50-frame excerpts, on the CPU.

Writes the voice dataset (``robustmer.data.voice.synthesize_voice``; reused when ``--work``
already holds it), computes every clip's log-filtered spectrogram (audio read with soundfile as
written, so frames line up with the labels), splits the clips 70/15/15
(``robustmer.data.make_split``), standardises with the training clips' scalar mean and std, and
trains ``build_model("classifier", width=..., n_classes=2, dropout=...)`` on 50-frame excerpts
labelled by their central frame (``excerpt_labels``) with plain torch: Adam (learning rate
decayed to 0 on a cosine over the run, ``--schedule``), cross-entropy,
``--steps`` minibatches drawn at random from the training excerpts (every ``--train-hop``
frames), validation error every ``--eval-every`` steps, the best validation state kept (the
history also logs the test error on every 4th test excerpt, for the learning curve only). The test
clips' excerpts are scored every frame (hop 1). Reports the test error, recall (voiced excerpts
found), specificity (unvoiced excerpts left alone), the majority-class error and the seconds of
each phase. For comparison in the same run, a linear baseline that sees no time-frequency
pattern: scikit-learn's logistic regression on each excerpt's per-band mean and standard
deviation (298 features, standardised), trained on the same excerpts. Writes
``benchmarks/results/voice_detector.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_voice_detector.py --work /tmp/voice-bench
        [--clips 120] [--snr-low -12 --snr-high -6] [--p-decoy 0.6] [--width 0.25]
        [--steps 600]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch import nn

from robustmer import io
from robustmer.data import make_split
from robustmer.data.voice import excerpt_labels, load_voice_dataset, synthesize_voice
from robustmer.features import Standardizer, compute_spectrogram
from robustmer.models import build_model

RESULTS = Path(__file__).resolve().parent / "results"
FRAMES = 50


def excerpts(specs: dict[str, np.ndarray], labels: dict[str, np.ndarray], ids: list[str],
             hop: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(clip index, start frame) pairs and labels of every excerpt of ``ids``."""
    rows, labs = [], []
    for i, cid in enumerate(ids):
        starts, lab = excerpt_labels(labels[cid], frames=FRAMES, hop=hop, rule="center")
        rows.append(np.stack([np.full(starts.size, i), starts], axis=1))
        labs.append(lab)
    idx = torch.from_numpy(np.concatenate(rows))
    y = torch.from_numpy(np.concatenate(labs))
    stack = torch.from_numpy(np.stack([specs[c] for c in ids]).astype(np.float32))
    return stack, idx, y


def batch(stack: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``(B, 1, FRAMES, F)`` excerpts of the rows ``idx`` ``(B, 2)``."""
    frames = idx[:, 1:2] + torch.arange(FRAMES)
    return stack[idx[:, :1], frames][:, None]


@torch.no_grad()
def predict(model: nn.Module, stack: torch.Tensor, idx: torch.Tensor,
            size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(batch(stack, idx[i:i + size])).argmax(1)
                      for i in range(0, len(idx), size)])


def scores(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    pos, neg = y == 1, y == 0
    return {"error": float((pred != y).float().mean()),
            "recall": float((pred[pos] == 1).float().mean()) if pos.any() else float("nan"),
            "specificity": float((pred[neg] == 0).float().mean()) if neg.any() else float("nan"),
            "voiced_share": float(pos.float().mean()),
            "majority_error": float(min(pos.float().mean(), neg.float().mean())),
            "n_excerpts": int(y.numel())}


def band_statistics(stack: torch.Tensor, idx: torch.Tensor, size: int = 1024) -> np.ndarray:
    """Per-band mean and standard deviation of every excerpt, ``(N, 2 F)``."""
    out = []
    for i in range(0, len(idx), size):
        x = batch(stack, idx[i:i + size])[:, 0]
        out.append(torch.cat([x.mean(dim=1), x.std(dim=1)], dim=1).numpy())
    return np.concatenate(out)


def linear_baseline(train: tuple[torch.Tensor, ...], test: tuple[torch.Tensor, ...],
                    seed: int) -> dict[str, Any]:
    """Logistic regression on band statistics: what a detector without patterns reaches."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    t0 = time.perf_counter()
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    clf.fit(band_statistics(train[0], train[1]), train[2].numpy())
    pred = torch.from_numpy(clf.predict(band_statistics(test[0], test[1])))
    return {**scores(pred, test[2]), "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--clips", type=int, default=120)
    ap.add_argument("--duration", type=float, default=12.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p-voice", type=float, default=0.6)
    ap.add_argument("--p-decoy", type=float, default=0.6)
    ap.add_argument("--snr-low", type=float, default=-12.0)
    ap.add_argument("--snr-high", type=float, default=-6.0)
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", choices=("cosine", "constant"), default="cosine")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--train-hop", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "voice_detector.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()

    t0 = time.perf_counter()
    data_dir = args.work / (f"voice-{args.clips}-{args.seed}-{args.snr_low:g}_{args.snr_high:g}"
                            f"-{args.p_voice:g}-{args.p_decoy:g}")
    info = synthesize_voice(data_dir, clips=args.clips, seed=args.seed, duration=args.duration,
                            p_voice=args.p_voice, p_decoy=args.p_decoy,
                            snr_db=(args.snr_low, args.snr_high))
    synth_s = time.perf_counter() - t0
    ds = load_voice_dataset(data_dir)

    t0 = time.perf_counter()
    specs, labels = {}, {}
    for cid in ds.ids:
        audio, _ = sf.read(str(ds.audio_path(cid)), dtype="float32")
        specs[cid] = compute_spectrogram(audio)
        labels[cid] = ds.truth(cid)["labels"]
        assert specs[cid].shape[0] == labels[cid].size, cid
    split = make_split(ds.ids, seed=args.seed, fractions=(0.7, 0.15, 0.15))
    std = Standardizer.fit(specs[c] for c in split.train)
    specs = {c: std.transform(s) for c, s in specs.items()}
    feature_s = time.perf_counter() - t0

    train = excerpts(specs, labels, list(split.train), args.train_hop)
    val = excerpts(specs, labels, list(split.val), 4)
    test = excerpts(specs, labels, list(split.test), 1)

    t0 = time.perf_counter()
    torch.manual_seed(args.seed)
    model = build_model("classifier", width=args.width, n_classes=2, dropout=args.dropout)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    # cosine decay to 0 over the run: with a constant rate the excerpt error swung by 10 points
    # between evaluations (the decision threshold drifts), so the end state was a lottery
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=args.steps)
             if args.schedule == "cosine" else None)
    gen = torch.Generator().manual_seed(args.seed)
    best: dict[str, Any] = {"error": float("inf")}
    history = []
    eval_s = 0.0  # evaluation time, kept out of the training seconds
    for step in range(1, args.steps + 1):
        model.train()
        rows = torch.randint(len(train[1]), (args.batch_size,), generator=gen)
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(batch(train[0], train[1][rows])),
                                           train[2][rows])
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if step % args.eval_every == 0 or step == args.steps:
            t_eval = time.perf_counter()
            v = scores(predict(model, val[0], val[1]), val[2])
            # the test error on every 4th excerpt, for the learning curve only (never selects)
            c = scores(predict(model, test[0], test[1][::4]), test[2][::4])
            history.append({"step": step, "loss": float(loss.detach()), "val_error": v["error"],
                            "test_error_every_4th": c["error"],
                            "train_seconds": t_eval - t0 - eval_s})
            print(history[-1], flush=True)
            if v["error"] < best["error"]:
                best = {"error": v["error"], "step": step,
                        "state": copy.deepcopy(model.state_dict())}
            eval_s += time.perf_counter() - t_eval
    train_s = time.perf_counter() - t0 - eval_s
    model.load_state_dict(best["state"])
    t0 = time.perf_counter()
    test_scores = scores(predict(model, test[0], test[1]), test[2])
    test_s = time.perf_counter() - t0

    baseline = linear_baseline(train, test, args.seed)
    result = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "dataset": {"root": str(data_dir), "reused": info.reused,
                    "voiced_clips": int((ds.clips["label"] == "voice").sum()),
                    "clips": len(ds.ids), "voiced_frame_share": float(np.mean(
                        np.concatenate([labels[c] for c in ds.ids]))),
                    "split": {k: len(getattr(split, k)) for k in ("train", "val", "test")}},
        "train_excerpts": len(train[2]), "best_step": best["step"],
        "val_error": best["error"], "test": test_scores, "history": history,
        "linear_baseline_test": baseline,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds": {"synthesize": synth_s, "features": feature_s, "train": train_s,
                    "evaluations_during_training": eval_s,
                    "test": test_s, "total": time.perf_counter() - t_all},
        "torch_threads": torch.get_num_threads(),
        "meta": io.run_meta(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    io.write_json(args.out, result)
    print({k: result[k] for k in ("test", "linear_baseline_test", "val_error", "best_step",
                                  "seconds")})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
