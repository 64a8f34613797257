"""On-disk cache of spectrograms: one ``.npy`` per clip, keyed by audio content and front end.

Layout: ``CACHE_DIR/<frontend.key()>/<clip_id>-<sha256 of the audio file>.npy``. A changed audio
file has a new SHA-256, so its old entry is stale: it is recomputed and the old file removed.
Writes are atomic, so concurrent runs and killed runs never leave a half-written entry.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from robustmer.audio import load_audio
from robustmer.features import FrontEndConfig, compute_spectrogram
from robustmer.io import atomic_path, sha256_file

CACHE_ENV = "ROBUSTMER_CACHE"
PROGRESS_MIN_CLIPS = 20
"""Show a progress bar when featurising at least this many clips."""


def default_cache_dir() -> Path:
    """``$ROBUSTMER_CACHE`` if set, else ``~/.cache/robustmer``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "robustmer"


@dataclass
class FeatureStats:
    """What one ``FeatureCache.featurize`` call did (for the CLI summary and benchmarks)."""

    clips: int = 0
    computed: int = 0
    cached: int = 0
    seconds: float = 0.0


class FeatureCache:
    """Spectrograms of audio files for one front-end configuration, cached under ``directory``."""

    def __init__(self, cache_dir: str | Path | None = None,
                 frontend: FrontEndConfig | None = None) -> None:
        self.frontend = frontend if frontend is not None else FrontEndConfig()
        self.root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.directory = self.root / self.frontend.key()
        self.digests: dict[str, str] = {}
        """SHA-256 of the audio of every clip seen so far (what the entries are keyed by)."""

    def path_for(self, clip_id: str, digest: str) -> Path:
        """Cache file of a clip whose audio has SHA-256 ``digest``."""
        return self.directory / f"{clip_id}-{digest}.npy"

    def get(self, clip_id: str, audio_path: str | Path) -> tuple[np.ndarray, bool]:
        """The (T, bands) float32 spectrogram of ``audio_path`` and whether it came from the cache.

        Computes it with ``load_audio`` + ``compute_spectrogram`` on a miss (or an unreadable
        entry) and stores it atomically, removing entries of older versions of the audio.
        """
        digest = sha256_file(audio_path)
        self.digests[clip_id] = digest
        path = self.path_for(clip_id, digest)
        if path.is_file():
            try:
                spec = np.load(path, allow_pickle=False)
            except (OSError, ValueError):
                spec = None  # truncated or foreign file: recompute below
            if spec is not None and spec.ndim == 2 and spec.dtype == np.float32:
                return spec, True
        spec = compute_spectrogram(load_audio(audio_path), self.frontend).astype(np.float32)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, spec, allow_pickle=False)
        for stale in self.directory.glob(f"{clip_id}-*.npy"):
            if stale != path and stale.stem.rsplit("-", 1)[0] == clip_id:
                stale.unlink(missing_ok=True)
        return spec, False

    def featurize(self, audio_paths: Mapping[str, str | Path], *,
                  progress: bool | None = None) -> tuple[dict[str, np.ndarray], FeatureStats]:
        """Spectrograms of many clips (cached); a tqdm bar when there are many (or if asked)."""
        stats = FeatureStats(clips=len(audio_paths))
        show = len(audio_paths) >= PROGRESS_MIN_CLIPS if progress is None else progress
        start = time.perf_counter()
        specs: dict[str, np.ndarray] = {}
        for clip_id, path in tqdm(audio_paths.items(), total=len(audio_paths), disable=not show,
                                  desc="features", unit="clip"):
            specs[clip_id], hit = self.get(clip_id, path)
            stats.cached += int(hit)
            stats.computed += int(not hit)
        stats.seconds = time.perf_counter() - start
        return specs, stats
