"""L2I on a dataset: the interpreter's training settings, the fidelity of Θ to the model, the
faithfulness of its explanations, and the listenable explanation of one clip. The clips and the
path from a clip's audio to the model's input are in :mod:`.clips`, the figure in
:mod:`.figure`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from robustmer import io
from robustmer.audio import write_wav
from robustmer.errors import ConfigError
from robustmer.evaluate.metrics import regression_metrics
from robustmer.explain.l2i.clips import Clips, InputPath
from robustmer.explain.l2i.figure import write_figure
from robustmer.explain.l2i.interpreter import FeatureHooks, Interpreter, relevance, select
from robustmer.explain.l2i.signal import log_magnitude, resynthesize, soft_masks
from robustmer.features import LogFilteredSpectrogram

TAUS: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)


@dataclass
class InterpreterConfig:
    """Training settings of Ψ and Θ (defaults: the authors' loss weights).

    Loss = ``fidelity_weight(epoch) * fidelity + reconstruction_weight * mean (X - WH)² +
    sparsity_weight * mean |H|``. Fidelity schedule: ``fidelity_start`` (0.5) for the first
    ``round(warm_fraction * epochs)`` epochs, then ``fidelity_end`` (1.0); the authors raise the
    weight after the first part of training, the 30 % split is our choice.
    """

    pooling: str = "att"
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    seed: int = 0
    hidden: int = 128
    reconstruction_weight: float = 5.0
    sparsity_weight: float = 0.4
    fidelity_start: float = 0.5
    fidelity_end: float = 1.0
    warm_fraction: float = 0.3
    device: str = "cpu"

    def fidelity_weight(self, epoch: int) -> float:
        """Weight of the fidelity loss in (1-based) ``epoch``."""
        return self.fidelity_start if epoch <= round(self.warm_fraction * self.epochs) \
            else self.fidelity_end

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON-able)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InterpreterConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ConfigError``."""
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ConfigError(f"InterpreterConfig: unknown keys {sorted(unknown)}")
        return cls(**d)


def model_targets(task: str, out: torch.Tensor) -> torch.Tensor:
    """What Θ imitates: the class distribution (softmax) for a classifier, else the outputs."""
    return torch.softmax(out, dim=-1) if task == "classification" else out


def fidelity_loss(task: str, theta_out: torch.Tensor, model_out: torch.Tensor) -> torch.Tensor:
    """Cross-entropy to the classifier's distribution, or MSE to the regressor's outputs."""
    if task == "classification":
        return F.cross_entropy(theta_out, torch.softmax(model_out, dim=-1))
    return F.mse_loss(theta_out, model_out)


def interpret_batches(model: nn.Module, interpreter: Interpreter, x: torch.Tensor,
                      frames: int, batch_size: int = 16
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(model outputs, H (N, K, T), Θ outputs)`` for inputs ``x``, without gradients."""
    outs, Hs, ys = [], [], []
    layers = interpreter.config.get("layers")
    with FeatureHooks(model, layers) as hooks, torch.no_grad():
        for i in range(0, len(x), batch_size):
            out = model(x[i: i + batch_size])
            H, y = interpreter(hooks.features, frames)
            outs.append(out)
            Hs.append(H)
            ys.append(y)
    return torch.cat(outs), torch.cat(Hs), torch.cat(ys)


def fidelity_table(task: str, model_out: torch.Tensor, theta_out: torch.Tensor,
                   names: list[str]) -> pd.DataFrame:
    """Tidy ``metric, output, value`` rows: top-1/3/5 agreement (classifier: is the model's
    top class among Θ's top k) or Pearson r / MAE per output and their mean (regressor)."""
    rows: list[dict[str, Any]] = []
    if task == "classification":
        top = model_out.argmax(-1)
        for k in (1, 3, 5):
            kk = min(k, theta_out.shape[-1])
            hit = (theta_out.topk(kk, dim=-1).indices == top[:, None]).any(-1)
            rows.append({"metric": f"top{k}", "output": "all", "value": float(hit.float().mean())})
        return pd.DataFrame(rows)
    m = regression_metrics(model_out.numpy(), theta_out.numpy(), names)
    for name in names:
        rows.append({"metric": "r", "output": name, "value": float(m["r"][name])})
    rows.append({"metric": "r", "output": "mean", "value": float(m["mean_r"])})
    rows.append({"metric": "mae", "output": "mean", "value": float(m["mae"])})
    return pd.DataFrame(rows)


def _target_value(task: str, out: torch.Tensor, c: int) -> float:
    return float(model_targets(task, out)[0, c])


def faithfulness(model: nn.Module, interpreter: Interpreter, W: torch.Tensor, clips: Clips,
                 frontend: LogFilteredSpectrogram, standardizer: Any, task: str,
                 taus: tuple[float, ...] = TAUS, targets: list[int] | None = None,
                 seed: int = 0, *, input_spec: Mapping[str, Any] | None = None
                 ) -> pd.DataFrame:
    """Per clip, target and τ: remove the selected components, resynthesise, and measure the
    drop of the model's output c, ``ff = f(x)_c - f(x')_c`` (class probability for a classifier,
    the output itself for a regressor); ``ff_random`` removes as many random components (seeded
    per clip, target and τ). Targets: the predicted class (classifier) or every output. ``x`` and
    ``x'`` both reach the model through its input contract (:class:`InputPath`: a waveform
    model gets the 22.05 kHz audio resampled to its rate)."""
    path = InputPath(frontend, standardizer, input_spec)
    rows = []
    g = torch.Generator().manual_seed(int(seed))
    k = W.shape[1]
    for clip_id, wave in zip(clips.ids, clips.waves, strict=True):
        x = path(wave)
        X, spec = log_magnitude(frontend, wave)
        model_out, H, _ = interpret_batches(model, interpreter, x, X.shape[0])
        parts = soft_masks(X.float(), W, H[0])
        r = relevance(interpreter.theta, H)[0]  # (C, K)
        cs = targets if targets is not None else (
            [int(model_out.argmax())] if task == "classification"
            else list(range(model_out.shape[1])))
        for c in cs:
            base = _target_value(task, model_out, c)
            for tau in taus:
                chosen = select(r[c], tau)
                n = int(chosen.sum())
                rand = torch.zeros(k, dtype=torch.bool)
                rand[torch.randperm(k, generator=g)[:n]] = True
                vals = []
                for mask in (chosen, rand):
                    if n == 0:
                        vals.append(0.0)
                        continue
                    X_rm = (X - parts[mask].sum(0)).clamp_min(0)
                    wave_rm = resynthesize(X_rm.to(X.dtype), spec, len(wave), frontend)
                    with torch.no_grad():
                        out = model(path(wave_rm.float()))
                    vals.append(base - _target_value(task, out, c))
                rows.append({"clip_id": clip_id, "target": c, "tau": tau, "n_selected": n,
                             "ff": vals[0], "ff_random": vals[1]})
    return pd.DataFrame(rows)


def faithfulness_summary(per_clip: pd.DataFrame) -> pd.DataFrame:
    """Per τ: FF_median of L2I and of the random baseline, mean selected components, and a
    Wilcoxon signed-rank test of the paired differences ``ff - ff_random`` (two-sided)."""
    from scipy.stats import wilcoxon

    rows = []
    for tau, grp in per_clip.groupby("tau"):
        diff = (grp["ff"] - grp["ff_random"]).to_numpy()
        p = float(wilcoxon(diff).pvalue) if np.any(diff != 0) else 1.0
        rows.append({"tau": float(tau), "n": len(grp), "mean_selected": grp["n_selected"].mean(),
                     "ff_median": grp["ff"].median(), "ff_random_median": grp["ff_random"].median(),
                     "median_difference": float(np.median(diff)), "wilcoxon_p": p})
    return pd.DataFrame(rows)


def explain_clip(model: nn.Module, interpreter: Interpreter, W: torch.Tensor,
                 wave: torch.Tensor, frontend: LogFilteredSpectrogram, standardizer: Any,
                 target: int, tau: float, out_dir: str | Path, task: str,
                 target_name: str = "", max_components: int = 8, *,
                 input_spec: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Listenable interpretation of one clip for output ``target``: writes ``input.wav``,
    ``interpretation.wav`` (the selected components together), ``component_<k>.wav`` (each of
    the ``max_components`` most relevant selected components), ``figure.png`` and
    ``explanation.json``; returns the JSON payload. The WAVs are at the front end's rate (the
    STFT side), whatever the model's own rate (``input_spec``).

    Examples:
        A tiny untrained CNN, an untrained interpreter reading its ReLU and a random dictionary
        of 6 components, on one second of noise (training them: ``robustmer.train.l2i``):

        >>> import os, tempfile, torch, soundfile as sf
        >>> from robustmer.explain.l2i import Interpreter, log_magnitude
        >>> from robustmer.features import LogFilteredSpectrogram
        >>> class Identity:  # the run's standardizer (here none)
        ...     def transform(self, spec): return spec
        >>> _ = torch.manual_seed(0)
        >>> fe = LogFilteredSpectrogram()
        >>> model = torch.nn.Sequential(
        ...     torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        ...     torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> interpreter = Interpreter([4], k=6, n_outputs=3, layers=["1"])
        >>> wave = 0.1 * torch.randn(fe.config.sample_rate)
        >>> W = torch.rand(log_magnitude(fe, wave)[0].shape[1], 6)  # (F, K)
        >>> out = tempfile.mkdtemp()
        >>> payload = explain_clip(model, interpreter, W, wave, fe, Identity(), target=0,
        ...                        tau=0.0, out_dir=out, task="classification", max_components=2)
        >>> [f for f in sorted(os.listdir(out)) if not f.startswith("component_")]
        ['explanation.json', 'figure.png', 'input.wav', 'interpretation.wav']
        >>> len(payload["component_files"]), sf.info(f"{out}/interpretation.wav").samplerate
        (2, 22050)
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sr = frontend.config.sample_rate
    x = InputPath(frontend, standardizer, input_spec)(wave)
    X, spec = log_magnitude(frontend, wave)
    model_out, H, theta_out = interpret_batches(model, interpreter, x, X.shape[0])
    r = relevance(interpreter.theta, H)[0, target]
    chosen = torch.nonzero(select(r, tau)).flatten()
    chosen = chosen[torch.argsort(r[chosen], descending=True)]
    parts = soft_masks(X.float(), W, H[0])
    n = len(wave)
    write_wav(out / "input.wav", wave, sr)
    interp = parts[chosen].sum(0) if len(chosen) else torch.zeros_like(X)
    write_wav(out / "interpretation.wav", resynthesize(interp.to(X.dtype), spec, n, frontend), sr)
    comps = [int(k) for k in chosen[:max_components]]
    for kk in comps:
        write_wav(out / f"component_{kk}.wav",
                  resynthesize(parts[kk].to(X.dtype), spec, n, frontend), sr)
    alt = write_figure(X, parts, comps, r, tau, out / "figure.png", target_name, sample_rate=sr,
                       frame_size=frontend.config.frame_size)
    payload = {"target": target, "target_name": target_name, "tau": tau, "figure_alt": alt,
               "model_output": float(model_targets(task, model_out)[0, target]),
               "interpreter_output": float(model_targets(task, theta_out)[0, target]),
               "selected": [int(k) for k in chosen],
               "relevance": {int(k): float(r[k]) for k in chosen},
               "component_files": {kk: f"component_{kk}.wav" for kk in comps}}
    io.write_json(out / "explanation.json", payload)
    return payload

