"""What several command modules share: loading a trained run with its data, and the message
printed when the user interrupts a long command (where it stopped, how to resume)."""

from __future__ import annotations

import math
import shlex
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustmer.errors import ConfigError

SPLIT_FILE = "split.json"
"""The split a run was trained on, saved in the run folder so later commands use the same one."""

_resume_hint: list[Callable[[], str]] = []


def set_resume_hint(hint: Callable[[], str]) -> None:
    """Register what to print if the running command is interrupted (Ctrl-C): a callable, so
    that it can say how far the work got at that moment."""
    _resume_hint[:] = [hint]


def interrupted_message() -> str:
    """The text printed on Ctrl-C: where the work stopped and the command that resumes it."""
    lines = ["interrupted."]
    if _resume_hint:
        try:
            lines.append(_resume_hint[0]())
        except Exception as err:
            lines.append(f"(could not say where it stopped: {err})")
    return "\n".join(lines)


def resume_command(flag: str | None = "--resume") -> str:
    """The command line that was typed, with ``flag`` added if it is not there already."""
    args = list(sys.argv[1:])
    if flag and flag not in args:
        args.append(flag)
    return "robustmer " + shlex.join(args)


def load_run_and_data(run_dir: Path, data_root: Path | None, device: str,
                      which: str = "best", cache: Path | None = None,
                      progress: bool | None = None) -> tuple[Any, Any]:
    """The trained run and its data (same root, cache, split and standardiser as training).

    The dataset is the one recorded in the run unless ``data_root`` (``--data``) points a moved
    run to it; either way it must have the content id the run was trained on."""
    from robustmer.data import prepare_data
    from robustmer.features import FrontEndConfig
    from robustmer.train import load_run

    run = load_run(run_dir, which, device=device)
    desc = run.data or {}
    recorded = desc.get("root")
    root = data_root or recorded
    where = f"{run_dir}/{which}/data.json"
    if root is None:
        raise ConfigError(f"{where} names no dataset folder; pass --data DIR")
    if not Path(root).exists():
        if data_root is not None:
            raise ConfigError(f"--data {root}: dataset folder not found (nor a feature pack)")
        raise ConfigError(f"dataset folder not found: {root} (recorded in {where} when the "
                          f"run was trained); if the data moved, pass --data DIR (or --data "
                          f"PACK) to point the run to it")
    split_path = run_dir / SPLIT_FILE if (run_dir / SPLIT_FILE).exists() else desc.get(
        "split_path")
    cache = cache or desc.get("cache_dir")
    midlevel = desc.get("midlevel_root")
    frontend = FrontEndConfig.from_dict(desc["frontend"]) if desc.get("frontend") else None
    is_pack = Path(root).is_file()
    data = prepare_data(root, cache_dir=cache if cache and Path(cache).is_dir() else None,
                        split_path=split_path,
                        midlevel_root=midlevel if midlevel and Path(midlevel).is_dir()
                        and not is_pack else None,
                        frontend=frontend, progress=progress)
    stored_id = desc.get("content_id")
    if stored_id and data.content_id != stored_id:
        dtypes = {desc.get("feature_dtype", "float32"), data.feature_dtype}
        why = (" (float16 feature packs have their own content id: their rounded spectrograms "
               "are not the ones the audio gives; see docs/packs.md)"
               if "float16" in dtypes else "")
        raise ConfigError(f"the dataset at {root} is not the one the run was trained on "
                          f"(content id {data.content_id}, the run's {stored_id}, from {where})"
                          f"{why}; point --data to the training dataset")
    norm = run.normaliser or {}
    if norm and not (math.isclose(norm.get("mean", math.nan), data.standardizer.mean,
                                  rel_tol=1e-5, abs_tol=1e-6)
                     and math.isclose(norm.get("std", math.nan), data.standardizer.std,
                                      rel_tol=1e-5, abs_tol=1e-6)):
        raise ConfigError(f"{run_dir}: the run was trained with standardiser {norm}, but the data "
                          f"gives {data.standardizer.to_dict()}; is --data the training dataset?")
    return run, data


def run_profile(run_dir: Path, which: str = "best") -> dict[str, Any]:
    """What a command needs to know of a run before loading it: its model type's ``task``,
    ``input`` contract and number of outputs (read from ``model_config.json`` alone, so bad
    options are refused before any data is read)."""
    from robustmer.errors import CheckpointError
    from robustmer.io import read_json
    from robustmer.models.types import for_config

    path = run_dir / which / "model_config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir}: no {which}/model_config.json (is it a run folder "
                              f"written by `robustmer train` or a study?)")
    config = read_json(path)
    mt = for_config(config)
    n = int(config.get("n_classes") or 0) if mt.task == "classification" else int(
        config.get("n_outputs") or 0)
    return {"task": mt.task, "input": mt.input_spec(), "n_outputs": n,
            "type": mt.name}


def resolve_domain(domain: str | None, profile: dict[str, Any]) -> str:
    """``--domain``: a waveform model is attacked on its audio (the default for it; asking for
    the spectrogram domain is an error), any other model in the spectrogram domain by default."""
    waveform_model = profile["input"].get("kind") == "waveform"
    if domain is None:
        return "waveform" if waveform_model else "spectrogram"
    if waveform_model and domain != "waveform":
        raise ConfigError(f"--domain {domain}: this model reads audio (input: waveform), so it "
                          f"is attacked in the waveform domain")
    return domain


def parse_floats(values: list[str], name: str) -> list[float]:
    """``--eps 0.001 --eps 0.01`` or ``--eps 0.001,0.01``."""
    out = []
    for v in values:
        for part in str(v).split(","):
            if not part.strip():
                continue
            try:
                f = float(part)
            except ValueError:
                raise ConfigError(f"{name}: expected numbers, got {part!r}") from None
            if not (math.isfinite(f) and f >= 0):
                raise ConfigError(f"{name}: expected non-negative finite numbers, got {part!r}")
            out.append(f)
    if not out:
        raise ConfigError(f"{name}: give at least one value")
    return out


def parse_settings(values: list[str], option: str = "--set") -> dict[str, Any]:
    """``--set key=value`` pairs; values parsed as YAML scalars (``0.1``, ``true``, ``ce``)."""
    import yaml

    out: dict[str, Any] = {}
    for item in values:
        key, sep, val = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{option}: expected KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(val)
    return out
