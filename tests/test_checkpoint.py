"""Checkpoints: layout, atomic swap, resume to bit-identical weights, load_run errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from robustmer.errors import CheckpointError
from robustmer.train import TrainConfig, load_run, train_run
from robustmer.train import checkpoint as ck
from test_train import WIDTH, ToyDataset, cfg, weights


class KilledError(RuntimeError):
    """Stands for the process dying right after an epoch's checkpoint was written."""


DATA = {"source": "toy", "split_id": "abc"}


def train(run_dir: Path, config: TrainConfig, **kw: Any) -> Any:
    kw.setdefault("data_description", DATA)
    return train_run(ToyDataset(seed=0), ToyDataset(n=12, seed=1), run_dir, model_type="A2M2E",
                     model_settings={"width": WIDTH}, config=config, progress=False,
                     normaliser={"mean": 0.0, "std": 1.0}, **kw)


def kill_after(k: int) -> Any:
    def cb(epoch: int, _record: dict[str, Any]) -> None:
        if epoch == k:
            raise KilledError(f"killed after epoch {epoch}")
    return cb


def folder_weights(run_dir: Path, which: str) -> dict[str, torch.Tensor]:
    return weights(load_run(run_dir, which).model)


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    train(run_dir, cfg(max_epochs=3))
    return run_dir


def test_layout_and_load_run(reference: Path) -> None:
    for which in ("last", "best"):
        names = {p.name for p in (reference / which).iterdir()}
        assert set(ck.REQUIRED_TO_RESUME) | {"meta.json"} <= names
    opt = torch.load(reference / "last" / "optimizer.pt", weights_only=True)
    assert opt["optimizer"]["param_groups"][0]["lr"] == cfg().lr
    loaded = load_run(reference, "last")
    assert not loaded.model.training
    assert loaded.epoch == 3 and [r["epoch"] for r in loaded.history] == [1, 2, 3]
    assert loaded.train_config == cfg(max_epochs=3)
    assert loaded.data == DATA and loaded.normaliser == {"mean": 0.0, "std": 1.0}
    assert loaded.model_config["kind"] == "a2m2e"
    assert "versions" in loaded.meta
    best = load_run(reference)
    assert best.epoch == json.loads((reference / "best" / "state.json").read_text())["epoch"]


def test_resume_after_a_kill_gives_identical_weights(reference: Path, tmp_path: Path) -> None:
    with pytest.raises(KilledError):
        train(tmp_path, cfg(max_epochs=3), callbacks=[kill_after(1)])
    assert json.loads((tmp_path / "last" / "state.json").read_text())["epoch"] == 1
    res = train(tmp_path, cfg(max_epochs=3), resume=True)
    assert [r["epoch"] for r in res.history] == [1, 2, 3]
    assert_same(folder_weights(tmp_path, "last"), folder_weights(reference, "last"))
    assert_same(folder_weights(tmp_path, "best"), folder_weights(reference, "best"))
    opt_a = torch.load(tmp_path / "last" / "optimizer.pt", weights_only=True)["optimizer"]
    opt_b = torch.load(reference / "last" / "optimizer.pt", weights_only=True)["optimizer"]
    for key, st in opt_b["state"].items():
        assert torch.equal(opt_a["state"][key]["exp_avg_sq"], st["exp_avg_sq"])


def test_resume_with_more_epochs_continues_exactly(reference: Path, tmp_path: Path) -> None:
    train(tmp_path, cfg(max_epochs=2))
    res = train(tmp_path, cfg(max_epochs=3), resume=True)
    assert res.last_epoch == 3
    assert_same(folder_weights(tmp_path, "last"), folder_weights(reference, "last"))


def test_resume_repairs_best_after_a_kill_before_its_copy(reference: Path,
                                                          tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    best_epoch = load_run(reference).epoch
    state = json.loads((run_dir / "last" / "state.json").read_text())
    if state["early_stopping"]["best_epoch"] != 3:
        pytest.fail("reference run should improve on its last epoch for this test")
    shutil.rmtree(run_dir / "best")
    train(run_dir, cfg(max_epochs=3), resume=True)  # nothing left to train: repairs best/
    assert load_run(run_dir).epoch == best_epoch == 3


def test_existing_run_needs_resume_and_same_settings(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    with pytest.raises(CheckpointError, match="resume"):
        train(run_dir, cfg(max_epochs=3))
    with pytest.raises(CheckpointError, match="lr"):
        train(run_dir, cfg(max_epochs=4, lr=0.1), resume=True)
    with pytest.raises(CheckpointError, match="split"):
        train(run_dir, cfg(max_epochs=4), resume=True, data_description={"split_id": "other"})


def test_resume_without_a_checkpoint_starts_fresh(reference: Path, tmp_path: Path) -> None:
    train(tmp_path, cfg(max_epochs=3), resume=True)
    assert_same(folder_weights(tmp_path, "last"), folder_weights(reference, "last"))


def test_kill_during_swap_is_recovered(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "last").rename(run_dir / ".last.old")  # killed between the two renames
    (run_dir / ".last.tmp-dead").mkdir()              # a half-written temporary folder
    ck.recover(run_dir)
    assert (run_dir / "last" / "state.json").is_file()
    assert not (run_dir / ".last.tmp-dead").exists()


def test_incomplete_checkpoint_names_folder_and_file(reference: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    (run_dir / "best" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"best.*model\.safetensors"):
        load_run(run_dir)
    (run_dir / "last" / "rng.json").unlink()
    load_run(run_dir, "last")  # loading for inference does not need the RNG states
    with pytest.raises(CheckpointError, match=r"last.*rng\.json"):
        ck.read_checkpoint(run_dir, "last", for_resume=True)
    with pytest.raises(CheckpointError, match="no checkpoint folder"):
        load_run(tmp_path / "nowhere")


def test_rng_states_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ck.capture_rng()
    ck.save_checkpoint(tmp_path, "last", ck.Checkpoint(
        model_state=model.state_dict(), state={"epoch": 1, "early_stopping": {}},
        model_config={}, train_config={}, data=None, normaliser=None, history=[],
        optimizer_state={"optimizer": {}}, rng=state))
    draws = (torch.rand(3), np.random.rand(3), random.random())
    ck.restore_rng(ck.read_checkpoint(tmp_path, "last", for_resume=True).rng)
    assert torch.equal(torch.rand(3), draws[0])
    assert np.array_equal(np.random.rand(3), draws[1])
    assert random.random() == draws[2]
