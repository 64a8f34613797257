"""``prepare_data``: any dataset -> :class:`PreparedData`, ready for training.

One call gives every later stage what it needs and records, in ``to_dict()``, which data it was:
the dataset root, the split id and file, the standardiser and the front-end settings. It
dispatches on what ``root`` is: a voice dataset folder (it holds ``voice.json``) goes to
:func:`robustmer.data.voicedata.prepare_voice`, a feature pack (a file that is not a manifest)
to :func:`robustmer.data.pack.prepare_pack`, anything else (a manifest, a ``dataset.yaml``, a folder
holding one, or a Soundtracks folder) to :func:`robustmer.data.folder.prepare_folder`. Both build
on :mod:`robustmer.data.prepared`, whose names are re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from robustmer.data.folder import prepare_folder
from robustmer.data.manifest import is_manifest
from robustmer.data.pack import prepare_pack
from robustmer.data.prepared import PreparedData, content_id, load_or_make_split, warn_small_split
from robustmer.data.voicedata import VoiceData, is_voice_dataset, prepare_voice
from robustmer.features import FrontEndConfig

__all__ = ["PreparedData", "content_id", "load_or_make_split", "prepare_data",
           "warn_small_split"]


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

    Examples:
        >>> import tempfile
        >>> from robustmer.data import prepare_data, synthesize
        >>> tmp = tempfile.mkdtemp()
        >>> info = synthesize(tmp + "/syn", clips=10, duration=10.5, audio_format="wav")
        >>> data = prepare_data(info.root, cache_dir=tmp + "/cache", progress=False)
        >>> [len(data.split.part(p)) for p in ("train", "val", "test")]
        [8, 1, 1]
        >>> item = data.dataset("train")[0]
        >>> tuple(item["x"].shape), tuple(item["targets"].shape), data.table.target_names[:2]
        ((1, 313, 149), (8,), ('valence', 'energy'))
    """
    if is_voice_dataset(root):  # the voice task: 50-frame excerpts with frame labels
        return prepare_voice(root, split_path=split_path, split_seed=split_seed,
                             frontend=frontend)
    if Path(root).is_file() and not is_manifest(root):
        return prepare_pack(root, split_path=split_path, split_seed=split_seed,
                            frontend=frontend, midlevel_root=midlevel_root)
    return prepare_folder(root, cache_dir=cache_dir, split_path=split_path,
                          split_seed=0 if split_seed is None else split_seed,
                          midlevel_root=midlevel_root, frontend=frontend, progress=progress)
