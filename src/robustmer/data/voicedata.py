"""The voice detection task as training data: 50-frame excerpts labelled by their central frame.

A voice dataset folder (:func:`robustmer.data.voice.synthesize_voice`, ``robustmer data voice``)
becomes a :class:`VoiceData`: every clip's log-filtered spectrogram (from the audio read with
soundfile as written, so frames line up with the labels), a seeded 70/15/15 clip split (excerpts
of one clip never straddle two parts), the training clips' scalar standardiser, and per split
part a torch dataset of excerpts (:class:`VoiceExcerptDataset`) whose items have the layout every
robustmer stage reads: ``{id, x (1, 50, 149), targets (0,), concepts (0,), concept_mask,
label}``, ``label`` 0 = no voice, 1 = voice (:data:`robustmer.data.voice.LABELS`) of the
excerpt's central frame (Schlüter's detector; ``excerpt_labels(rule="center")``).

``prepare_data`` dispatches here when its root holds ``voice.json``, so ``robustmer train
--model classifier --data VOICE_DIR`` trains a detector with the same recipe code as any other
run, and ``evaluate`` / ``explainer-eval`` read the same excerpts back. Excerpt ids are
``<clip>_f<start frame>`` (:func:`excerpt_id`); :meth:`VoiceData.region` gives the planted
ground truth (the voice's time-frequency mask) of an excerpt.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from robustmer.data.split import Split, make_split
from robustmer.data.torchdata import clip_seed
from robustmer.data.voice import (
    LABELS,
    SETTINGS_JSON,
    VoiceDataset,
    load_voice_dataset,
)
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig, Standardizer, compute_spectrogram
from robustmer.io import sha256_file, stable_hash

KIND = "voice"
"""``to_dict()["kind"]``: what a run records, so later commands rebuild the same excerpts."""
EXCERPT_FRAMES_VOICE = 50
"""Frames per excerpt (1.6 s at 31.3 fps), the singing-voice detector's input length."""
SPLIT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)
HOPS: dict[str, int] = {"train": 2, "val": 4, "test": 1, "all": 1}
"""Frames between excerpt starts per split part (``dataset_for``): training every 2nd frame
(shifted by a seeded offset per epoch in ``random`` mode), validation every 4th, test and
``all`` every frame (the detector's reported error is over every test excerpt)."""
REGIONS: tuple[str, ...] = ("mask", "dominant")
_ID = re.compile(r"^(?P<clip>.+)_f(?P<start>\d+)$")


def is_voice_dataset(root: str | Path) -> bool:
    """Whether ``root`` is a folder written by ``synthesize_voice`` (it holds ``voice.json``)."""
    p = Path(root)
    return p.is_dir() and (p / SETTINGS_JSON).is_file()


def excerpt_id(clip_id: str, start: int) -> str:
    """The id of the excerpt of ``clip_id`` starting at frame ``start``: ``<clip>_f<start>``."""
    return f"{clip_id}_f{int(start)}"


def parse_excerpt_id(item_id: str) -> tuple[str, int]:
    """``(clip id, start frame)`` of an excerpt id; ``DatasetError`` naming it otherwise."""
    m = _ID.match(str(item_id))
    if m is None:
        raise DatasetError(f"{item_id!r} is not a voice excerpt id (<clip>_f<start frame>)")
    return m.group("clip"), int(m.group("start"))


class VoiceExcerptDataset(Dataset[dict[str, Any]]):
    """Excerpts of ``frames`` frames every ``hop`` frames of the clips ``ids``.

    ``mode="fixed"``: starts ``0, hop, 2 hop, ...`` (the last start ``<= T - frames``).
    ``mode="random"``: ``set_epoch(epoch)`` shifts every clip's starts by an offset in
    ``[0, hop)`` drawn from (seed, epoch, clip), with a count per clip that fits every offset,
    so the length stays the same across epochs and training is reproducible and resumable.
    (Shuffled labels for the data-randomisation test: ``robustmer.data.torchdata.ShuffledLabels``
    around this dataset.)
    """

    target_names: tuple[str, ...] = ()
    concept_names: tuple[str, ...] = ()
    classes: tuple[str, ...] = LABELS

    def __init__(self, ids: Sequence[str], specs: Mapping[str, np.ndarray],
                 labels: Mapping[str, np.ndarray], standardizer: Standardizer, *,
                 frames: int = EXCERPT_FRAMES_VOICE, hop: int = 1, mode: str = "fixed",
                 seed: int = 0) -> None:
        if mode not in ("fixed", "random"):
            raise ConfigError(f"VoiceExcerptDataset: mode must be 'fixed' or 'random', got "
                              f"{mode!r}")
        for name, val in (("frames", frames), ("hop", hop)):
            if isinstance(val, bool) or not isinstance(val, int | np.integer) or val < 1:
                raise ConfigError(f"VoiceExcerptDataset: {name} must be a positive integer, "
                                  f"got {val!r}")
        missing = [i for i in ids if i not in specs or i not in labels]
        if missing:
            raise DatasetError(f"VoiceExcerptDataset: no spectrogram or labels for clip(s) "
                               f"{missing[:10]}")
        self.clip_ids = [str(i) for i in ids]
        self.frames, self.hop, self.mode, self.seed = int(frames), int(hop), mode, int(seed)
        self.standardizer = standardizer
        self.epoch = 0
        self._specs = {i: specs[i] for i in self.clip_ids}
        self._frame_labels = {i: np.asarray(labels[i], dtype=bool) for i in self.clip_ids}
        # (clip index, k-th excerpt of the clip) per item; starts follow from the epoch's offset
        counts = []
        for cid in self.clip_ids:
            room = self._specs[cid].shape[0] - self.frames
            if mode == "random":
                room -= self.hop - 1
            counts.append(max(0, room // self.hop + 1) if room >= 0 else 0)
        self._rows = np.concatenate([np.stack([np.full(n, i), np.arange(n)], axis=1)
                                     for i, n in enumerate(counts)] or [np.zeros((0, 2))]
                                    ).astype(np.int64).reshape(-1, 2)

    def __len__(self) -> int:
        return len(self._rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the excerpts of ``epoch`` (only changes anything in ``random`` mode)."""
        self.epoch = int(epoch)

    def _offset(self, clip_id: str) -> int:
        if self.mode == "fixed" or self.hop == 1:
            return 0
        rng = np.random.default_rng(clip_seed("voice", self.seed, self.epoch, clip_id))
        return int(rng.integers(self.hop))

    def start(self, index: int) -> tuple[str, int]:
        """``(clip id, start frame)`` of item ``index`` in the current epoch."""
        ci, k = (int(v) for v in self._rows[index])
        cid = self.clip_ids[ci]
        return cid, self._offset(cid) + k * self.hop

    @property
    def ids(self) -> list[str]:
        """The excerpt ids (``<clip>_f<start>``) of the current epoch, in item order."""
        return [excerpt_id(*self.start(i)) for i in range(len(self))]

    def label(self, index: int) -> int:
        """The label of item ``index``: its central frame's (``start + frames // 2``)."""
        cid, s = self.start(index)
        return int(self._frame_labels[cid][s + self.frames // 2])

    def labels(self) -> np.ndarray:
        """Every item's label ``(N,)`` int64 (what ``label`` gives)."""
        return np.array([self.label(i) for i in range(len(self))], dtype=np.int64)

    def __getitem__(self, index: int) -> dict[str, Any]:
        cid, s = self.start(index)
        window = self._specs[cid][s:s + self.frames]
        x = self.standardizer.transform(window.astype(np.float32))
        return {"id": excerpt_id(cid, s),
                "x": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None],
                "targets": torch.zeros(0), "concepts": torch.zeros(0),
                "concept_mask": torch.tensor(False),
                "label": torch.tensor(self.label(index), dtype=torch.int64)}


@dataclass
class VoiceData:
    """A voice dataset ready for training and evaluation (made by :func:`prepare_voice`).

    Offers what the CLI reads of a ``PreparedData`` (``split``, ``standardizer``,
    ``dataset_for``, ``to_dict``, ``content_id``) plus the ground truth: :meth:`region`,
    :meth:`frame_labels`. It has no ``table`` of clip targets: its labels are per frame."""

    root: Path
    voice: VoiceDataset
    split: Split
    standardizer: Standardizer
    frontend: FrontEndConfig
    specs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    content_id: str
    split_path: Path | None = None
    frames: int = EXCERPT_FRAMES_VOICE
    hops: dict[str, int] = field(default_factory=lambda: dict(HOPS))
    kind: str = KIND
    feature_dtype: str = "float32"
    pack_path: Path | None = None

    def frame_labels(self, clip_id: str) -> np.ndarray:
        """The clip's ``(T,)`` bool frame labels."""
        if clip_id not in self.labels:
            raise DatasetError(f"clip {clip_id!r} is not in the voice dataset at {self.root}")
        return self.labels[clip_id]

    def excerpts(self, part: str, *, hop: int | None = None, mode: str = "fixed",
                 seed: int = 0) -> VoiceExcerptDataset:
        """The excerpts of one split part (``train``/``val``/``test``/``all``), every ``hop``
        frames (default :data:`HOPS`)."""
        step = self.hops.get(part, 1) if hop is None else hop
        return VoiceExcerptDataset(self.split.part(part), self.specs, self.labels,
                                   self.standardizer, frames=self.frames, hop=step, mode=mode,
                                   seed=seed)

    def dataset_for(self, model_input: Mapping[str, Any] | None, part: str, *,
                    mode: str = "fixed", seed: int = 0) -> VoiceExcerptDataset:
        """The excerpts a spectrogram model reads (a waveform model is refused: the task is
        defined on the front end's frames)."""
        kind = "spectrogram" if model_input is None else model_input.get("kind", "spectrogram")
        if kind != "spectrogram":
            raise ConfigError(f"the voice task gives 50-frame spectrogram excerpts; a model with "
                              f"input {kind!r} cannot read them")
        return self.excerpts(part, mode=mode, seed=seed)

    def region(self, item_id: str, which: str = "mask") -> np.ndarray:
        """The planted ground truth of an excerpt: ``(frames, 149)`` bool, the voice's bins
        (``mask``: within 30 dB of its loudest band; ``dominant``: also louder than everything
        else); all False where the excerpt holds no voice."""
        if which not in REGIONS:
            raise ConfigError(f"region must be one of {list(REGIONS)}, got {which!r}")
        cid, start = parse_excerpt_id(item_id)
        truth = self.voice.truth(cid)[which]
        return np.asarray(truth[start:start + self.frames], dtype=bool)

    def to_dict(self) -> dict[str, Any]:
        """What a run records of its data (``kind: voice`` tells later commands to rebuild the
        same excerpts)."""
        return {"kind": self.kind, "root": str(self.root), "content_id": self.content_id,
                "split_id": self.split.split_id,
                "split_path": None if self.split_path is None else str(self.split_path),
                "split_sizes": {p: len(self.split.part(p)) for p in ("train", "val", "test")},
                "standardizer": self.standardizer.to_dict(),
                "frontend": self.frontend.to_dict(), "frontend_key": self.frontend.key(),
                "excerpt_frames": self.frames, "hops": dict(self.hops),
                "label_rule": "the excerpt's central frame (start + frames // 2)",
                "voice_parameters": self.voice.settings.get("parameters"),
                "cache_dir": None, "pack": None, "feature_dtype": self.feature_dtype,
                "targets": [], "concepts": [], "classes": list(LABELS),
                "target_info": {"source": "voice", "units": "class labels"}}


def prepare_voice(root: str | Path, *, split_path: str | Path | None = None,
                  split_seed: int | None = None,
                  fractions: tuple[float, float, float] = SPLIT_FRACTIONS,
                  frontend: FrontEndConfig | None = None) -> VoiceData:
    """Read a voice dataset folder, compute every clip's spectrogram, split the clips
    (``split_path`` if it exists, else ``make_split(seed=split_seed or 0, fractions)``, saved
    there when given) and fit the standardiser on the training clips."""
    cfg = frontend if frontend is not None else FrontEndConfig()
    if cfg.key() != FrontEndConfig().key():
        raise ConfigError("the voice task's labels are defined on the default front end's "
                          "frames; another front end would misalign them")
    voice = load_voice_dataset(root)
    ids = voice.ids
    if split_path is not None and Path(split_path).exists():
        split = Split.load(split_path, valid_ids=ids)
    else:
        split = make_split(ids, seed=0 if split_seed is None else int(split_seed),
                           fractions=fractions)
        if split_path is not None:
            split.save(split_path)
    specs, labels, digests = {}, {}, {}
    for cid in ids:
        path = voice.audio_path(cid)
        try:
            audio, sr = sf.read(str(path), dtype="float32")
        except (sf.LibsndfileError, RuntimeError, OSError) as exc:
            raise DatasetError(f"{path}: cannot read the audio ({exc})") from exc
        if sr != cfg.sample_rate or audio.ndim != 1:
            raise DatasetError(f"{path}: expected mono {cfg.sample_rate} Hz audio, found "
                               f"{sr} Hz with shape {audio.shape}")
        specs[cid] = compute_spectrogram(audio, cfg)
        labels[cid] = voice.truth(cid)["labels"].astype(bool)
        if specs[cid].shape[0] != labels[cid].size:
            raise DatasetError(f"{path}: {specs[cid].shape[0]} frames but "
                               f"{labels[cid].size} frame labels in its truth file")
        digests[cid] = sha256_file(path)
    standardizer = Standardizer.fit(specs[c] for c in split.train)
    content = stable_hash({"audio": digests, "voice": voice.settings.get("parameters"),
                           "format": voice.settings.get("format_version")}, length=16)
    return VoiceData(root=Path(root).resolve(), voice=voice, split=split,
                     standardizer=standardizer, frontend=cfg, specs=specs, labels=labels,
                     content_id=content,
                     split_path=None if split_path is None else Path(split_path).resolve())


def detection_scores(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Error, recall (voiced excerpts found), specificity (unvoiced excerpts left alone), the
    voiced share and the majority-class error, as the singing-voice detector was reported."""
    p, y = np.asarray(pred).astype(int), np.asarray(labels).astype(int)
    if p.shape != y.shape or p.ndim != 1:
        raise ConfigError(f"pred and labels must be equal-length 1-D arrays, got {p.shape} and "
                          f"{y.shape}")
    pos, neg = y == 1, y == 0
    nan = float("nan")
    return {"n": int(y.size), "error": float((p != y).mean()) if y.size else nan,
            "recall": float((p[pos] == 1).mean()) if pos.any() else nan,
            "specificity": float((p[neg] == 0).mean()) if neg.any() else nan,
            "voiced_share": float(pos.mean()) if y.size else nan,
            "majority_error": float(min(pos.mean(), neg.mean())) if y.size else nan}
