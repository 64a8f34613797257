"""Torch datasets of excerpts with their targets: ``ExcerptDataset`` (standardised 313-frame
spectrogram excerpts, robustmer's model input) and ``WaveExcerptDataset`` (mono audio excerpts
at a model's own sample rate, for a model that owns its front end). Items share one layout, so
training, attacks and explainers read either."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustmer.data.table import ClipTable
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import EXCERPT_FRAMES, Standardizer, excerpt_indices

MODES: tuple[str, ...] = ("fixed", "random")


def clip_seed(*parts: object) -> int:
    """A 63-bit seed derived from ``parts`` (e.g. mode, seed, epoch, clip id).

    Python's ``hash`` of a string changes between processes, so a SHA-256 of the parts is used:
    the same parts give the same window in every process, DataLoader worker and resumed run.
    """
    digest = hashlib.sha256("\x1f".join(str(p) for p in parts).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class _Targets:
    """The per-clip targets every dataset item carries (names from the :class:`ClipTable`)."""

    def __init__(self, ids: Sequence[str], table: ClipTable) -> None:
        self.target_names = table.target_names
        self.concept_names = table.concept_names
        self.classes = tuple(table.classes)
        targets = table.targets.loc[list(ids)].to_numpy(np.float32)
        concepts = table.concepts.loc[list(ids)].to_numpy(np.float32)
        mask = (~np.isnan(concepts).any(axis=1) if concepts.shape[1]
                else np.zeros(len(ids), dtype=bool))
        self._targets = torch.tensor(targets, dtype=torch.float32)
        self._concepts = torch.tensor(np.where(mask[:, None], concepts, 0.0),
                                      dtype=torch.float32)
        self._mask = torch.tensor(mask, dtype=torch.bool)
        self._labels = torch.tensor([table.label_index(i) for i in ids], dtype=torch.int64)

    def item(self, index: int, clip_id: str, x: torch.Tensor) -> dict[str, Any]:
        return {"id": clip_id, "x": x, "targets": self._targets[index],
                "concepts": self._concepts[index], "concept_mask": self._mask[index],
                "label": self._labels[index]}


class _Windows(Dataset[dict[str, Any]]):
    """What both excerpt datasets share: the clips with their targets and names, the epoch,
    and the seed of each clip's window (``fixed``: from (seed, clip id); ``random``: from
    (seed, epoch, clip id))."""

    def _set_clips(self, ids: Sequence[str], table: ClipTable, mode: str, seed: int, *,
                   have: Mapping[str, Any], what: str) -> None:
        """Check the mode and that every clip has its ``what`` (in ``have``) and its row in the
        table, then take the clips, their targets and names."""
        kind = type(self).__name__
        if mode not in MODES:
            raise ConfigError(f"{kind}: mode must be one of {list(MODES)}, got {mode!r}")
        missing = [i for i in ids if i not in have]
        if missing:
            raise DatasetError(f"{kind}: no {what} for clip(s) {missing[:10]}")
        table.check_ids(ids, kind)
        self.ids: list[str] = list(ids)
        self.mode = mode
        self.seed = int(seed)
        self.epoch = 0
        self._targets = _Targets(self.ids, table)
        self.target_names = self._targets.target_names
        self.concept_names = self._targets.concept_names
        self.classes = self._targets.classes

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the windows of ``epoch`` (only changes anything in ``random`` mode)."""
        self.epoch = int(epoch)

    def window_seed(self, clip_id: str) -> int:
        """The seed of the clip's current window."""
        if self.mode == "fixed":
            return clip_seed("fixed", self.seed, clip_id)
        return clip_seed("random", self.seed, self.epoch, clip_id)


class ExcerptDataset(_Windows):
    """Items ``{id, x (1, 313, bands), targets (K,), concepts (C,), concept_mask, label}``.

    ``mode="fixed"``: each clip's window is drawn once from (seed, clip id) and is the same every
    time (evaluation, attacks). ``mode="random"``: ``set_epoch(epoch)`` re-draws every window from
    (seed, epoch, clip id), so training is reproducible and resumable. ``concepts`` are zeros and
    ``concept_mask`` False where any concept of the clip is unknown; ``label`` is the index into
    ``table.classes`` or -1. ``target_names``, ``concept_names`` and ``classes`` name them.
    """

    def __init__(self, ids: Sequence[str], specs: Mapping[str, np.ndarray], table: ClipTable,
                 standardizer: Standardizer, *, mode: str = "fixed", seed: int = 0,
                 frames: int = EXCERPT_FRAMES) -> None:
        self._set_clips(ids, table, mode, seed, have=specs, what="spectrogram")
        self.frames = int(frames)
        self.standardizer = standardizer
        self._specs = {i: specs[i] for i in self.ids}

    def excerpt_index(self, clip_id: str) -> np.ndarray:
        """Frame indices of the clip's current window (to cut the same window from a waveform)."""
        spec = self._specs.get(clip_id)
        if spec is None:
            raise DatasetError(f"ExcerptDataset: clip {clip_id!r} is not in this dataset")
        return excerpt_indices(spec.shape[0], self.frames, seed=self.window_seed(clip_id))

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_id = self.ids[index]
        window = self._specs[clip_id][self.excerpt_index(clip_id)]
        x = self.standardizer.transform(window.astype(np.float32))
        return self._targets.item(index, clip_id,
                                  torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None])


class WaveExcerptDataset(_Windows):
    """Items ``{id, x (samples,), targets, concepts, concept_mask, label}``: mono audio excerpts
    of ``samples`` samples at the model's sample rate (``waves`` already resampled), for a model
    that owns its front end. Windows are drawn as :class:`ExcerptDataset` draws them (``fixed``:
    from (seed, clip id); ``random``: from (seed, epoch, clip id)); a shorter clip is tiled."""

    def __init__(self, ids: Sequence[str], waves: Mapping[str, np.ndarray], table: ClipTable, *,
                 samples: int, mode: str = "fixed", seed: int = 0) -> None:
        if int(samples) != samples or samples < 1:
            raise ConfigError(f"WaveExcerptDataset: samples must be a positive integer, got "
                              f"{samples!r}")
        self._set_clips(ids, table, mode, seed, have=waves, what="audio")
        self.samples = int(samples)
        self._waves = {i: waves[i] for i in self.ids}

    def excerpt_index(self, clip_id: str) -> np.ndarray:
        """Sample indices of the clip's current window."""
        wave = self._waves.get(clip_id)
        if wave is None:
            raise DatasetError(f"WaveExcerptDataset: clip {clip_id!r} is not in this dataset")
        return excerpt_indices(len(wave), self.samples, seed=self.window_seed(clip_id))

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_id = self.ids[index]
        x = self._waves[clip_id][self.excerpt_index(clip_id)]
        return self._targets.item(index, clip_id,
                                  torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))


class ShuffledLabels(Dataset[dict[str, Any]]):
    """``dataset`` with its class labels permuted across the items by a seeded permutation
    (Adebayo et al.'s data-randomisation test: a model trained on labels that mean nothing).

    Item ``i`` is ``dataset[i]`` with the label of item ``perm[i]`` (read with the dataset's
    own ``label(index)`` when it has one, which skips building the other item's input);
    ``set_epoch``, ``classes`` and the other names pass through."""

    def __init__(self, dataset: Dataset[dict[str, Any]], seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"ShuffledLabels: seed must be a non-negative integer, got {seed!r}")
        self.dataset = dataset
        self.seed = int(seed)
        self._perm = np.random.default_rng(self.seed).permutation(len(dataset))  # type: ignore[arg-type]
        for name in ("target_names", "concept_names", "classes"):
            if hasattr(dataset, name):
                setattr(self, name, getattr(dataset, name))

    def __len__(self) -> int:
        return len(self._perm)

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch to the wrapped dataset."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = dict(self.dataset[index])
        other = int(self._perm[index])
        label_of = getattr(self.dataset, "label", None)
        label = label_of(other) if callable(label_of) else self.dataset[other]["label"]
        item["label"] = torch.as_tensor(label, dtype=torch.int64)
        return item
