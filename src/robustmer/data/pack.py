"""Feature packs: a dataset's spectrograms, annotations and split in one file, without the audio.

A pack is one safetensors file: every clip's full (T, bands) spectrogram as a tensor named
``spec/<clip id>`` (float32, or float16 to halve the size), and a JSON header in the safetensors
metadata (key ``robustmer_pack``) holding the front-end config and its key, each clip's audio
SHA-256 and spectrogram SHA-256, the clip table (emotions, concepts, labels), the split and the
dataset's content id. safetensors is a plain-bytes format (no pickle), so a pack from anyone is
safe to open.

``prepare_pack`` turns a pack into the same ``PreparedData`` as ``prepare_data`` does with the
audio folder (same table, split, spectrograms, training-split standardiser and, for float32,
content id), so training and spectrogram-domain attacks run from it unchanged. Everything is
checked on load: the header and every array against its recorded hash (a truncated or corrupted
file is refused, naming the clip), the front-end config and the split against the ones asked for.

The pack code is written here rather than taken from a library because no library knows this
dataset's table, split and front-end; the storage itself is safetensors.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from robustmer.data.cache import FeatureCache
from robustmer.data.prepared import PreparedData, content_id, load_or_make_split
from robustmer.data.soundtracks import load_dataset, soundtracks_spec
from robustmer.data.split import PARTS, Split, make_split
from robustmer.data.table import ClipTable
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig, Standardizer
from robustmer.io import atomic_open, stable_hash

PACK_FORMAT = "robustmer-feature-pack"
PACK_VERSION = 1
HEADER_KEY = "robustmer_pack"
"""The safetensors metadata key that holds the pack's JSON header."""
DTYPES: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float16": np.float16}
TENSOR_PREFIX = "spec/"


def pack_content_id(audio_content_id: str, dtype: str) -> str:
    """The content id of a pack's data.

    A float32 pack holds the very spectrograms the audio gives, so it has the audio folder's
    content id: a run trained on either is evaluated or attacked from the other. A float16 pack
    holds rounded spectrograms (relative error up to 2**-11, about 0.002 on the log magnitudes,
    comparable to the attack budget eps = 0.001), so it gets its own id and the two are never
    mixed silently."""
    if dtype == "float32":
        return audio_content_id
    return stable_hash({"audio_content_id": audio_content_id, "features": dtype}, length=16)


def is_pack(path: str | Path) -> bool:
    """Whether ``path`` is a file (a pack) rather than a dataset folder."""
    return Path(path).is_file()


def _spec_sha256(spec: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(spec).tobytes()).hexdigest()


def _table_json(table: ClipTable) -> dict[str, Any]:
    def row(values: np.ndarray) -> list[float | None]:
        return [None if math.isnan(v) else float(v) for v in values]

    targets = table.targets.loc[table.ids].to_numpy(np.float64)
    concepts = table.concepts.loc[table.ids].to_numpy(np.float64)
    labels = {i: None if table.labels.get(i) is None else str(table.labels.get(i))
              for i in table.ids}
    # "emotion_columns" / "emotions": the keys of version-1 packs, whatever the targets are
    return {"emotion_columns": list(table.target_names),
            "concept_columns": list(table.concept_names),
            "emotions": {i: row(e) for i, e in zip(table.ids, targets, strict=True)},
            "concepts": {i: row(c) for i, c in zip(table.ids, concepts, strict=True)},
            "labels": labels, "classes": list(table.classes),
            "target_info": dict(table.target_info), "split_column": table.split_column}


def _table_from_json(d: dict[str, Any], ids: list[str], path: Path) -> ClipTable:
    targets, concepts = d.get("emotion_columns"), d.get("concept_columns")
    if not isinstance(targets, list) or not isinstance(concepts, list):
        raise DatasetError(f"{path}: the pack's table names no target / concept columns")
    index = pd.Index(ids, name="id")

    def frame(key: str, columns: list[str]) -> pd.DataFrame:
        rows = d[key]
        values = [[np.nan if v is None else float(v) for v in rows[i]] for i in ids]
        return pd.DataFrame(np.asarray(values, dtype=np.float64).reshape(len(ids), len(columns)),
                            index=index, columns=columns)

    labels = pd.Series([d["labels"][i] for i in ids], index=index, name="label", dtype=object)
    # packs written before names came from the data hold the Soundtracks layout
    info = d.get("target_info") or soundtracks_spec(path).info()
    return ClipTable(root=path, ids=ids, targets=frame("emotions", list(targets)),
                     concepts=frame("concepts", list(concepts)), labels=labels, audio_paths={},
                     midlevel_root=None, classes=list(d.get("classes") or []),
                     target_info=dict(info), split_column=d.get("split_column"))


@dataclass
class PackInfo:
    """What ``write_pack`` wrote (for the CLI summary and the measurements in docs/packs.md)."""

    path: Path
    clips: int
    dtype: str
    bytes: int
    content_id: str
    split_id: str
    frontend_key: str
    seconds: float = 0.0


def write_pack(path: str | Path, *, table: ClipTable, specs: dict[str, np.ndarray],
               audio_sha256: dict[str, str], frontend: FrontEndConfig, split: Split,
               split_origin: dict[str, Any], dtype: str = "float32") -> PackInfo:
    """Write a pack of ``specs`` (every clip of ``table``) atomically; see the module docstring.

    ``split_origin`` says where the split came from (``{"seed": 0}`` or ``{"file": PATH}``).
    """
    from safetensors.numpy import save

    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {list(DTYPES)}, found {dtype!r}")
    start = time.perf_counter()
    path = Path(path)
    missing = [i for i in table.ids if i not in specs or i not in audio_sha256]
    if missing:
        raise DatasetError(f"write_pack: no spectrogram or audio hash for clip(s) {missing[:10]}")
    table.check_ids(split.part("all"), "write_pack: split")
    tensors: dict[str, np.ndarray] = {}
    for clip in table.ids:
        spec = np.ascontiguousarray(specs[clip].astype(DTYPES[dtype]))
        if not np.all(np.isfinite(spec)):
            raise DatasetError(f"write_pack: clip {clip!r} has values that are not finite in "
                               f"{dtype}")
        tensors[TENSOR_PREFIX + clip] = spec
    audio_id = content_id(table, audio_sha256)
    header: dict[str, Any] = {
        "format": PACK_FORMAT, "version": PACK_VERSION, "dtype": dtype,
        "frontend": frontend.to_dict(), "frontend_key": frontend.key(),
        "content_id": pack_content_id(audio_id, dtype), "audio_content_id": audio_id,
        "clips": list(table.ids),
        "audio_sha256": {i: audio_sha256[i] for i in table.ids},
        "spec_sha256": {i: _spec_sha256(tensors[TENSOR_PREFIX + i]) for i in table.ids},
        "table": _table_json(table),
        "split": split.to_dict(), "split_origin": split_origin,
        "source": {"root": str(table.root),
                   "midlevel_root": None if table.midlevel_root is None
                   else str(table.midlevel_root)},
    }
    blob = save(tensors, metadata={HEADER_KEY: json.dumps(header, sort_keys=True)})
    with atomic_open(path, "wb") as fh:
        fh.write(blob)
    return PackInfo(path=path, clips=len(table.ids), dtype=dtype, bytes=len(blob),
                    content_id=header["content_id"], split_id=split.split_id,
                    frontend_key=frontend.key(), seconds=time.perf_counter() - start)


def make_pack(root: str | Path, pack: str | Path, *, dtype: str = "float32",
              cache_dir: str | Path | None = None, split_path: str | Path | None = None,
              split_seed: int = 0, midlevel_root: str | Path | None = None,
              frontend: FrontEndConfig | None = None,
              progress: bool | None = None) -> PackInfo:
    """Featurise (cached) the dataset at ``root`` and write its pack to ``pack``.

    The split is the one in ``split_path`` (checked against the dataset) or, without it, the
    manifest's split column, else the seeded split ``split_seed``: the split ``prepare_data``
    and a study would make."""
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {list(DTYPES)}, found {dtype!r}")
    start = time.perf_counter()
    frontend = frontend if frontend is not None else FrontEndConfig()
    table = load_dataset(root, midlevel_root=midlevel_root)
    if split_path is not None:
        if not Path(split_path).is_file():
            raise ConfigError(f"--split {split_path}: split file not found")
        split = load_or_make_split(table, split_path, split_seed)
        origin: dict[str, Any] = {"file": str(Path(split_path).resolve())}
    elif table.split_column is not None:
        split = load_or_make_split(table, None, split_seed)
        origin = {"column": "split"}
    else:
        split = make_split(table.ids, seed=split_seed)
        origin = {"seed": int(split_seed)}
    cache = FeatureCache(cache_dir, frontend)
    specs, _ = cache.featurize(table.audio_paths, progress=progress)
    info = write_pack(pack, table=table, specs=specs, audio_sha256=cache.digests,
                      frontend=frontend, split=split, split_origin=origin, dtype=dtype)
    info.seconds = time.perf_counter() - start
    return info


@dataclass
class FeaturePack:
    """A pack read and verified by ``read_pack``: header, table, split and float32 spectrograms."""

    path: Path
    header: dict[str, Any]
    table: ClipTable
    split: Split
    frontend: FrontEndConfig
    specs: dict[str, np.ndarray] = field(repr=False)

    @property
    def dtype(self) -> str:
        """``float32`` or ``float16``: how the spectrograms are stored in the file."""
        return str(self.header["dtype"])

    @property
    def content_id(self) -> str:
        """The content id of the pack's data (see ``pack_content_id``)."""
        return str(self.header["content_id"])


def _corrupt(path: Path, what: str) -> DatasetError:
    return DatasetError(f"{path}: {what}; the feature pack is truncated or corrupted (copy it "
                        f"again, or rebuild it with `robustmer data features ROOT --pack FILE`)")


def _read_header(path: Path) -> tuple[Any, dict[str, Any]]:
    from safetensors import safe_open

    if not path.is_file():
        raise ConfigError(f"feature pack not found: {path}")
    try:
        handle = safe_open(str(path), framework="numpy")
    except Exception as err:  # safetensors raises its own error types (and OSError)
        raise _corrupt(path, f"cannot be read as safetensors ({type(err).__name__}: {err})") \
            from err
    meta = handle.metadata() or {}  # type: ignore[no-untyped-call]
    if HEADER_KEY not in meta:
        raise DatasetError(f"{path}: a safetensors file but not a robustmer feature pack (no "
                           f"{HEADER_KEY!r} header)")
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as err:
        raise _corrupt(path, f"its header is not valid JSON ({err})") from err
    if not isinstance(header, dict) or header.get("format") != PACK_FORMAT:
        raise DatasetError(f"{path}: header format {header.get('format')!r} is not "
                           f"{PACK_FORMAT!r}")
    if header.get("version") != PACK_VERSION:
        raise DatasetError(f"{path}: pack version {header.get('version')!r}; this robustmer "
                           f"reads version {PACK_VERSION}")
    if header.get("dtype") not in DTYPES:
        raise _corrupt(path, f"header dtype {header.get('dtype')!r} is not one of "
                             f"{list(DTYPES)}")
    return handle, header


def read_pack(path: str | Path) -> FeaturePack:
    """Read a pack and verify it whole: every array against its recorded SHA-256, shape and
    dtype, the table against the recorded content id and the split against the clips.

    Raises ``DatasetError`` naming the file (and the clip) when it is truncated or corrupted,
    ``ConfigError`` when it does not exist."""
    path = Path(path)
    handle, header = _read_header(path)
    try:
        clips = [str(c) for c in header["clips"]]
        table = _table_from_json(header["table"], clips, path)
        frontend = FrontEndConfig.from_dict(header["frontend"])
        split = Split(**{p: tuple(header["split"][p]) for p in PARTS})
        audio_sha = {c: str(header["audio_sha256"][c]) for c in clips}
        spec_sha = {c: str(header["spec_sha256"][c]) for c in clips}
    except (KeyError, TypeError, ValueError, ConfigError) as err:
        raise _corrupt(path, f"its header lacks or mangles an entry ({type(err).__name__}: "
                             f"{err})") from err
    if frontend.key() != header.get("frontend_key"):
        raise _corrupt(path, f"header frontend_key {header.get('frontend_key')!r} does not match "
                             f"its frontend settings (key {frontend.key()!r})")
    if header["split"].get("split_id") != split.split_id:
        raise _corrupt(path, f"header split_id {header['split'].get('split_id')!r} does not "
                             f"match its split lists ({split.split_id!r})")
    table.check_ids(split.part("all"), f"{path}: split")
    names = set(handle.keys())
    expected = {TENSOR_PREFIX + c for c in clips}
    if names != expected:
        extra, lacking = sorted(names - expected), sorted(expected - names)
        raise _corrupt(path, f"its arrays do not match its clip list (missing {lacking[:5]}, "
                             f"unexpected {extra[:5]})")
    want = DTYPES[header["dtype"]]
    specs: dict[str, np.ndarray] = {}
    for clip in clips:
        try:
            arr = handle.get_tensor(TENSOR_PREFIX + clip)
        except Exception as err:  # safetensors' own error types
            raise _corrupt(path, f"clip {clip!r} cannot be read ({err})") from err
        if arr.dtype != want or arr.ndim != 2:
            raise _corrupt(path, f"clip {clip!r} is {arr.dtype} with shape {arr.shape}, expected "
                                 f"2-D {header['dtype']}")
        if _spec_sha256(arr) != spec_sha[clip]:
            raise _corrupt(path, f"clip {clip!r}: its spectrogram does not match its recorded "
                                 f"SHA-256")
        specs[clip] = arr.astype(np.float32)  # float16 -> float32 is exact
    audio_id = content_id(table, audio_sha)
    if audio_id != header.get("audio_content_id") or pack_content_id(
            audio_id, header["dtype"]) != header.get("content_id"):
        raise _corrupt(path, f"its table and audio hashes give content id {audio_id!r}, the "
                             f"header records {header.get('audio_content_id')!r}")
    return FeaturePack(path=path, header=header, table=table, split=split, frontend=frontend,
                       specs=specs)


def _check_split(pack: FeaturePack, split_path: str | Path | None,
                 split_seed: int | None) -> None:
    """Refuse a pack whose split is not the one asked for (a split file, or a seed)."""
    origin = pack.header.get("split_origin", {})
    if split_path is not None and Path(split_path).exists():
        asked = Split.load(split_path, valid_ids=pack.table.ids)
        source = f"the split file {split_path}"
    elif pack.table.split_column is not None:
        asked = load_or_make_split(pack.table, None, 0)
        source = "the manifest's split column"
    elif split_seed is not None:
        asked = make_split(pack.table.ids, seed=split_seed)
        source = f"split seed {split_seed}"
    else:
        return
    if asked.split_id != pack.split.split_id:
        sizes = {p: len(pack.split.part(p)) for p in PARTS}
        raise ConfigError(
            f"{pack.path}: the feature pack holds another split than the one asked for: "
            f"split_id {pack.split.split_id!r} in the pack (made from {origin}, sizes {sizes}) "
            f"against {asked.split_id!r} from {source}; make the pack with that split "
            f"(`robustmer data features ROOT --pack FILE --split SPLIT`) or use the pack's split")


def prepare_pack(path: str | Path, *, split_path: str | Path | None = None,
                 split_seed: int | None = None, frontend: FrontEndConfig | None = None,
                 midlevel_root: str | Path | None = None) -> PreparedData:
    """``prepare_data`` for a feature pack: the same ``PreparedData``, without the audio.

    The pack's front-end config must be ``frontend`` (default: ``FrontEndConfig()``) and its
    split the one in ``split_path`` if that file exists (else it is written there), or the
    seeded split ``split_seed`` if given; the standardiser is fitted on the training split only,
    as with the audio. ``waveform()`` of the result raises ``ConfigError``: there is no audio."""
    path = Path(path)
    if midlevel_root is not None:
        raise ConfigError(f"a mid-level folder ({midlevel_root}) was given with the feature pack "
                          f"{path}; the pack holds the concept ratings it was made with")
    asked = frontend if frontend is not None else FrontEndConfig()
    pack = read_pack(path)
    if pack.frontend.key() != asked.key():
        diff = {k: (v, asked.to_dict()[k]) for k, v in pack.frontend.to_dict().items()
                if asked.to_dict()[k] != v}
        shown = "; ".join(f"{k}: pack {a!r}, asked {b!r}" for k, (a, b) in diff.items())
        raise ConfigError(f"{path}: the feature pack was made with another front-end config "
                          f"(frontend_key {pack.frontend.key()!r}, asked {asked.key()!r}; "
                          f"{shown})")
    _check_split(pack, split_path, split_seed)
    if split_path is not None and not Path(split_path).exists():
        pack.split.save(split_path)
    standardizer = Standardizer.fit(pack.specs[i] for i in pack.split.train)
    return PreparedData(root=path.resolve(), table=pack.table, split=pack.split,
                        standardizer=standardizer, frontend=pack.frontend, specs=pack.specs,
                        cache_dir=None,
                        split_path=None if split_path is None else Path(split_path).resolve(),
                        content_id=pack.content_id, pack_path=path.resolve(),
                        feature_dtype=pack.dtype)
