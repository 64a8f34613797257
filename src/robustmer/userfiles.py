"""A user's own code named in a config: ``"my_models.py:build"`` or ``"package.module:build"``.

Used for a user's model factory (``robustmer.models.factory``) and a dataset generator
(a study's ``data.make``). A file path resolves against the current directory (as data paths
do) and is recorded with its SHA-256, so a changed file is noticed. Importing a user file runs its
code: it is the user's own code, named by the user; nothing is unpickled. Shared by every stage,
so it imports none.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from robustmer.errors import ConfigError

_LOADED: dict[tuple[str, str], Any] = {}


def sha256_of(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def split_callable(ref: str, where: str = "factory") -> tuple[str, str]:
    """``"file.py:func"`` or ``"package.module:func"`` -> (module part, function name)."""
    module, sep, func = str(ref).rpartition(":")
    if not sep or not module or not func.isidentifier():
        raise ConfigError(f"{where}: expected 'my_models.py:build' or 'package.module:build' "
                          f"(a file or import path, a colon, a function name), found {ref!r}")
    return module, func


def resolve_callable(ref: str, where: str = "factory") -> str:
    """The reference with a file path made absolute (relative paths resolve against the current
    directory), so that worker processes find the same file."""
    module, func = split_callable(ref, where)
    if module.endswith(".py"):
        path = Path(module).expanduser()
        if not path.is_file():
            raise ConfigError(f"{where}: file not found: {path} (resolved against {Path.cwd()})")
        return f"{path.resolve()}:{func}"
    return f"{module}:{func}"


def callable_source(ref: str) -> dict[str, Any]:
    """What a result records of the code: the file and its SHA-256 (an import path: its
    module's file when it has one)."""
    module, _ = split_callable(ref)
    if module.endswith(".py"):
        path = Path(module)
        return {"file": str(path), "sha256": sha256_of(path)}
    spec = importlib.util.find_spec(module)
    origin = getattr(spec, "origin", None) if spec is not None else None
    if origin and Path(origin).is_file():
        return {"file": origin, "sha256": sha256_of(Path(origin))}
    return {"file": None, "sha256": None}


def load_callable(ref: str, where: str = "factory") -> Callable[..., Any]:
    """Import the function (a file is imported once per content hash)."""
    module, func = split_callable(ref, where)
    try:
        if module.endswith(".py"):
            path = Path(module)
            if not path.is_file():
                raise ConfigError(f"{where}: file not found: {path}")
            key = (str(path.resolve()), sha256_of(path))
            mod = _LOADED.get(key)
            if mod is None:
                name = f"robustmer_user_{key[1][:16]}"
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None:
                    raise ConfigError(f"{where}: cannot import {path}")
                mod = importlib.util.module_from_spec(spec)
                sys.modules[name] = mod  # dataclasses and pickling look classes up here
                spec.loader.exec_module(mod)
                _LOADED[key] = mod
        else:
            mod = importlib.import_module(module)
    except ConfigError:
        raise
    except Exception as err:  # the user's module failed to import: say where
        raise ConfigError(f"{where}: importing {module} failed: {type(err).__name__}: "
                          f"{err}") from err
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise ConfigError(f"{where}: {module} has no function {func!r}")
    return fn  # type: ignore[no-any-return]
