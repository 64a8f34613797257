"""Seeded train / validation / test splits of clip ids, saved as JSON and identified by a hash."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from robustmer.errors import ConfigError, DatasetError
from robustmer.io import read_json, stable_hash, write_json

PARTS: tuple[str, ...] = ("train", "val", "test")


@dataclass(frozen=True)
class Split:
    """Three disjoint, sorted lists of clip ids; ``split_id`` is a stable hash of all three."""

    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]

    def __post_init__(self) -> None:
        for name in PARTS:
            object.__setattr__(self, name, tuple(sorted(str(i) for i in getattr(self, name))))
        seen: dict[str, str] = {}
        for name in PARTS:
            for clip in getattr(self, name):
                if clip in seen:
                    raise DatasetError(f"split: clip {clip!r} is in both {seen[clip]!r} and "
                                       f"{name!r}; the parts must be disjoint")
                seen[clip] = name

    @property
    def split_id(self) -> str:
        """Stable hash of the three id lists (recorded in checkpoints and results)."""
        return stable_hash({name: list(getattr(self, name)) for name in PARTS})

    def part(self, name: str) -> tuple[str, ...]:
        """The ids of one part (``train``, ``val``, ``test``) or of all (``all``)."""
        if name == "all":
            return tuple(sorted(self.train + self.val + self.test))
        if name not in PARTS:
            raise ConfigError(f"split part {name!r} is not one of {[*PARTS, 'all']}")
        ids: tuple[str, ...] = getattr(self, name)
        return ids

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (what ``save`` writes)."""
        return {"split_id": self.split_id, **{name: list(getattr(self, name)) for name in PARTS}}

    def save(self, path: str | Path) -> None:
        """Write the split as JSON, atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path, valid_ids: Iterable[str] | None = None) -> Split:
        """Read a split written by ``save``; with ``valid_ids``, every id must be among them.

        Raises ``DatasetError`` naming the file if it is malformed, its recorded ``split_id``
        does not match its lists (edited by hand), or it names clips not in the dataset.
        """
        path = Path(path)
        try:
            data = read_json(path)
        except FileNotFoundError as err:
            raise DatasetError(f"{path}: split file not found") from err
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise DatasetError(f"{path}: not a valid JSON split file: {err}") from err
        if not isinstance(data, dict):
            raise DatasetError(f"{path}: expected a JSON object with keys {list(PARTS)}")
        lists: dict[str, list[str]] = {}
        for name in PARTS:
            value = data.get(name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise DatasetError(f"{path}: key {name!r} must be a list of clip-id strings, "
                                   f"found {type(value).__name__}")
            lists[name] = value
        try:
            split = cls(train=tuple(lists["train"]), val=tuple(lists["val"]),
                        test=tuple(lists["test"]))
        except DatasetError as err:
            raise DatasetError(f"{path}: {err}") from err
        recorded = data.get("split_id")
        if recorded is not None and recorded != split.split_id:
            raise DatasetError(f"{path}: recorded split_id {recorded!r} does not match its id "
                               f"lists ({split.split_id!r}); the file was edited. Remove the "
                               "'split_id' key to accept the edit.")
        if valid_ids is not None:
            known = set(valid_ids)
            unknown = [c for name in PARTS for c in getattr(split, name) if c not in known]
            if unknown:
                raise DatasetError(
                    f"{path}: {len(unknown)} clip id(s) of the split are not in the dataset: "
                    f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}; was it made for "
                    "another dataset? Delete it to make a new one.")
        return split


def make_split(ids: Sequence[str], seed: int = 0,
               fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> Split:
    """Shuffle ``ids`` with ``seed`` and cut them into train / val / test by ``fractions``.

    Part sizes are ``round(fraction * n)`` for train and val, the rest for test, so every id is
    used exactly once. The result does not depend on the order of ``ids``.
    """
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise ConfigError(f"fractions must be three non-negative numbers, got {fractions!r}")
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must sum to 1, got {fractions!r} (sum {sum(fractions):g})")
    unique = sorted({str(i) for i in ids})
    if len(unique) != len(ids):
        raise DatasetError(f"make_split: {len(ids) - len(unique)} duplicate clip id(s)")
    n = len(unique)
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [unique[k] for k in order]
    n_train = min(n, round(fractions[0] * n))
    n_val = min(n - n_train, round(fractions[1] * n))
    return Split(train=tuple(shuffled[:n_train]), val=tuple(shuffled[n_train:n_train + n_val]),
                 test=tuple(shuffled[n_train + n_val:]))
