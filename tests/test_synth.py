"""The embedded concept dataset: on-disk formats, determinism, resuming, and that each concept
really changes the audio and the emotions follow the documented linear map."""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robustmer import CONCEPTS, EMOTIONS
from robustmer.data.synth import (
    CLASSES,
    CONCEPT_CUES,
    EMOTION_BIASES,
    EMOTION_WEIGHTS,
    FORMAT_VERSION,
    LABEL_MEANS,
    LABEL_SDS,
    SAMPLE_RATE,
    SynthClip,
    annotate,
    draw_concepts,
    emotion_map,
    generating_map,
    label_from_emotions,
    render_clip,
    synthesize,
)
from robustmer.errors import ConfigError
from robustmer.io import read_json

N_CLIPS = 12
TEXT_FILES = ("mean_ratings_set1.csv", "midlevel/metadata.csv", "midlevel/annotations.csv",
              "generating_map.json", "README.txt")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "ds"
    info = synthesize(root, clips=N_CLIPS, seed=3)
    assert info.root == root and info.clips == N_CLIPS and not info.reused
    assert info.bytes == sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return root


def _read_ratings(root: Path) -> list[dict[str, str]]:
    text = (root / "mean_ratings_set1.csv").read_text(encoding="utf-8-sig")
    return list(csv.DictReader(io.StringIO(text)))


# ------------------------------------------------------------------------------ formats


def test_layout_and_soundtracks_ratings_format(dataset: Path) -> None:
    ids = [f"{k:03d}" for k in range(1, N_CLIPS + 1)]
    assert sorted(p.name for p in (dataset / "Set1").iterdir()) == [f"{i}.flac" for i in ids]
    assert sorted(p.name for p in dataset.iterdir()) == [
        "README.txt", "Set1", "generating_map.json", "mean_ratings_set1.csv", "midlevel"]
    raw = (dataset / "mean_ratings_set1.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    lines = raw.decode("utf-8-sig").splitlines()
    assert lines[0] == "number,valence,energy,tension,anger,fear,happy,sad,tender,TARGET"
    rows = _read_ratings(dataset)
    assert [r["number"] for r in rows] == ids
    two_dec = re.compile(r"^\d\.\d\d$")
    values = np.array([[float(r[e]) for e in EMOTIONS] for r in rows])
    for r in rows:
        assert all(two_dec.match(r[e]) for e in EMOTIONS), r
        assert r["TARGET"] in CLASSES
    assert values.min() >= 1.0 and values.max() <= 9.0
    assert [r["TARGET"] for r in rows] == label_from_emotions(values)


def test_midlevel_format_and_ids(dataset: Path) -> None:
    meta = (dataset / "midlevel" / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert meta[0] == "song id;Source;ID at file source"
    rows = [line.split(";") for line in meta[1:]]
    assert all(len(r) == 3 and r[1] == "soundtracks" for r in rows)
    assert [r[2] for r in rows] == [f"{k:03d}" for k in range(1, N_CLIPS + 1)]
    ann = list(csv.DictReader(io.StringIO(
        (dataset / "midlevel" / "annotations.csv").read_text(encoding="utf-8"))))
    assert list(ann[0]) == ["song_id", *CONCEPTS]
    assert [a["song_id"] for a in ann] == [r[0] for r in rows]
    ratings = np.array([[float(a[c]) for c in CONCEPTS] for a in ann])
    assert ratings.min() >= 1.0 and ratings.max() <= 10.0
    # ratings are the drawn concept values on 1-10 plus small noise
    true = 1.0 + 9.0 * draw_concepts(N_CLIPS, seed=3)
    assert np.abs(ratings - true).max() < 2.5
    assert np.corrcoef(ratings.ravel(), true.ravel())[0, 1] > 0.95


def test_written_ratings_equal_annotate(dataset: Path) -> None:
    ann = annotate(draw_concepts(N_CLIPS, seed=3), seed=3)
    rows = _read_ratings(dataset)
    np.testing.assert_array_equal(
        np.array([[float(r[e]) for e in EMOTIONS] for r in rows]), ann.emotion_ratings)
    assert [r["TARGET"] for r in rows] == ann.labels


def test_generating_map(dataset: Path) -> None:
    import json

    m = json.loads((dataset / "generating_map.json").read_text(encoding="utf-8"))
    assert m["parameters"] == {"clips": N_CLIPS, "seed": 3, "duration": 12.0,
                               "audio_format": "flac", "sample_rate": SAMPLE_RATE}
    assert np.array(m["weights"]).shape == (8, 7) and len(m["biases"]) == 8
    np.testing.assert_allclose(m["weights"], EMOTION_WEIGHTS)
    assert m["concepts"] == list(CONCEPTS) and m["emotions"] == list(EMOTIONS)
    assert set(m["audio_parameters"]) == set(CONCEPTS)
    assert m["emotion_noise_sd"] > 0 and m["concept_noise_sd"] > 0
    assert isinstance(m["format_version"], int)
    # the scaled map reproduces the map on the loaders' scale (ratings / 10)
    c = draw_concepts(5, seed=1)
    lhs = emotion_map(c) / 10.0
    rhs = np.array(m["scaled_map"]["biases"]) + ((1 + 9 * c) / 10.0) @ np.array(
        m["scaled_map"]["weights"]).T
    np.testing.assert_allclose(lhs, rhs, atol=1e-12)
    assert "Synthetic" in (dataset / "README.txt").read_text(encoding="utf-8")


def test_audio_files(dataset: Path) -> None:
    for path in sorted((dataset / "Set1").iterdir()):
        info = sf.info(str(path))
        assert info.samplerate == SAMPLE_RATE and info.channels == 1
        assert info.duration >= 10.5
        x, _ = sf.read(str(path), dtype="float32")
        assert np.isfinite(x).all()
        assert 0.1 < np.abs(x).max() < 1.0
        assert np.sqrt(np.mean(x**2)) > 0.01


@pytest.mark.parametrize("fmt", ["wav", "mp3"])
def test_other_audio_formats(tmp_path: Path, fmt: str) -> None:
    synthesize(tmp_path, clips=10, duration=10.5, audio_format=fmt, seed=1)
    files = sorted((tmp_path / "Set1").iterdir())
    assert [p.name for p in files] == [f"{k:03d}.{fmt}" for k in range(1, 11)]
    x, sr = sf.read(str(files[0]), dtype="float32")
    assert sr == SAMPLE_RATE and x.ndim == 1 and x.size >= 10.5 * SAMPLE_RATE
    assert 0.1 < np.abs(x).max() < 1.0


# ------------------------------------------------------------------- determinism, resume


def test_deterministic_and_seed_dependent(dataset: Path, tmp_path: Path) -> None:
    again = synthesize(tmp_path / "same", clips=N_CLIPS, seed=3).root
    other = synthesize(tmp_path / "other", clips=N_CLIPS, seed=4).root
    for name in TEXT_FILES:
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    for name in ("mean_ratings_set1.csv", "midlevel/annotations.csv"):
        assert (other / name).read_bytes() != (dataset / name).read_bytes(), name
    for k in (1, N_CLIPS):
        a, _ = sf.read(str(dataset / "Set1" / f"{k:03d}.flac"))
        b, _ = sf.read(str(again / "Set1" / f"{k:03d}.flac"))
        c, _ = sf.read(str(other / "Set1" / f"{k:03d}.flac"))
        np.testing.assert_array_equal(a, b)
        assert a.shape != c.shape or not np.array_equal(a, c)


def test_prefix_of_a_larger_dataset_is_the_smaller_one() -> None:
    np.testing.assert_array_equal(draw_concepts(40, 5)[:12], draw_concepts(12, 5))
    big, small = annotate(draw_concepts(40, 5), 5), annotate(draw_concepts(12, 5), 5)
    np.testing.assert_array_equal(big.emotion_ratings[:12], small.emotion_ratings)


def test_complete_dataset_is_reused_and_partial_one_completed(dataset: Path,
                                                              tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(dataset, root)
    stamp = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    info = synthesize(root, clips=N_CLIPS, seed=3)
    assert info.reused
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == stamp
    # a complete-looking folder missing one annotation file is not reused but completed
    (root / "midlevel" / "annotations.csv").unlink()
    assert not synthesize(root, clips=N_CLIPS, seed=3).reused
    assert (root / "midlevel" / "annotations.csv").read_bytes() == (
        dataset / "midlevel" / "annotations.csv").read_bytes()
    # simulate a run killed part-way: map, ratings and one clip missing, a stale temporary left
    (root / "generating_map.json").unlink()
    (root / "mean_ratings_set1.csv").unlink()
    (root / "Set1" / "005.flac").unlink()
    (root / ".synth-parameters.json").write_text(
        (dataset / "generating_map.json").read_text(encoding="utf-8"), encoding="utf-8")
    (root / "Set1" / ".006.flac.abc123.tmp").write_bytes(b"partial")
    kept = (root / "Set1" / "001.flac").stat().st_mtime_ns
    info = synthesize(root, clips=N_CLIPS, seed=3)
    assert not info.reused
    assert (root / "Set1" / "001.flac").stat().st_mtime_ns == kept  # not rewritten
    assert sorted(p.name for p in root.rglob("*")) == sorted(p.name for p in dataset.rglob("*"))
    for name in TEXT_FILES:
        assert (root / name).read_bytes() == (dataset / name).read_bytes(), name
    a, _ = sf.read(str(root / "Set1" / "005.flac"))
    b, _ = sf.read(str(dataset / "Set1" / "005.flac"))
    np.testing.assert_array_equal(a, b)


def test_refuses_to_mix_datasets(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="other parameters"):
        synthesize(dataset, clips=N_CLIPS, seed=4)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ConfigError, match="out"):
        synthesize(foreign, clips=N_CLIPS)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"clips": 9}, "clips"), ({"clips": 12.5}, "clips"), ({"duration": 10.4}, "duration"),
    ({"audio_format": "ogg"}, "audio_format"), ({"seed": -1}, "seed"),
])
def test_argument_validation(tmp_path: Path, kwargs: dict[str, object], name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        synthesize(tmp_path / "x", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x").exists()


def test_render_clip_validates_concepts() -> None:
    with pytest.raises(ConfigError, match="dissonance"):
        render_clip({**{c: 0.5 for c in CONCEPTS}, "dissonance": 1.5})
    with pytest.raises(ConfigError, match="7 values"):
        render_clip([0.5] * 6)
    with pytest.raises(ConfigError, match="missing"):
        render_clip({"melodiousness": 0.5})


# ------------------------------------------------------------- concepts change the audio


def _clip(seed: int, duration: float = 10.5, version: int = FORMAT_VERSION,
          **changes: float) -> SynthClip:
    concepts = {c: 0.5 for c in CONCEPTS}
    concepts.update(changes)
    return render_clip(concepts, seed=seed, duration=duration, version=version)


def _silent_fraction(x: np.ndarray, frame: int = 256) -> float:
    f = x[: x.size // frame * frame].reshape(-1, frame).astype(np.float64)
    rms = np.sqrt((f**2).mean(axis=1))
    return float((rms < 0.05 * np.percentile(rms, 95)).mean())


def _chroma(x: np.ndarray, tonic_pc: int, frame: int = 4096) -> np.ndarray:
    """Per-frame energy in the 12 pitch classes relative to the tonic (60 Hz - 2 kHz)."""
    f = x[: x.size // frame * frame].reshape(-1, frame) * np.hanning(frame)
    power = np.abs(np.fft.rfft(f, axis=1)) ** 2
    freqs = np.fft.rfftfreq(frame, 1.0 / SAMPLE_RATE)
    sel = (freqs > 60) & (freqs < 2000)
    pc = (np.round(12 * np.log2(freqs[sel] / 440.0)) + 69 - tonic_pc) % 12
    return np.stack([power[:, sel][:, pc == k].sum(axis=1) for k in range(12)], axis=1)


def _centroid(clip: SynthClip) -> float:
    power = np.abs(np.fft.rfft(clip.audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(clip.audio.size, 1.0 / SAMPLE_RATE)
    return float((power * freqs).sum() / power.sum())


def _share(clip: SynthClip, pcs: list[int]) -> float:
    ch = _chroma(clip.audio, clip.score.tonic_pc).sum(axis=0)
    return float(ch[pcs].sum() / ch.sum())


@pytest.mark.parametrize("seed", [0, 1])
def test_articulation_makes_gaps(seed: int) -> None:
    quiet = {"tonal_stability": 0.0, "rhythm_stability": 0.0}  # no pedal or pulse in the gaps
    legato, staccato = _clip(seed, articulation=0.1, **quiet), _clip(seed, articulation=0.9,
                                                                    **quiet)
    assert _silent_fraction(legato.audio) < 0.05
    assert _silent_fraction(staccato.audio) > _silent_fraction(legato.audio) + 0.2


@pytest.mark.parametrize("seed", [0, 1])
def test_minorness_changes_pitch_classes(seed: int) -> None:
    major = _clip(seed, minorness=0.05, tonal_stability=0.9)
    minor = _clip(seed, minorness=0.95, tonal_stability=0.9)
    flats, naturals = [3, 8, 10], [4, 9, 11]  # minor vs. major 3rd, 6th, 7th
    assert _share(major, naturals) > 2 * _share(major, flats)
    assert _share(minor, flats) > 2 * _share(minor, naturals)


@pytest.mark.parametrize("seed", [0, 1])
def test_minorness_lowers_register_and_darkens_the_lead(seed: int) -> None:
    major, minor = _clip(seed, minorness=0.0), _clip(seed, minorness=1.0)
    mel = major.score.voice_mask("melody")
    drop = major.score.pitch[mel].mean() - minor.score.pitch[mel].mean()
    assert 11.0 < drop < 13.0  # an octave down, give or take a flattened 3rd/6th/7th
    assert _centroid(minor) < 0.8 * _centroid(major)


@pytest.mark.parametrize("seed", [0, 1])
def test_dissonance_adds_semitone_clashes(seed: int) -> None:
    def adjacency(clip: SynthClip) -> float:
        ch = _chroma(clip.audio, clip.score.tonic_pc)
        return float(((ch * np.roll(ch, -1, axis=1)).sum(1) / (ch**2).sum(1)).mean())

    def semitone_pairs(clip: SynthClip) -> int:
        s = clip.score
        mel, har = s.voice_mask("melody"), s.voice_mask("harmony")
        return int(np.isin((s.pitch[mel] - s.pitch[har]) % 12, [1, 11]).sum())

    soft, harsh = _clip(seed, dissonance=0.05), _clip(seed, dissonance=0.95)
    assert adjacency(harsh) > adjacency(soft) + 0.05
    assert semitone_pairs(harsh) > semitone_pairs(soft) + 10


@pytest.mark.parametrize("seed", [0, 1])
def test_tonal_stability_reduces_out_of_key_content(seed: int) -> None:
    out_of_key = [1, 3, 6, 8, 10]  # pitch classes outside the major scale
    stable = _clip(seed, tonal_stability=0.95, minorness=0.0)
    unstable = _clip(seed, tonal_stability=0.05, minorness=0.0)
    assert _share(unstable, out_of_key) > _share(stable, out_of_key) + 0.1
    assert unstable.score.out_of_key.mean() > stable.score.out_of_key.mean() + 0.2


def test_melodiousness_rhythm_and_energy_cues() -> None:
    def leap(clip: SynthClip) -> float:
        return float(np.abs(np.diff(clip.score.pitch[clip.score.voice_mask("melody")])).mean())

    def jitter(clip: SynthClip) -> float:
        return float(np.std(clip.score.onset - clip.score.grid))

    def distinct_iois(clip: SynthClip) -> int:
        grid = clip.score.grid[clip.score.voice_mask("melody")]
        return np.unique(np.round(np.diff(grid) * clip.score.tempo_bpm / 60.0, 3)).size

    for seed in (0, 1):
        assert leap(_clip(seed, melodiousness=0.95)) < 0.6 * leap(_clip(seed, melodiousness=0.05))
        assert jitter(_clip(seed, rhythm_stability=0.05)) > 0.02
        assert jitter(_clip(seed, rhythm_stability=1.0)) == 0.0
        assert distinct_iois(_clip(seed, rhythm_complexity=0.0)) == 1
        assert distinct_iois(_clip(seed, rhythm_complexity=1.0)) >= 3
        calm = _clip(seed, articulation=0.05, rhythm_complexity=0.05)
        busy = _clip(seed, articulation=0.95, rhythm_complexity=0.95)
        assert busy.score.tempo_bpm > calm.score.tempo_bpm + 40
        assert _centroid(busy) > _centroid(calm)


def test_render_clip_is_deterministic_and_bounded() -> None:
    a, b = _clip(7, duration=11.0), _clip(7, duration=11.0)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert a.audio.dtype == np.float32 and a.audio.size == round(11.0 * SAMPLE_RATE)
    assert not np.array_equal(a.audio, _clip(8, duration=11.0).audio)
    for values in (np.zeros(7), np.ones(7)):
        x = render_clip(values, duration=10.5).audio
        assert np.isfinite(x).all() and 0.1 < np.abs(x).max() < 1.0


# ----------------------------------------------------------------- emotions and labels


def test_emotions_are_the_documented_linear_map() -> None:
    c = draw_concepts(3000, seed=11)
    ann = annotate(c, seed=11)
    design = np.hstack([np.ones((c.shape[0], 1)), c])
    coef, *_ = np.linalg.lstsq(design, ann.emotion_ratings, rcond=None)
    np.testing.assert_allclose(coef[0], EMOTION_BIASES, atol=0.2)
    np.testing.assert_allclose(coef[1:].T, EMOTION_WEIGHTS, atol=0.2)
    resid = ann.emotion_ratings - design @ coef
    assert 0.2 < resid.std() < 0.45  # the documented noise (sd 0.3) plus clipping/rounding
    # from the written concept ratings (what a concept-bottleneck model sees) it is recoverable too
    design_r = np.hstack([np.ones((c.shape[0], 1)), (ann.concept_ratings - 1.0) / 9.0])
    coef_r, *_ = np.linalg.lstsq(design_r, ann.emotion_ratings, rcond=None)
    np.testing.assert_allclose(coef_r[1:].T, EMOTION_WEIGHTS, atol=0.3)


def test_label_rule_known_answers() -> None:
    def row(**z: float) -> np.ndarray:
        zz = np.array([z.get(e, 0.0) for e in EMOTIONS])
        return LABEL_MEANS + zz * LABEL_SDS

    cases = {
        "SAD": row(sad=2.0, valence=-1.5),
        "LOW ENERGY": row(energy=-2.5, sad=1.0),
        "HIGH VALENCE": row(valence=2.5, happy=2.0),
        "ANGER": row(anger=2.0, tension=1.5, valence=-1.0),
        "SURPRISE": row(energy=1.5, tension=1.5),
    }
    assert label_from_emotions(np.stack(list(cases.values()))) == list(cases)
    labels = annotate(draw_concepts(2000, seed=2), seed=2).labels
    counts = {k: labels.count(k) for k in CLASSES}
    assert min(counts.values()) > 0.03 * len(labels), counts  # every class is represented


# ------------------------------------------------------------- format 3: the concept cues


def _band(clip: SynthClip, lo: float, hi: float) -> float:
    """Share of the clip's power between ``lo`` and ``hi`` Hz."""
    power = np.abs(np.fft.rfft(clip.audio.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(clip.audio.size, 1.0 / SAMPLE_RATE)
    return float(power[(freqs >= lo) & (freqs < hi)].sum() / power.sum())


def _flatness(clip: SynthClip) -> float:
    """Spectral flatness (geometric / arithmetic mean of the power) between 100 Hz and 4 kHz."""
    power = np.abs(np.fft.rfft(clip.audio.astype(np.float64))) ** 2 + 1e-12
    freqs = np.fft.rfftfreq(clip.audio.size, 1.0 / SAMPLE_RATE)
    p = power[(freqs > 100) & (freqs < 4000)]
    return float(np.exp(np.log(p).mean()) / p.mean())


def test_format_3_plays_format_2s_notes_and_adds_the_cues() -> None:
    for seed in (0, 1):
        old, new = _clip(seed, version=2), _clip(seed, version=3)
        for name in ("onset", "gate", "pitch", "velocity", "voice"):
            np.testing.assert_array_equal(getattr(old.score, name), getattr(new.score, name))
        assert np.abs(old.audio - new.audio).max() > 0.05
    with pytest.raises(ConfigError, match="version"):
        render_clip([0.5] * len(CONCEPTS), version=1)


def test_format_version_is_written_and_checked(tmp_path: Path) -> None:
    old = synthesize(tmp_path / "v2", clips=10, duration=10.5, version=2)
    assert old.map["format_version"] == 2 and "concept_cues" not in old.map
    assert read_json(tmp_path / "v2" / "generating_map.json")["format_version"] == 2
    assert set(CONCEPT_CUES) <= set(generating_map(10, 0, 10.5, "flac")["concept_cues"])
    with pytest.raises(ConfigError, match="format 2"):
        synthesize(tmp_path / "v2", clips=10, duration=10.5)  # the default is 3
    assert synthesize(tmp_path / "v2", clips=10, duration=10.5, version=2).reused


@pytest.mark.parametrize("seed", [0, 1])
def test_rhythm_stability_adds_a_steady_pulse(seed: int) -> None:
    def hiss(version: int, value: float) -> float:  # the pulse is the only content above 8 kHz
        return _band(_clip(seed, version=version, rhythm_stability=value), 8000, 11025)

    assert hiss(3, 1.0) > 0.01 > 1e-4 > hiss(3, 0.0)
    assert hiss(2, 1.0) < 1e-4


@pytest.mark.parametrize("seed", [0, 1])
def test_tonal_stability_adds_a_tonic_pedal(seed: int) -> None:
    def tonic_and_fifth(version: int, value: float) -> np.ndarray:  # per frame, in the gaps too
        clip = _clip(seed, version=version, tonal_stability=value, articulation=0.9,
                     rhythm_stability=0.0)
        ch = _chroma(clip.audio, clip.score.tonic_pc)
        return ch[:, [0, 7]].sum(axis=1) / ch.sum(axis=1)

    assert np.percentile(tonic_and_fifth(3, 1.0), 10) > 0.2  # under every frame
    assert np.percentile(tonic_and_fifth(2, 1.0), 10) < 0.05
    assert abs(np.median(tonic_and_fifth(3, 0.0)) - np.median(tonic_and_fifth(2, 0.0))) < 0.05


@pytest.mark.parametrize("seed", [0, 1])
def test_melodiousness_brings_the_melody_forward(seed: int) -> None:
    def bass(version: int, value: float) -> float:  # the accompaniment's share falls
        return _band(_clip(seed, version=version, melodiousness=value), 0, 150)

    assert bass(3, 1.0) < 0.5 * bass(3, 0.0)
    assert bass(2, 1.0) == pytest.approx(bass(2, 0.0), rel=0.1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dissonance_roughens_the_chords(seed: int) -> None:
    def rise(version: int) -> float:  # no pulse, a pedal: the chords' own change
        soft, harsh = (_clip(seed, version=version, dissonance=d, rhythm_stability=0.0,
                             tonal_stability=1.0) for d in (0.0, 1.0))
        return _flatness(harsh) / _flatness(soft)

    assert rise(3) > 1.35 and rise(3) > rise(2) + 0.15
