"""``prepare_folder``: a dataset of audio files (a manifest or a Soundtracks folder) -> table +
split + cached spectrograms + training standardiser, as :class:`PreparedData`.
"""

from __future__ import annotations

from pathlib import Path

from robustmer.data.cache import FeatureCache
from robustmer.data.prepared import (
    PreparedData,
    content_id,
    load_or_make_split,
    warn_small_split,
)
from robustmer.data.soundtracks import load_dataset
from robustmer.features import FrontEndConfig, Standardizer
from robustmer.io import stable_hash, write_json


def prepare_folder(root: str | Path, *, cache_dir: str | Path | None = None,
                   split_path: str | Path | None = None, split_seed: int = 0,
                   midlevel_root: str | Path | None = None,
                   frontend: FrontEndConfig | None = None,
                   progress: bool | None = None) -> PreparedData:
    """Load the dataset at ``root``, its split (``split_path`` if that file exists, else the
    manifest's split column, else the seeded ``split_seed``), all spectrograms (cached) and the
    training-split standardiser, which is also written as JSON beside the cache
    (``CACHE/<frontend key>/standardizer-<hash>.json``, named by the training clips' audio)."""
    frontend = frontend if frontend is not None else FrontEndConfig()
    table = load_dataset(root, midlevel_root=midlevel_root)
    split = load_or_make_split(table, split_path, split_seed)
    warn_small_split(split, root, stacklevel=4)  # the warning names prepare_data's caller
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

