"""Soundtracks / Mid-level readers, load_dataset and splits: formats, joins and every bad input."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from robustmer import CONCEPTS, EMOTIONS
from robustmer.data import (
    MidLevel,
    Split,
    check_dataset,
    load_dataset,
    make_split,
    normalise_clip_id,
)
from robustmer.errors import ConfigError, DatasetError

SR = 22050
LABELS = ("HAPPY", "SAD", "FEAR")


# ----------------------------------------------------------------------------- fixture writers
def write_clip(path: Path, seconds: float = 10.5, seed: int = 0, tone: float | None = None) -> None:
    """A short 22 050 Hz WAV: noise (default) or a pure tone."""
    n = int(seconds * SR)
    if tone is None:
        x = np.random.default_rng(seed).standard_normal(n) * 0.1
    else:
        x = 0.5 * np.sin(2 * np.pi * tone * np.arange(n) / SR)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, x.astype(np.float32), SR, subtype="PCM_16")


def ratings_rows(n: int, seed: int = 0) -> list[list[str]]:
    """Rating rows ``number, 8 ratings in [1, 9], TARGET`` for clips 001..n."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(1, n + 1):
        values = rng.uniform(1, 9, len(EMOTIONS))
        rows.append([f"{k:03d}", *(f"{v:.2f}" for v in values), LABELS[k % len(LABELS)]])
    return rows


def write_ratings(root: Path, rows: Sequence[Sequence[str]],
                  header: Sequence[str] = ("number", *EMOTIONS, "TARGET")) -> Path:
    """``mean_ratings_set1.csv`` in the published encoding (UTF-8 with a byte-order mark)."""
    path = root / "mean_ratings_set1.csv"
    text = "\n".join(",".join(r) for r in [list(header), *rows]) + "\n"
    path.write_text(text, encoding="utf-8-sig")
    return path


def write_dataset(root: Path, n: int = 4, seconds: Sequence[float] | float = 10.5,
                  seed: int = 0) -> Path:
    """A tiny Soundtracks-format dataset: n noise clips (tone for the last) + ratings."""
    lengths = [seconds] * n if isinstance(seconds, float | int) else list(seconds)
    for k in range(1, n + 1):
        tone = 440.0 if k == n else None
        write_clip(root / "Set1" / f"{k:03d}.wav", lengths[k - 1], seed=seed + k, tone=tone)
    write_ratings(root, ratings_rows(n, seed))
    return root


def write_midlevel(folder: Path, clip_ratings: dict[str, Sequence[float]],
                   extra_meta: Sequence[str] = (), extra_annot: Sequence[str] = ()) -> Path:
    """The published Mid-level format: ';' metadata (with other sources) + ',' annotations.

    ``clip_ratings`` maps the 'ID at file source' of soundtracks rows to 7 ratings on 1-10.
    """
    folder.mkdir(parents=True, exist_ok=True)
    meta = ["song id;Source;ID at file source;Artist", "1;jamendo;track_0042;Someone"]
    annot = ["song_id," + ",".join(CONCEPTS), "1," + ",".join(["5"] * 7)]
    for k, (source_id, values) in enumerate(clip_ratings.items(), start=2):
        meta.append(f"{k};soundtracks;{source_id};Film")
        annot.append(f"{k}," + ",".join(f"{v:g}" for v in values))
    (folder / "metadata.csv").write_text("\n".join([*meta, *extra_meta]) + "\n", encoding="utf-8")
    (folder / "annotations.csv").write_text("\n".join([*annot, *extra_annot]) + "\n",
                                            encoding="utf-8")
    return folder


@pytest.fixture()
def dataset(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "ds", n=4, seconds=1.0)


# ----------------------------------------------------------------------------- happy paths
def test_load_dataset_reads_ratings_labels_and_audio(dataset: Path) -> None:
    table = load_dataset(dataset)
    rows = ratings_rows(4)
    assert table.ids == ["001", "002", "003", "004"]
    assert list(table.targets.columns) == list(EMOTIONS)
    expected = np.array([[float(v) for v in r[1:9]] for r in rows]) / 10
    np.testing.assert_allclose(table.targets.to_numpy(), expected)
    assert table.labels.tolist() == [r[9] for r in rows]
    assert table.classes == sorted({r[9] for r in rows})
    assert table.label_index("001") == table.classes.index(rows[0][9])
    assert table.audio_paths["003"] == dataset / "Set1" / "003.wav"
    assert list(table.concepts.columns) == list(CONCEPTS)
    assert table.concepts.isna().all().all()
    assert table.midlevel_root is None


def test_numeric_ids_without_padding_match_padded_files(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, n=3, seconds=0.5)
    rows = ratings_rows(3)
    for r in rows:
        r[0] = str(int(r[0]))  # '1' instead of '001'
    write_ratings(root, rows)
    assert load_dataset(root).ids == ["001", "002", "003"]


def test_missing_target_column_gives_unknown_labels(tmp_path: Path) -> None:
    root = write_dataset(tmp_path, n=2, seconds=0.5)
    write_ratings(root, [r[:9] for r in ratings_rows(2)], header=("number", *EMOTIONS))
    table = load_dataset(root)
    assert table.classes == []
    assert [table.label_index(i) for i in table.ids] == [-1, -1]


def test_midlevel_join_by_source_id(dataset: Path) -> None:
    # '2.mp3' -> '002' (extension stripped, zero-padded); clip 004 is not annotated; '999' has no
    # Soundtracks clip and is ignored.
    write_midlevel(dataset / "midlevel", {"1": [1, 2, 3, 4, 5, 6, 7], "2.mp3": [10] * 7,
                                          "003": [5.5] * 7, "999": [3] * 7})
    table = load_dataset(dataset)  # default midlevel root: ROOT/midlevel
    assert table.midlevel_root == dataset / "midlevel"
    np.testing.assert_allclose(table.concepts.loc["001"], np.arange(1, 8) / 10)
    np.testing.assert_allclose(table.concepts.loc["002"], [1.0] * 7)
    np.testing.assert_allclose(table.concepts.loc["003"], [0.55] * 7)
    assert table.concepts.loc["004"].isna().all()
    assert table.has_concepts("001") and not table.has_concepts("004")


def test_explicit_midlevel_root(dataset: Path, tmp_path: Path) -> None:
    ml = write_midlevel(tmp_path / "elsewhere", {"004": [2] * 7})
    table = load_dataset(dataset, midlevel_root=ml)
    assert table.midlevel_root == ml
    assert table.concepts.notna().all(axis=1).tolist() == [False, False, False, True]
    assert MidLevel(ml).concepts.shape == (2, 7)  # the jamendo song + the soundtracks one


@pytest.mark.parametrize(("raw", "expected"), [
    ("1", "001"), (" 46 ", "046"), ("146.mp3", "146"), ("146.mp3.spec", "146"), ("7.0", "007"),
    (12, "012"), ("1234", "1234"), ("clip_a", "clip_a"), ("clip_a.wav", "clip_a"),
])
def test_normalise_clip_id(raw: object, expected: str) -> None:
    assert normalise_clip_id(raw) == expected


# ----------------------------------------------------------------------------- bad inputs
def _emotion_col(name: str) -> int:
    return 1 + EMOTIONS.index(name)


def _bad_value(value: str, column: str = "fear", row: int = 1):
    def mutate(root: Path) -> tuple[Path, int | None]:
        rows = ratings_rows(4)
        rows[row][_emotion_col(column)] = value
        return write_ratings(root, rows), row + 2
    return mutate


def _duplicate_id(root: Path) -> tuple[Path, int | None]:
    rows = ratings_rows(4)
    rows[3][0] = "002"
    (root / "Set1" / "004.wav").unlink()  # else 004.wav would also be reported as unrated
    return write_ratings(root, rows), 5


def _missing_audio(root: Path) -> tuple[Path, int | None]:
    (root / "Set1" / "003.wav").unlink()
    return root / "mean_ratings_set1.csv", 4


def _unrated_audio(root: Path) -> tuple[Path, int | None]:
    write_clip(root / "Set1" / "017.wav", 0.5)
    return root / "Set1" / "017.wav", None


def _two_audio_files(root: Path) -> tuple[Path, int | None]:
    write_clip(root / "Set1" / "002.flac", 0.5)
    return root / "Set1" / "002.wav", None


def _missing_column(root: Path) -> tuple[Path, int | None]:
    rows = [[r[0], *r[1:5], *r[6:]] for r in ratings_rows(4)]  # drop 'fear'
    header = ("number", *[e for e in EMOTIONS if e != "fear"], "TARGET")
    return write_ratings(root, rows, header=header), 1


def _missing_ratings_file(root: Path) -> tuple[Path, int | None]:
    (root / "mean_ratings_set1.csv").unlink()
    return root / "mean_ratings_set1.csv", None


def _missing_set1(root: Path) -> tuple[Path, int | None]:
    for p in (root / "Set1").iterdir():
        p.unlink()
    (root / "Set1").rmdir()
    return root / "Set1", None


BAD_SOUNDTRACKS = {
    "non_numeric": (_bad_value("n/a"), "non_numeric"),
    "empty_rating": (_bad_value(""), "non_numeric"),
    "below_scale": (_bad_value("0.5", "valence", 0), "out_of_range"),
    "above_scale": (_bad_value("9.01", "tender", 2), "out_of_range"),
    "nan_rating": (_bad_value("nan"), "non_numeric"),
    "duplicate_id": (_duplicate_id, "duplicate_id"),
    "missing_audio": (_missing_audio, "missing_audio"),
    "unrated_audio": (_unrated_audio, "unrated_audio"),
    "two_audio_files": (_two_audio_files, "duplicate_id"),
    "missing_column": (_missing_column, "missing_column"),
    "missing_ratings_file": (_missing_ratings_file, "missing_file"),
    "missing_set1": (_missing_set1, "missing_file"),
}


@pytest.mark.parametrize("case", sorted(BAD_SOUNDTRACKS))
def test_bad_soundtracks_input(tmp_path: Path, case: str) -> None:
    root = write_dataset(tmp_path / "ds", n=4, seconds=0.5)
    mutate, kind = BAD_SOUNDTRACKS[case]
    file, line = mutate(root)
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    message = str(info.value)
    assert str(file) in message
    if line is not None:
        assert f"line {line}" in message
    problems = check_dataset(root, decode=False)
    assert [(p.kind, p.file, p.line) for p in problems] == [(kind, file, line)]


def _ml_bad_rating(value: str):
    def mutate(folder: Path) -> tuple[Path, int | None]:
        write_midlevel(folder, {"001": [5] * 7, "002": [5] * 7})
        path = folder / "annotations.csv"
        lines = path.read_text().splitlines()
        cells = lines[2].split(",")
        cells[1 + CONCEPTS.index("dissonance")] = value
        lines[2] = ",".join(cells)
        path.write_text("\n".join(lines) + "\n")
        return path, 3
    return mutate


def _ml_duplicate_song(folder: Path) -> tuple[Path, int | None]:
    write_midlevel(folder, {"001": [5] * 7}, extra_annot=["2," + ",".join(["4"] * 7)])
    return folder / "annotations.csv", 4


def _ml_duplicate_clip(folder: Path) -> tuple[Path, int | None]:
    write_midlevel(folder, {"001": [5] * 7, "002": [4] * 7}, extra_meta=["7;soundtracks;1.mp3;X"])
    return folder / "metadata.csv", 5


def _ml_missing_column(folder: Path) -> tuple[Path, int | None]:
    write_midlevel(folder, {"001": [5] * 7})
    path = folder / "metadata.csv"
    path.write_text(path.read_text().replace("ID at file source", "source id"))
    return path, 1


def _ml_comma_metadata(folder: Path) -> tuple[Path, int | None]:
    write_midlevel(folder, {"001": [5] * 7})
    path = folder / "metadata.csv"
    path.write_text(path.read_text().replace(";", ","))  # wrong separator
    return path, 1


BAD_MIDLEVEL = {
    "concept_above_10": (_ml_bad_rating("10.5"), "out_of_range"),
    "concept_below_1": (_ml_bad_rating("0"), "out_of_range"),
    "concept_text": (_ml_bad_rating("high"), "non_numeric"),
    "duplicate_song_id": (_ml_duplicate_song, "duplicate_id"),
    "duplicate_soundtracks_clip": (_ml_duplicate_clip, "duplicate_id"),
    "missing_column": (_ml_missing_column, "missing_column"),
    "wrong_separator": (_ml_comma_metadata, "missing_column"),
}


@pytest.mark.parametrize("case", sorted(BAD_MIDLEVEL))
def test_bad_midlevel_input(tmp_path: Path, case: str) -> None:
    root = write_dataset(tmp_path / "ds", n=2, seconds=0.5)
    mutate, kind = BAD_MIDLEVEL[case]
    file, line = mutate(root / "midlevel")
    with pytest.raises(DatasetError) as info:
        load_dataset(root)
    assert str(file) in str(info.value)
    assert f"line {line}" in str(info.value)
    problems = check_dataset(root, decode=False)
    assert [(p.kind, p.file, p.line) for p in problems] == [(kind, file, line)]


def test_explicit_midlevel_root_that_does_not_exist(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(dataset, midlevel_root=tmp_path / "nope")


def test_ratings_file_without_rows(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "Set1").mkdir(parents=True)
    write_ratings(root, [])
    with pytest.raises(DatasetError, match="no clips"):
        load_dataset(root)


# ----------------------------------------------------------------------------- splits
def test_make_split_sizes_and_partition() -> None:
    ids = [f"{k:03d}" for k in range(1, 361)]
    split = make_split(ids, seed=3)
    assert (len(split.train), len(split.val), len(split.test)) == (288, 36, 36)
    assert sorted(split.train + split.val + split.test) == ids
    assert split.part("all") == tuple(ids)


def test_make_split_is_seeded_and_order_independent() -> None:
    ids = [f"{k:03d}" for k in range(1, 51)]
    a = make_split(ids, seed=1)
    assert make_split(list(reversed(ids)), seed=1) == a
    assert a.split_id == make_split(ids, seed=1).split_id
    b = make_split(ids, seed=2)
    assert b.test != a.test and b.split_id != a.split_id


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 120), seed=st.integers(0, 2**32 - 1),
       weights=st.tuples(*[st.integers(0, 10)] * 3).filter(lambda w: sum(w) > 0))
def test_make_split_uses_every_id_once(n: int, seed: int, weights: tuple[int, int, int]) -> None:
    fractions = tuple(w / sum(weights) for w in weights)
    ids = [f"c{k}" for k in range(n)]
    split = make_split(ids, seed=seed, fractions=fractions)  # type: ignore[arg-type]
    assert sorted(split.train + split.val + split.test) == sorted(ids)
    assert abs(len(split.train) - fractions[0] * n) <= 0.5 + 1e-9
    assert abs(len(split.val) - fractions[1] * n) <= 0.5 + 1e-9 or len(split.test) == 0


@pytest.mark.parametrize("fractions", [(0.8, 0.1), (0.5, 0.5, 0.5), (1.2, -0.1, -0.1),
                                       (float("nan"), 0.5, 0.5)])
def test_make_split_rejects_bad_fractions(fractions: tuple[float, ...]) -> None:
    with pytest.raises(ConfigError, match="fractions"):
        make_split(["a", "b"], fractions=fractions)  # type: ignore[arg-type]


def test_make_split_rejects_duplicate_ids() -> None:
    with pytest.raises(DatasetError, match="duplicate"):
        make_split(["a", "b", "a"])


def test_split_save_load_round_trip(tmp_path: Path) -> None:
    ids = [f"{k:03d}" for k in range(1, 21)]
    split = make_split(ids, seed=5)
    path = tmp_path / "sub" / "split.json"
    split.save(path)
    loaded = Split.load(path, valid_ids=ids)
    assert loaded == split and loaded.split_id == split.split_id
    assert json.loads(path.read_text())["split_id"] == split.split_id
    assert not [p for p in path.parent.iterdir() if p.name != "split.json"]  # no temp left


def test_split_load_with_unknown_ids(tmp_path: Path) -> None:
    path = tmp_path / "split.json"
    make_split(["001", "002", "003", "zzz"], seed=0).save(path)
    with pytest.raises(DatasetError, match="zzz") as info:
        Split.load(path, valid_ids=["001", "002", "003"])
    assert str(path) in str(info.value)


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not a valid JSON"),
    ('["a"]', "JSON object"),
    ('{"train": ["a"], "val": [1], "test": []}', "'val'"),
    ('{"train": ["a"], "val": ["a"], "test": []}', "both"),
    ('{"train": ["a"], "val": ["b"], "test": [], "split_id": "edited"}', "edited"),
])
def test_split_load_rejects_malformed_files(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "split.json"
    path.write_text(content)
    with pytest.raises(DatasetError, match=match) as info:
        Split.load(path)
    assert str(path) in str(info.value)


def test_split_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        Split.load(tmp_path / "absent.json")


def test_split_part_rejects_unknown_name() -> None:
    with pytest.raises(ConfigError, match="'dev'"):
        make_split(["a"]).part("dev")
