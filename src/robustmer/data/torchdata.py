"""``ExcerptDataset``: standardised 313-frame excerpts with their targets, as a torch Dataset."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from robustmer import CONCEPTS, EMOTIONS
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


class ExcerptDataset(Dataset[dict[str, Any]]):
    """Items ``{id, x (1, 313, bands), emotions (8,), concepts (7,), concept_mask, label}``.

    ``mode="fixed"``: each clip's window is drawn once from (seed, clip id) and is the same every
    time (evaluation, attacks). ``mode="random"``: ``set_epoch(epoch)`` re-draws every window from
    (seed, epoch, clip id), so training is reproducible and resumable. ``concepts`` are zeros and
    ``concept_mask`` False where any concept of the clip is unknown; ``label`` is the index into
    ``table.classes`` or -1.
    """

    def __init__(self, ids: Sequence[str], specs: Mapping[str, np.ndarray], table: ClipTable,
                 standardizer: Standardizer, *, mode: str = "fixed", seed: int = 0,
                 frames: int = EXCERPT_FRAMES) -> None:
        if mode not in MODES:
            raise ConfigError(f"ExcerptDataset: mode must be one of {list(MODES)}, got {mode!r}")
        missing = [i for i in ids if i not in specs]
        if missing:
            raise DatasetError(f"ExcerptDataset: no spectrogram for clip(s) {missing[:10]}")
        table.check_ids(ids, "ExcerptDataset")
        self.ids: list[str] = list(ids)
        self.mode = mode
        self.seed = int(seed)
        self.frames = int(frames)
        self.epoch = 0
        self.standardizer = standardizer
        self._specs = {i: specs[i] for i in self.ids}
        emotions = table.emotions.loc[self.ids, list(EMOTIONS)].to_numpy(np.float32)
        concepts = table.concepts.loc[self.ids, list(CONCEPTS)].to_numpy(np.float32)
        mask = ~np.isnan(concepts).any(axis=1)
        self._emotions = torch.tensor(emotions, dtype=torch.float32)
        self._concepts = torch.tensor(np.where(mask[:, None], concepts, 0.0), dtype=torch.float32)
        self._mask = torch.tensor(mask, dtype=torch.bool)
        self._labels = torch.tensor([table.label_index(i) for i in self.ids], dtype=torch.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def set_epoch(self, epoch: int) -> None:
        """Select the windows of ``epoch`` (only changes anything in ``random`` mode)."""
        self.epoch = int(epoch)

    def excerpt_index(self, clip_id: str) -> np.ndarray:
        """Frame indices of the clip's current window (to cut the same window from a waveform)."""
        spec = self._specs.get(clip_id)
        if spec is None:
            raise DatasetError(f"ExcerptDataset: clip {clip_id!r} is not in this dataset")
        if self.mode == "fixed":
            seed = clip_seed("fixed", self.seed, clip_id)
        else:
            seed = clip_seed("random", self.seed, self.epoch, clip_id)
        return excerpt_indices(spec.shape[0], self.frames, seed=seed)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clip_id = self.ids[index]
        window = self._specs[clip_id][self.excerpt_index(clip_id)]
        x = self.standardizer.transform(window.astype(np.float32))
        return {
            "id": clip_id,
            "x": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None],
            "emotions": self._emotions[index],
            "concepts": self._concepts[index],
            "concept_mask": self._mask[index],
            "label": self._labels[index],
        }
