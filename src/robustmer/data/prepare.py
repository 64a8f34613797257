"""``prepare_data``: table + split + cached spectrograms + standardiser, ready for training.

One call gives every later stage what it needs and records, in ``to_dict()``, which data it was:
the dataset root, the split id and file, the standardiser and the front-end settings.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from robustmer.audio import load_audio
from robustmer.audio.load import RESAMPLE_QUALITY
from robustmer.data.cache import FeatureCache, FeatureStats
from robustmer.data.manifest import MIN_SCORED, is_manifest, split_warning
from robustmer.data.soundtracks import load_dataset
from robustmer.data.split import Split, make_split
from robustmer.data.table import ClipTable
from robustmer.data.torchdata import ExcerptDataset, WaveExcerptDataset
from robustmer.data.voicedata import VoiceData, is_voice_dataset, prepare_voice
from robustmer.errors import ConfigError, DatasetError, DatasetWarning
from robustmer.features import FrontEndConfig, Standardizer
from robustmer.io import stable_hash, write_json


@dataclass
class PreparedData:
    """A loaded dataset with its split, spectrograms (in memory) and training standardiser.

    Made from an audio folder (``prepare_data``) or a feature pack (``pack_path`` set,
    ``robustmer.data.pack.prepare_pack``); a pack has no audio, so ``waveform`` refuses."""

    root: Path
    table: ClipTable
    split: Split
    standardizer: Standardizer
    frontend: FrontEndConfig
    specs: dict[str, np.ndarray]
    cache_dir: Path | None
    split_path: Path | None = None
    standardizer_path: Path | None = None
    feature_stats: FeatureStats | None = None
    content_id: str | None = None
    pack_path: Path | None = None
    feature_dtype: str = "float32"
    _waves: dict[int, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)

    @property
    def midlevel_root(self) -> Path | None:
        """Where the concept annotations came from (None if there were none)."""
        return self.table.midlevel_root

    def spec(self, clip_id: str) -> np.ndarray:
        """The clip's full (T, bands) float32 spectrogram (not standardised)."""
        try:
            return self.specs[clip_id]
        except KeyError:
            raise DatasetError(f"clip {clip_id!r} is not in the dataset at {self.root}") from None

    def require_audio(self, option: str = "the waveform domain") -> None:
        """Raise ``ConfigError`` naming ``option`` if this data has no audio (a feature pack)."""
        if self.pack_path is not None:
            raise ConfigError(f"{option} needs the audio; this data is the feature pack "
                              f"{self.pack_path} (spectrograms only). Use the spectrogram "
                              f"domain, or point the data to the audio folder the pack was made "
                              f"from")

    def waveform(self, clip_id: str) -> np.ndarray:
        """The clip's waveform as the front end sees it (``load_audio``: mono, 22 050 Hz)."""
        self.require_audio()
        path = self.table.audio_paths.get(clip_id)
        if path is None:
            raise DatasetError(f"clip {clip_id!r} is not in the dataset at {self.root}")
        return load_audio(path)

    def dataset(self, part: str, *, mode: str = "fixed", seed: int = 0) -> ExcerptDataset:
        """An ``ExcerptDataset`` of one split part (``train``/``val``/``test``/``all``)."""
        return ExcerptDataset(self.split.part(part), self.specs, self.table, self.standardizer,
                              mode=mode, seed=seed)

    def waves(self, part: str, sample_rate: int) -> dict[str, np.ndarray]:
        """The clips of one split part as the front end sees them (``load_audio``), resampled
        to ``sample_rate`` with soxr; decoded once per rate and kept in memory."""
        self.require_audio("a waveform model")
        store = self._waves.setdefault(int(sample_rate), {})
        for clip_id in self.split.part(part):
            if clip_id not in store:
                wave = self.waveform(clip_id)
                if int(sample_rate) != int(self.frontend.sample_rate):
                    wave = soxr.resample(wave, self.frontend.sample_rate, int(sample_rate),
                                         quality=RESAMPLE_QUALITY).astype(np.float32)
                store[clip_id] = wave
        return store

    def wave_dataset(self, part: str, *, sample_rate: int, seconds: float, mode: str = "fixed",
                     seed: int = 0) -> WaveExcerptDataset:
        """A ``WaveExcerptDataset`` of one split part: ``seconds``-long mono excerpts at
        ``sample_rate`` (the input of a model that owns its front end)."""
        if not seconds > 0:
            raise ConfigError(f"excerpt seconds must be > 0, found {seconds!r}")
        return WaveExcerptDataset(self.split.part(part), self.waves(part, sample_rate),
                                  self.table, samples=round(seconds * sample_rate), mode=mode,
                                  seed=seed)

    def dataset_for(self, model_input: Mapping[str, Any] | None, part: str, *,
                    mode: str = "fixed", seed: int = 0) -> ExcerptDataset | WaveExcerptDataset:
        """The dataset a model with this input contract reads: ``{"kind": "spectrogram"}``
        (or None: robustmer's standardised excerpts) or ``{"kind": "waveform",
        "sample_rate": SR, "seconds": S}`` (see ``robustmer.models.types``)."""
        kind = "spectrogram" if model_input is None else model_input.get("kind", "spectrogram")
        if kind == "spectrogram":
            return self.dataset(part, mode=mode, seed=seed)
        if kind != "waveform":
            raise ConfigError(f"model input kind must be spectrogram or waveform, found {kind!r}")
        assert model_input is not None
        return self.wave_dataset(part, sample_rate=int(model_input["sample_rate"]),
                                 seconds=float(model_input["seconds"]), mode=mode, seed=seed)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able description of the data, recorded in checkpoints and results."""
        return {
            "root": str(self.root),
            "content_id": self.content_id,
            "midlevel_root": None if self.midlevel_root is None else str(self.midlevel_root),
            "split_id": self.split.split_id,
            "split_path": None if self.split_path is None else str(self.split_path),
            "split_sizes": {p: len(self.split.part(p)) for p in ("train", "val", "test")},
            "standardizer": self.standardizer.to_dict(),
            "frontend": self.frontend.to_dict(),
            "frontend_key": self.frontend.key(),
            "cache_dir": None if self.cache_dir is None else str(self.cache_dir),
            "pack": None if self.pack_path is None else str(self.pack_path),
            "feature_dtype": self.feature_dtype,
            **self.table.describe(),
        }


def load_or_make_split(table: ClipTable, split_path: str | Path | None, seed: int) -> Split:
    """Load the split at ``split_path`` if it exists (checked against the table), else take the
    manifest's split column, else make one with ``seed``; write it there when a path was given."""
    if split_path is not None and Path(split_path).exists():
        return Split.load(split_path, valid_ids=table.ids)
    if table.split_column is not None:
        split = Split(**{part: tuple(i for i in table.ids if table.split_column[i] == part)
                         for part in ("train", "val", "test")})
    else:
        split = make_split(table.ids, seed=seed)
    if split_path is not None:
        split.save(split_path)
    return split


def prepare_data(root: str | Path, *, cache_dir: str | Path | None = None,
                 split_path: str | Path | None = None, split_seed: int | None = None,
                 midlevel_root: str | Path | None = None,
                 frontend: FrontEndConfig | None = None,
                 progress: bool | None = None) -> PreparedData | VoiceData:
    """Load the dataset, its split, all spectrograms (cached) and the training-split standardiser.

    The standardiser is also written as JSON beside the cache
    (``CACHE/<frontend key>/standardizer-<hash>.json``, named by the training clips' audio).
    ``root`` may also be a feature pack (a file): see ``robustmer.data.pack.prepare_pack``; its
    split must then be the one in ``split_path`` (if it exists) or the seeded ``split_seed`` (if
    given). Without a split file, an audio folder gets the split of ``split_seed`` (default 0).
    A voice dataset folder (it holds ``voice.json``) gives a ``VoiceData`` instead
    (``robustmer.data.voicedata.prepare_voice``: its excerpts, frame labels and split).
    """
    if is_voice_dataset(root):  # the voice task: 50-frame excerpts with frame labels
        return prepare_voice(root, split_path=split_path, split_seed=split_seed,
                             frontend=frontend)
    if Path(root).is_file() and not is_manifest(root):
        from robustmer.data.pack import prepare_pack  # pack.py builds on this module

        return prepare_pack(root, split_path=split_path, split_seed=split_seed,
                            frontend=frontend, midlevel_root=midlevel_root)
    split_seed = 0 if split_seed is None else split_seed
    frontend = frontend if frontend is not None else FrontEndConfig()
    table = load_dataset(root, midlevel_root=midlevel_root)
    split = load_or_make_split(table, split_path, split_seed)
    warn_small_split(split, root)
    cache = FeatureCache(cache_dir, frontend)
    specs, stats = cache.featurize(table.audio_paths, progress=progress)
    # Fit on the TRAINING split only. The reference implementation standardised with statistics
    # of all clips, test clips included, which leaks test information into the model input.
    standardizer = Standardizer.fit(specs[i] for i in split.train)
    train_audio = sorted(cache.digests[i] for i in split.train)
    std_path = cache.directory / f"standardizer-{stable_hash(train_audio)}.json"
    write_json(std_path, {**standardizer.to_dict(), "split_id": split.split_id,
                          "train_clips": len(split.train), "frontend": frontend.to_dict()})
    return PreparedData(root=Path(root).resolve(), table=table, split=split,
                        standardizer=standardizer, frontend=frontend, specs=specs,
                        cache_dir=cache.root.resolve(),
                        split_path=None if split_path is None else Path(split_path).resolve(),
                        standardizer_path=std_path, feature_stats=stats,
                        content_id=content_id(table, cache.digests))


def warn_small_split(split: Split, where: str | Path) -> None:
    """Warn (``DatasetWarning``) when the validation or test split is too small to score."""
    for part in ("val", "test"):
        n = len(split.part(part))
        if n < MIN_SCORED:
            warnings.warn(str(split_warning(Path(where), part, n)), DatasetWarning,
                          stacklevel=3)


def content_id(table: ClipTable, digests: dict[str, str]) -> str:
    """A short id of the dataset's content: every clip's audio SHA-256 and its annotations.

    Recorded with every run, so a run pointed at other data (``--data``) is refused even when the
    folder has the same name, and a moved dataset is still recognised as the same."""
    # "emotions": the key the targets have always been hashed under, so that the content id of a
    # Soundtracks-layout dataset (and every run recorded with it) stays what it was.
    notes: dict[str, Any] = {
        "emotions": table.targets.round(6).to_dict(orient="index"),
        "concepts": table.concepts.round(6).fillna(-1.0).to_dict(orient="index"),
        "labels": {str(k): None if v is None else str(v) for k, v in table.labels.items()}}
    if table.target_info.get("source", "soundtracks") != "soundtracks":
        notes["target_info"] = table.target_info
    if table.split_column is not None:
        notes["split_column"] = table.split_column
    return stable_hash({"audio": {i: digests[i] for i in sorted(digests)}, **notes}, length=16)
