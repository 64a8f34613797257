"""Feature-pack size and write / load time, float32 and float16, against the audio path.

For a dataset folder (the real Soundtracks: ``../shared/data/soundtracks``) and a feature cache
that already holds its spectrograms (run ``robustmer data features ROOT --cache CACHE`` once),
measures, per dtype:

- ``make_pack_s``: ``make_pack`` end to end (read the table, SHA-256 every audio file, read the
  cached spectrograms, write the pack), what ``robustmer data features --pack`` adds to a run;
- ``write_pack_s``: ``write_pack`` alone (conversion, hashes, safetensors bytes, atomic write);
- ``load_s``: ``prepare_pack`` (read and verify every array, fit the standardiser): what a
  machine without the audio pays before training;
- ``bytes``: the pack's size on disk;

and, for comparison, ``prepare_data`` of the audio folder from the warm cache
(``audio_warm_cache_load_s``). Times are the fastest of ``--rounds`` (the machine is shared).
Writes benchmarks/results/pack.json.

    python benchmarks/bench_pack.py ROOT --cache CACHE [--rounds 3] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from robustmer import io
from robustmer.data import FeatureCache, load_dataset, prepare_data
from robustmer.data.pack import make_pack, prepare_pack, write_pack
from robustmer.data.split import make_split
from robustmer.features import FrontEndConfig

OUT = Path(__file__).resolve().parent / "results" / "pack.json"


def _best(fn: Any, rounds: int) -> tuple[float, Any]:
    best, value = float("inf"), None
    for _ in range(rounds):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-pack-"))

    audio_s, audio = _best(lambda: prepare_data(args.root, cache_dir=args.cache,
                                                progress=False), args.rounds)
    if audio.feature_stats is not None and audio.feature_stats.computed:
        raise SystemExit(f"the cache {args.cache} was cold ({audio.feature_stats.computed} "
                         "clips computed); run again now that it is warm")
    table = load_dataset(args.root)
    cache = FeatureCache(args.cache)
    specs, _ = cache.featurize(table.audio_paths, progress=False)
    split = make_split(table.ids, seed=0)
    result: dict[str, Any] = {
        "root": str(args.root), "clips": len(table.ids),
        "frames": int(sum(s.shape[0] for s in specs.values())),
        "audio_bytes": int(sum(Path(p).stat().st_size for p in table.audio_paths.values())),
        "audio_warm_cache_load_s": audio_s, "rounds": args.rounds, "dtypes": {},
    }
    for dtype in ("float32", "float16"):
        path = work / f"soundtracks-{dtype}.pack"
        make_s, _ = _best(lambda p=path, d=dtype: make_pack(
            args.root, p, dtype=d, cache_dir=args.cache, progress=False), args.rounds)
        write_s, _ = _best(lambda p=path, d=dtype: write_pack(
            p, table=table, specs=specs, audio_sha256=cache.digests, frontend=FrontEndConfig(),
            split=split, split_origin={"seed": 0}, dtype=d), args.rounds)
        load_s, data = _best(lambda p=path: prepare_pack(p), args.rounds)
        result["dtypes"][dtype] = {
            "bytes": path.stat().st_size, "make_pack_s": make_s, "write_pack_s": write_s,
            "load_s": load_s, "content_id": data.content_id,
            "same_content_id_as_audio": data.content_id == audio.content_id,
            "standardizer": data.standardizer.to_dict(), "split_id": data.split.split_id}
        print(f"{dtype}: {path.stat().st_size / 2**20:.1f} MiB, make_pack {make_s:.2f} s, "
              f"write_pack {write_s:.2f} s, load {load_s:.2f} s")
    print(f"audio folder ({result['audio_bytes'] / 2**20:.1f} MiB of audio) from the warm "
          f"cache: {audio_s:.2f} s")
    result["audio_standardizer"] = audio.standardizer.to_dict()
    result["audio_content_id"] = audio.content_id
    result["meta"] = io.run_meta()
    io.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
