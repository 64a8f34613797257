"""Atomic file writes and run metadata, shared by every stage that writes results.

Every writer goes through a temporary file in the destination folder followed by ``os.replace``,
so a reader never sees a half-written file, even when a run is killed mid-write.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import yaml


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is moved over ``path`` atomically.

    ``suffix`` lets libraries that insist on an extension (numpy's ``.npz``) write to the temp path.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix + ".tmp", dir=dest.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give results the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, dest)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing; it replaces ``path`` only if the block succeeds."""
    with atomic_path(path) as tmp, open(tmp, mode, **kwargs) as fh:
        yield fh
        fh.flush()
        os.fsync(fh.fileno())


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write text atomically (UTF-8)."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike[str], obj: Any) -> None:
    """Write JSON atomically, indented and key-sorted so diffs stay readable."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file."""
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_yaml(path: str | os.PathLike[str], obj: Any) -> None:
    """Write YAML atomically (plain types only)."""
    write_text(path, yaml.safe_dump(json.loads(json.dumps(obj, default=_json_default)),
                                     sort_keys=False))


def write_csv(path: str | os.PathLike[str], frame: Any, **kwargs: Any) -> None:
    """Write a pandas DataFrame as CSV atomically (index off unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        frame.to_csv(fh, **kwargs)


def write_npz(path: str | os.PathLike[str], **arrays: Any) -> None:
    """Write arrays as a compressed ``.npz`` atomically (parent folders made)."""
    import numpy as np

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path, "wb") as fh:
        np.savez_compressed(fh, **arrays)


def read_npz(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Every array of an ``.npz`` (no pickles: a user's file is never unpickled)."""
    import numpy as np

    with np.load(path, allow_pickle=False) as z:
        return {k: np.asarray(z[k]) for k in z.files}


def safe_name(name: str) -> str:
    """A file-name-safe form of an id: itself when it is one already, else its safe characters
    plus a short hash of the original (so two ids never share a file)."""
    keep = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    return keep if keep == name else f"{keep}-{stable_hash(name, 6)}"


def plain(obj: Any) -> Any:
    """``obj`` as plain JSON types (paths as text, numpy/torch values as lists and numbers):
    what ``write_json`` / ``write_yaml`` store, to compare with what was stored."""
    return json.loads(json.dumps(obj, default=_json_default))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes (used to key caches by content, not by path)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_hash(obj: Any, length: int = 12) -> str:
    """Short, stable hash of a JSON-serialisable object (configs, id lists)."""
    text = json.dumps(obj, sort_keys=True, default=_json_default)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def git_commit() -> str | None:
    """The git commit of the source tree, when robustmer runs from a checkout."""
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def versions() -> dict[str, str]:
    """Versions of Python, robustmer and the numerical libraries, stored beside every result."""
    import numpy
    import torch

    import robustmer

    info = {
        "robustmer": robustmer.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    for name in ("scipy", "pandas", "soundfile", "soxr"):
        try:
            mod = __import__(name)
            info[name] = str(getattr(mod, "__version__", "unknown"))
        except ImportError:  # pragma: no cover - all are dependencies
            pass
    return info


def run_meta(**extra: Any) -> dict[str, Any]:
    """The ``meta.json`` payload: versions, git commit, timestamp, plus caller fields."""
    meta: dict[str, Any] = {
        "versions": versions(),
        "git_commit": git_commit(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    meta.update(extra)
    return meta
