"""A pretrained model's run folder: no training, the same folder every later stage reads.

A model type with ``trainable=False`` (a user factory that loads its own weights) gets a run
folder whose ``best/`` (and ``last/``) checkpoint holds those weights, epoch 0 and an empty
history, so ``load_run``, ``evaluate``, the attacks, the explainers and L2I treat it as any
trained run. Its ``model_config.json`` records the factory, the factory file's SHA-256 and the
weights' SHA-256 (``robustmer.models.factory.weights_sha256``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from torch.utils.data import Dataset

from robustmer import io
from robustmer.errors import CheckpointError, ConfigError
from robustmer.models.types import ModelType, get_type
from robustmer.train import checkpoint as ck
from robustmer.train.config import TrainConfig
from robustmer.train.evaluation import evaluate_model, output_sizes
from robustmer.train.runfolder import write_run_files
from robustmer.train.runtime import preserved_global_state, seed_everything


def write_pretrained(train_set: Dataset[Any], val_set: Dataset[Any], run_dir: str | Path, *,
                     model_type: ModelType | str,
                     model_settings: Mapping[str, Any] | None = None, seed: int = 0,
                     data_description: dict[str, Any] | None = None,
                     normaliser: dict[str, Any] | None = None,
                     extra_config: dict[str, Any] | None = None) -> ck.LoadedRun:
    """Build the pretrained model (its factory loads the weights), score it on ``val_set`` and
    write it as the run's ``best/`` and ``last/`` checkpoints. A folder that already holds the
    same weights is kept (resumable); one holding other weights is refused. The caller's global
    RNG states are as they were when it returns."""
    mtype = get_type(model_type) if isinstance(model_type, str) else model_type
    if mtype.trainable:
        raise ConfigError(f"model type {mtype.name} is trainable; train it with train_run")
    run = Path(run_dir)
    with preserved_global_state():  # the caller's RNGs as they were
        n_outputs, n_concepts = output_sizes(mtype, train_set)
        seed_everything(seed)  # a factory that draws anything draws it reproducibly
        model, model_config = mtype.create(n_outputs, n_concepts, model_settings)
        ck.recover(run)
        if (run / ck.BEST).is_dir():
            stored = ck.read_checkpoint(run, ck.BEST).model_config
            if stored.get("weights_sha256") != model_config.get("weights_sha256"):
                asked = str(model_config.get("weights_sha256"))[:12]
                raise CheckpointError(f"{run} holds pretrained weights "
                                      f"{str(stored.get('weights_sha256'))[:12]}..., the "
                                      f"factory now gives {asked}...; choose another folder")
            return ck.load_run(run)
        config = TrainConfig(seed=seed, max_epochs=1)
        meta = io.run_meta(seed=seed, model=model_config, pretrained=True)
        write_run_files(run, meta, model_config, config, data_description,
                         {**(extra_config or {}), "pretrained": True})
        ev = evaluate_model(model, val_set, model_type=mtype)
        record = {"epoch": 0, **mtype.history(ev), "val_score": mtype.score(ev)}
        checkpoint = ck.Checkpoint(
            model_state=model.state_dict(), state={"epoch": 0, "pretrained": True},
            model_config=model_config, train_config=config.to_dict(), data=data_description,
            normaliser=normaliser, history=[record], meta=meta)
        ck.save_checkpoint(run, ck.LAST, checkpoint)
        ck.copy_checkpoint(run, ck.LAST, ck.BEST)
        io.write_csv(run / "history.csv", pd.DataFrame([record]))
        return ck.load_run(run)
