"""Training of the L2I interpreter (Ψ, Θ) on a frozen model; deterministic and resumable.

Lives in train/ (not explain/) because it reuses the trainer's checkpointing
(``robustmer.train.checkpoint``: safetensors + JSON, RNG capture/restore), and explain/ must not
import train/. The model and the dictionary ``W`` stay fixed; Adam updates Ψ and Θ only.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from robustmer import io
from robustmer.errors import CheckpointError
from robustmer.explain.l2i import (
    FeatureHooks,
    Interpreter,
    InterpreterConfig,
    check_layers,
    fidelity_loss,
)
from robustmer.train import checkpoint as ck


def build_interpreter(model: nn.Module, x: torch.Tensor, k: int, n_outputs: int,
                      config: InterpreterConfig, layers: list[str] | None = None
                      ) -> Interpreter:
    """An interpreter sized to ``model``'s hooked features (probed with one input of ``x``):
    the module paths ``layers``, or the last three conv blocks (None)."""
    layers = check_layers(model, layers)
    with FeatureHooks(model, layers) as hooks, torch.no_grad():
        model(x[:1])
        channels = [int(f.shape[1]) for f in hooks.features]
    return Interpreter(channels, k, n_outputs, pooling=config.pooling, hidden=config.hidden,
                       layers=layers)


def load_interpreter(folder: str | Path) -> tuple[Interpreter, dict[str, Any]]:
    """The trained interpreter in ``folder/last`` and its checkpoint state (eval mode)."""
    c = ck.read_checkpoint(folder, ck.LAST)
    interp = Interpreter(**c.model_config)
    interp.load_state_dict(c.model_state)
    return interp.eval(), {"state": c.state, "train_config": c.train_config,
                           "history": c.history, "data": c.data}


def train_interpreter(model: nn.Module, task: str, x: torch.Tensor, X: torch.Tensor,
                      W: torch.Tensor, out_dir: str | Path, config: InterpreterConfig,
                      data_description: dict[str, Any] | None = None,
                      resume: bool = True, stop_after: int | None = None,
                      layers: list[str] | None = None) -> Interpreter:
    """Train Ψ and Θ to imitate ``model`` on inputs ``x`` (the model's own: ``(N, 1, T,
    bands)`` spectrograms or ``(N, samples)`` audio) whose log-magnitudes are ``X (N, T, F)``,
    with the dictionary ``W (F, K)`` fixed. Ψ reads the modules ``layers`` (default: the last
    three conv blocks); they are stored in the interpreter's config.

    One checkpoint (``out_dir/last``) is written after every epoch; with ``resume=True`` training
    continues from it and ends with the same weights as an uninterrupted run (CPU).
    ``stop_after`` ends after that epoch (tests use it to simulate a kill).
    """
    out = Path(out_dir)
    device = torch.device(config.device)
    torch.manual_seed(config.seed)
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    n_outputs = int(model(x[:1].to(device)).shape[-1])
    interp = build_interpreter(model, x.to(device), W.shape[1], n_outputs, config,
                               layers).to(device)
    opt = torch.optim.Adam(interp.parameters(), lr=config.lr)
    W = W.to(device)
    history: list[dict[str, Any]] = []
    start = 1
    ck.recover(out)
    if (out / ck.LAST).is_dir():
        if not resume:
            raise CheckpointError(f"{out} already holds an interpreter (last/); resume or "
                                  f"choose another folder")
        last = ck.read_checkpoint(out, ck.LAST, for_resume=True)
        if last.train_config != config.to_dict() or last.model_config != interp.config:
            raise CheckpointError(f"{out}/last was trained with other settings "
                                  f"({last.train_config}, interpreter {last.model_config}); "
                                  f"remove it or use the same settings")
        interp.load_state_dict(last.model_state)
        opt.load_state_dict((last.optimizer_state or {})["optimizer"])
        history = list(last.history)
        start = int(last.state["epoch"]) + 1
        assert last.rng is not None
        ck.restore_rng(last.rng)
    meta = io.run_meta(seed=config.seed)
    frames = X.shape[1]
    with FeatureHooks(model, interp.config["layers"]) as hooks:
        for epoch in range(start, config.epochs + 1):
            t0 = time.perf_counter()
            g = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
            order = torch.randperm(len(x), generator=g)
            fw = config.fidelity_weight(epoch)
            totals = {"loss": 0.0, "fidelity": 0.0, "reconstruction": 0.0, "sparsity": 0.0}
            interp.train()
            for i in range(0, len(x), config.batch_size):
                idx = order[i: i + config.batch_size]
                xb, Xb = x[idx].to(device), X[idx].to(device)
                with torch.no_grad():
                    target = model(xb)
                H, y = interp(hooks.features, frames)
                fid = fidelity_loss(task, y, target)
                rec = ((Xb.transpose(1, 2) - W @ H) ** 2).mean()
                spa = H.abs().mean()
                loss = fw * fid + config.reconstruction_weight * rec + config.sparsity_weight * spa
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                for name, v in (("loss", loss), ("fidelity", fid), ("reconstruction", rec),
                                ("sparsity", spa)):
                    totals[name] += float(v.detach()) * len(idx) / len(x)
            interp.eval()
            history.append({"epoch": epoch, "fidelity_weight": fw,
                            "seconds": time.perf_counter() - t0, **totals})
            ck.save_checkpoint(out, ck.LAST, ck.Checkpoint(
                model_state=interp.state_dict(), state={"epoch": epoch},
                model_config=interp.config, train_config=config.to_dict(),
                data=data_description, normaliser=None, history=history, meta=meta,
                optimizer_state={"optimizer": opt.state_dict()}, rng=ck.capture_rng()))
            if stop_after is not None and epoch >= stop_after:
                break
    return interp.eval()
