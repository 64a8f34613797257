"""Who owns a results folder, and whether a run may continue in it.

Every command that writes a results folder (a training run, an attack, a study, an import, ...)
*claims* it first: an empty or missing folder is created and marked with ``.robustmer.json``
(the kind of results it holds); a folder of the same kind may be continued; any other non-empty
folder is refused unless the user asked to overwrite it, and then it is replaced as a whole (moved
aside with one rename and deleted) before anything new is written, so a folder never holds half
old and half new results. Folders written before markers existed are recognised by their files.

:func:`settings_diff` / :func:`require_same_settings` compare what a folder was made with against
what a resume asks for and name the first differing keys with both values.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from robustmer.errors import ConfigError

try:
    import fcntl
except ImportError:  # not POSIX: folders are not locked
    fcntl = None  # type: ignore[assignment]
from robustmer.io import read_json, write_json

MARKER = ".robustmer.json"
LOCK = ".robustmer.lock"
"""Held (``fcntl.flock``) by the process writing the folder; the OS releases it when that
process ends, however it ends."""
"""The ownership marker: ``{"kind": ..., "robustmer": version}``."""

LEGACY_SIGNATURES: dict[str, tuple[str, ...]] = {
    "run": ("last", "best"),
    "attack": ("attack.csv",),
    "study": ("runs", "split.json"),
    "store": ("runs.csv", "clips.csv"),
}
"""Files that identify a folder of each kind written before markers existed (any one suffices)."""


def folder_kind(path: str | os.PathLike[str]) -> str | None:
    """The kind of results ``path`` holds: from its marker, else from legacy files, else None."""
    p = Path(path)
    marker = p / MARKER
    if marker.is_file():
        try:
            return str(read_json(marker)["kind"])
        except (ValueError, KeyError, TypeError, OSError):
            return None
    for kind, names in LEGACY_SIGNATURES.items():
        if any((p / n).exists() for n in names):
            return "study" if kind == "store" and (p / "runs").is_dir() else kind
    return None


def is_empty(path: str | os.PathLike[str]) -> bool:
    """True for a missing folder or one with no entries."""
    p = Path(path)
    return not p.exists() or (p.is_dir() and not any(p.iterdir()))


def remove_folder(path: str | os.PathLike[str]) -> None:
    """Delete a folder as one step for any reader: rename it aside, then delete the renamed copy."""
    p = Path(path)
    if not p.exists():
        return
    trash = p.with_name(f".{p.name}.removed-{uuid.uuid4().hex[:8]}")
    os.replace(p, trash)
    shutil.rmtree(trash)


def claim_folder(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False,
                 option: str = "--out", accept: tuple[str, ...] = ()) -> Path:
    """Make ``path`` a folder of ``kind`` results and return it.

    Missing or empty: created and marked. Same kind (or one of ``accept``, e.g. a store that an
    older study wrote): kept as it is, for the caller to continue or refuse. Anything else: a
    ``ConfigError`` naming the folder, what it holds and ``option``, unless ``overwrite``, which
    removes the old folder whole before the new one is marked.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: exists and is not a folder")
    found = folder_kind(p) if p.exists() else None
    if not is_empty(p) and not overwrite and found not in (kind, *accept):
        what = f"{found} results" if found else "files robustmer did not write"
        raise ConfigError(f"{option} {p}: the folder is not empty (it holds {what}); choose "
                          f"another folder, or pass --overwrite to replace it")
    if overwrite and not is_empty(p):
        remove_folder(p)
    p.mkdir(parents=True, exist_ok=True)
    if not (p / MARKER).is_file() or found != kind:
        from robustmer import __version__

        write_json(p / MARKER, {"kind": kind, "robustmer": __version__})
    return p


@contextlib.contextmanager
def replace_folder(path: str | os.PathLike[str], kind: str, *, overwrite: bool = False,
                   option: str = "--out") -> Iterator[Path]:
    """Write a whole results folder at once: yield a fresh temporary sibling to fill; on success
    it takes the place of ``path`` (the old one, if any, is removed whole), on error it is deleted.

    For quick writers (an import, a report); the same ownership rule as :func:`claim_folder`
    applies, checked before anything is written.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{option} {p}: exists and is not a folder")
    found = folder_kind(p) if p.exists() else None
    if not is_empty(p) and not overwrite and found != kind:
        what = f"{found} results" if found else "files robustmer did not write"
        raise ConfigError(f"{option} {p}: the folder is not empty (it holds {what}); choose "
                          f"another folder, or pass --overwrite to replace it")
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.new-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        from robustmer import __version__

        write_json(tmp / MARKER, {"kind": kind, "robustmer": __version__})
        yield tmp
        remove_folder(p)
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(
            a, bool) and not isinstance(b, bool):
        return float(a) == float(b)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def settings_diff(stored: Mapping[str, Any] | None, asked: Mapping[str, Any] | None,
                  prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Differing leaves of two nested settings mappings, as ``(dotted.key, stored, asked)``;
    a key missing on one side counts as ``None`` there. Lists are compared as values."""
    stored, asked = stored or {}, asked or {}
    out: list[tuple[str, Any, Any]] = []
    for key in sorted(set(stored) | set(asked), key=str):
        a, b = stored.get(key), asked.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out.extend(settings_diff(a, b, name + "."))
        elif not _same(a, b):
            out.append((name, a, b))
    return out


def require_same_settings(stored: Mapping[str, Any] | None, asked: Mapping[str, Any] | None,
                          where: str, *, ignore: Callable[[str], bool] = lambda k: False,
                          hint: str = "choose another output folder") -> None:
    """Refuse (``ConfigError``) to continue ``where`` with settings that differ from the stored
    ones, naming each differing key with both values (at most five)."""
    diff = [d for d in settings_diff(stored, asked) if not ignore(d[0])]
    if not diff:
        return
    shown = "; ".join(f"{k}: stored {a!r}, asked {b!r}" for k, a, b in diff[:5])
    more = f" (and {len(diff) - 5} more)" if len(diff) > 5 else ""
    raise ConfigError(f"{where} was made with other settings, so it cannot be continued with "
                      f"these: {shown}{more}; {hint}")


def _try_lock(path: Path) -> int | None:
    """An open descriptor of ``path`` holding an exclusive lock, or None if another process
    holds it. Without ``fcntl`` (not POSIX) there is no lock: always succeeds."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if fcntl is None:
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _locked_error(p: Path, option: str) -> ConfigError:
    try:
        pid = (p / LOCK).read_text().strip() or "?"
    except OSError:
        pid = "?"
    return ConfigError(f"{option} {p}: another robustmer process (pid {pid}) is writing this "
                       f"folder; wait for it to finish or stop it first")


def refuse_if_locked(path: str | os.PathLike[str], option: str = "--out") -> None:
    """Raise ``ConfigError`` when another process holds the folder's lock (checked before
    ``claim_folder``, so that ``--overwrite`` never removes a folder that is being written)."""
    p = Path(path)
    if not (p / LOCK).is_file():
        return
    fd = _try_lock(p / LOCK)
    if fd is None:
        raise _locked_error(p, option)
    os.close(fd)


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike[str], option: str = "--out") -> Iterator[Path]:
    """Hold the lock of a claimed results folder while writing it; a second process that asks
    for it gets a ``ConfigError`` instead of writing into the same folder."""
    p = Path(path)
    fd = _try_lock(p / LOCK)
    if fd is None:
        raise _locked_error(p, option)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield p
    finally:
        os.close(fd)  # closing the descriptor releases the lock
