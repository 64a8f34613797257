"""The pre-learned NMF dictionary ``W (F, K)``: fitted once on training clips, saved as
safetensors + JSON settings beside the run, and reused (not refitted) when the settings match."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from robustmer import io
from robustmer.errors import CheckpointError
from robustmer.explain.l2i.nmf import sparse_nmf

WEIGHTS = "dictionary.safetensors"
SETTINGS = "dictionary.json"


@dataclass
class Dictionary:
    """``W (F, K)`` with unit-norm columns and the settings it was fitted with."""

    W: torch.Tensor
    settings: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        """Number of components."""
        return int(self.W.shape[1])

    def save(self, folder: str | Path) -> None:
        """Write ``dictionary.safetensors`` then ``dictionary.json`` (the JSON marks it whole)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with io.atomic_path(folder / WEIGHTS) as tmp:
            save_file({"W": self.W.detach().cpu().contiguous()}, str(tmp))
        io.write_json(folder / SETTINGS, {"settings": self.settings, "info": self.info})

    @classmethod
    def load(cls, folder: str | Path) -> Dictionary:
        """Read a saved dictionary; ``CheckpointError`` naming the folder if it is incomplete."""
        folder = Path(folder)
        if not (folder / SETTINGS).is_file() or not (folder / WEIGHTS).is_file():
            raise CheckpointError(f"no fitted L2I dictionary in {folder} (expected {WEIGHTS} "
                                  f"and {SETTINGS}); run `robustmer l2i fit` first")
        try:
            meta = io.read_json(folder / SETTINGS)
            W = load_file(str(folder / WEIGHTS))["W"]
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"L2I dictionary in {folder} is unreadable: {err}") from err
        return cls(W=W, settings=meta["settings"], info=meta.get("info", {}))


def fit_or_load(folder: str | Path, X_train: torch.Tensor, settings: dict[str, Any]
                ) -> tuple[Dictionary, bool]:
    """The dictionary in ``folder`` if its settings equal ``settings``, else a new fit of
    ``X_train (F, N)`` with ``settings["k"], ["mu"], ["iterations"], ["seed"]``, saved there.
    Returns ``(dictionary, reused)``."""
    folder = Path(folder)
    if (folder / SETTINGS).is_file():
        try:
            old = Dictionary.load(folder)
        except CheckpointError:
            old = None
        if old is not None and old.settings == settings:
            return old, True
    t0 = time.perf_counter()
    res = sparse_nmf(X_train, int(settings["k"]), mu=float(settings["mu"]),
                     iterations=int(settings["iterations"]), seed=int(settings["seed"]))
    seconds = time.perf_counter() - t0
    d = Dictionary(W=res.W.cpu(), settings=settings,
                   info={"fit_seconds": seconds, "frames": int(X_train.shape[1]),
                         "objective_first": res.objective[0], "objective_last": res.objective[-1],
                         "device": str(X_train.device), "threads": torch.get_num_threads(),
                         **io.run_meta()})
    d.save(folder)
    return d, False
