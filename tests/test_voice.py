"""The voice detection dataset: labels and masks where the voice was put, the accompaniment
untouched, determinism, the folder written, re-read and resumed, excerpt labels, bad arguments."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from robustmer.data.synth import draw_concepts, render_clip
from robustmer.data.voice import (
    ACCOMPANIMENT_VERSION,
    CLIP_COLUMNS,
    SPAN_COLUMNS,
    TRUTH_ARRAYS,
    VoiceClip,
    excerpt_labels,
    frame_labels,
    load_voice_dataset,
    render_voice,
    render_voice_clip,
    synthesize_voice,
)
from robustmer.errors import ConfigError, DatasetError
from robustmer.features import FrontEndConfig, compute_spectrogram

CFG = FrontEndConfig()
SR = CFG.sample_rate
N_CLIPS = 6
DURATION = 5.0
SEED = 2


def _clip(k: int, p_voice: float = 1.0, p_decoy: float = 1.0, seed: int = 0,
          duration: float = 6.0) -> VoiceClip:
    return render_voice_clip(draw_concepts(k + 1, seed)[k], duration=duration, seed=(seed, k),
                             p_voice=p_voice, p_decoy=p_decoy, snr_db=(-9.0, -3.0))


@pytest.fixture(scope="module")
def voiced() -> list[VoiceClip]:
    return [_clip(k) for k in range(3)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("voice") / "ds"
    info = synthesize_voice(root, clips=N_CLIPS, seed=SEED, duration=DURATION, p_voice=0.5)
    assert info.root == root and info.clips == N_CLIPS and not info.reused
    return root


def _windowed_energy(audio: np.ndarray) -> np.ndarray:
    """Hann-windowed energy of every front-end frame (the frames the labels describe)."""
    starts = CFG.frame_starts(audio.size)
    padded = np.pad(audio.astype(np.float64), (0, CFG.frame_size))
    frames = padded[starts[:, None] + np.arange(CFG.frame_size)]
    return ((frames * np.hanning(CFG.frame_size)) ** 2).sum(axis=1)


# ------------------------------------------------------------------ labels and ground truth


def test_labels_are_where_the_voice_was_put(voiced: list[VoiceClip]) -> None:
    for clip in voiced:
        assert clip.spans.shape[0] >= 1
        on = np.zeros(clip.audio.size, dtype=bool)
        for s0, s1 in clip.spans:
            on[s0:s1] = True
        assert not clip.voice[~on].any()  # the voice is exactly silent outside its spans
        energy = _windowed_energy(clip.voice)
        starts = CFG.frame_starts(clip.audio.size)
        centre = starts + CFG.frame_size // 2
        touches = np.array([on[a:a + CFG.frame_size].any() for a in starts])
        # deep inside a span (the centre 50 ms from either end): labelled, and the voice is loud
        deep = np.zeros_like(clip.labels)
        for s0, s1 in clip.spans:
            deep |= (centre >= s0 + 0.05 * SR) & (centre < s1 - 0.05 * SR)
        loud = energy > 1e-3 * energy[deep].mean()
        assert clip.labels[deep].all() and loud[deep].all()
        # a frame whose window never touches a span: unlabelled and silent voice
        assert not clip.labels[~touches].any() and (energy[~touches] == 0).all()
        # labelled exactly the frames whose centre lies in a span
        assert np.array_equal(clip.labels, on[np.minimum(centre, on.size - 1)])
        # every labelled frame carries voice above the threshold; only edge frames differ
        assert loud[clip.labels].all()
        edge = loud & ~clip.labels
        assert edge.sum() <= 2 * 2 * clip.spans.shape[0]
        for a, b in clip.span_frames:
            assert clip.labels[a:b].all() and (a == 0 or not clip.labels[a - 1])


def test_mask_lies_in_the_voiced_frames_and_on_the_voice(voiced: list[VoiceClip]) -> None:
    for clip in voiced:
        assert clip.mask.shape == (clip.labels.size, 149)
        assert not clip.mask[~clip.labels].any()
        assert not (clip.dominant & ~clip.mask).any() and clip.dominant.any()
        voiced_rows = clip.mask[clip.labels]
        assert voiced_rows.any(axis=1).mean() > 0.9
        assert 0.005 < voiced_rows.mean() < 0.5  # a region, not the whole spectrogram
        spec = compute_spectrogram(clip.voice)
        # the mask holds the voice's loudest band of nearly every voiced frame
        top = spec.argmax(axis=1)
        rows = np.flatnonzero(clip.labels)
        assert clip.mask[rows, top[rows]].mean() > 0.9
        assert spec[clip.mask].mean() > 5 * spec[clip.labels[:, None] & ~clip.mask].mean()
        # the ground truth is on the same frames as the mix's spectrogram
        assert compute_spectrogram(clip.audio).shape == clip.mask.shape


def _on(spans: np.ndarray, n: int) -> np.ndarray:
    on = np.zeros(n, dtype=bool)
    for s0, s1 in spans:
        on[s0:s1] = True
    return on


def test_snr_level_and_the_accompaniment_is_the_concept_clip(voiced: list[VoiceClip]) -> None:
    for k, clip in enumerate(voiced):
        on = _on(clip.spans, clip.audio.size)
        snr = 10 * np.log10(np.mean(clip.voice[on].astype(np.float64) ** 2)
                            / np.mean(clip.accompaniment[on].astype(np.float64) ** 2))
        assert -9.0 <= clip.snr_db <= -3.0 and snr == pytest.approx(clip.snr_db, abs=1e-3)
        acc = render_clip(draw_concepts(k + 1, 0)[k], duration=6.0, seed=(0, 1000 + k),
                          version=ACCOMPANIMENT_VERSION).audio
        # outside the decoy's spans the accompaniment is the concept clip, only rescaled
        decoy = _on(clip.decoy_spans, acc.size)
        assert decoy.any() and not decoy.all()
        keep = (np.abs(acc) > 0.1) & ~decoy
        scale = clip.accompaniment[keep] / acc[keep]
        assert np.ptp(scale) < 1e-5 and 0.5 < scale[0] < 1.5
        assert np.abs(clip.accompaniment[decoy] - scale[0] * acc[decoy]).max() > 0.01
        np.testing.assert_allclose(clip.audio, clip.accompaniment + clip.voice, atol=1e-6)
        assert np.abs(clip.audio).max() == pytest.approx(np.abs(acc).max(), rel=1e-5)
        assert (clip.f0[clip.labels] > 140).all() and (clip.f0[clip.labels] < 650).all()
        assert (clip.f0[~clip.labels] == 0).all()


def test_a_clip_without_voice_is_the_accompaniment() -> None:
    clip = _clip(1, p_voice=0.0, p_decoy=0.0)
    acc = render_clip(draw_concepts(2, 0)[1], duration=6.0, seed=(0, 1001),
                      version=ACCOMPANIMENT_VERSION).audio
    assert np.array_equal(clip.audio, acc) and not clip.voice.any()
    assert not clip.labels.any() and not clip.mask.any() and clip.spans.shape == (0, 2)
    assert np.isnan(clip.snr_db) and clip.decoy_spans.shape == (0, 2)
    decoy = _clip(1, p_voice=0.0, p_decoy=1.0)
    assert decoy.decoy_spans.shape[0] >= 1 and not np.array_equal(decoy.audio, acc)
    assert not decoy.labels.any() and not decoy.mask.any() and not decoy.voice.any()


def test_the_decoy_is_not_labelled_and_leaves_the_voice_alone(voiced: list[VoiceClip]) -> None:
    for k, clip in enumerate(voiced):
        alone = _clip(k, p_decoy=0.0)
        assert alone.decoy_spans.shape == (0, 2)
        assert np.array_equal(alone.spans, clip.spans)
        assert np.array_equal(alone.labels, clip.labels)
        ratio = clip.voice[clip.voice != 0] / alone.voice[clip.voice != 0]
        assert np.ptp(ratio) < 1e-4 * ratio.mean()  # the same voice, at another gain


def test_frame_labels_known_answer() -> None:
    hop = CFG.hop_size
    # a span from the centre of frame 10 to the centre of frame 20: frames 10..19
    s0 = int(10 * hop) + 1024
    s1 = int(20 * hop) + 1024
    lab = frame_labels(np.array([[s0, s1]]), 40 * 705)
    assert lab.size == CFG.num_frames(40 * 705)
    assert np.flatnonzero(lab).tolist() == list(range(10, 20))
    lab = frame_labels(np.array([[s0 + 1, s1 + 1]]), 40 * 705)
    assert np.flatnonzero(lab).tolist() == list(range(11, 21))


def test_excerpt_labels() -> None:
    lab = np.array([0] * 10 + [1] * 10 + [0] * 10, dtype=bool)
    starts, y = excerpt_labels(lab, frames=10, hop=1)
    assert starts.tolist() == list(range(21))
    assert y.tolist() == [int(lab[s + 5]) for s in range(21)]
    assert y.sum() == 10
    starts, y = excerpt_labels(lab, frames=10, hop=4, rule="majority")
    assert starts.tolist() == [0, 4, 8, 12, 16, 20]
    assert y.tolist() == [0, 0, 1, 1, 0, 0]  # 0, 4, 8, 8, 4, 0 of 10 frames voiced
    starts, y = excerpt_labels(lab, frames=10, hop=5, rule="majority")
    assert y.tolist() == [0, 1, 1, 1, 0]  # 0, 5, 10, 5, 0 voiced: a tie counts as voiced
    s, y = excerpt_labels(lab[:9], frames=10)
    assert s.size == 0 and y.size == 0
    for kwargs in ({"frames": 0}, {"hop": 0}, {"rule": "mean"}, {"frames": 2.5}):
        with pytest.raises(ConfigError, match=next(iter(kwargs))):
            excerpt_labels(lab, **kwargs)
    with pytest.raises(ConfigError, match="frame_labels"):
        excerpt_labels(np.zeros((3, 3)))


def test_render_voice_refuses_bad_spans() -> None:
    for spans in ([[0, 100], [50, 200]], [[100, 50]], [[0, 10_000]]):
        with pytest.raises(ConfigError, match="spans"):
            render_voice(1000, np.array(spans), tonic_pc=0, seed=0)


# ------------------------------------------------------------------------- the folder


def test_folder_writes_and_reads_back(dataset: Path) -> None:
    ds = load_voice_dataset(dataset)
    assert list(ds.clips.columns) == list(CLIP_COLUMNS)
    assert list(ds.spans.columns) == list(SPAN_COLUMNS)
    assert ds.ids == [f"{k:03d}" for k in range(1, N_CLIPS + 1)]
    assert set(ds.clips["label"]) == {"voice", "no_voice"}  # this seed has both
    assert ds.settings["parameters"]["seed"] == SEED
    assert len(ds.spans) == ds.clips["n_spans"].sum()
    concepts = draw_concepts(N_CLIPS, SEED)
    for k, row in ds.clips.iterrows():
        cid = row["id"]
        truth = ds.truth(cid)
        assert set(TRUTH_ARRAYS) <= set(truth)
        audio, sr = sf.read(str(ds.audio_path(cid)), dtype="float32")
        assert sr == SR and audio.ndim == 1 and audio.size == round(DURATION * SR)
        assert truth["labels"].size == row["n_frames"] == CFG.num_frames(audio.size)
        assert truth["mask"].shape == (row["n_frames"], 149) and truth["mask"].dtype == bool
        assert row["label"] == ("voice" if truth["labels"].any() else "no_voice")
        assert row["voice_fraction"] == pytest.approx(truth["labels"].mean(), abs=1e-6)
        spans = ds.spans[ds.spans["id"] == cid]
        assert len(spans) == row["n_spans"]
        lab = np.zeros_like(truth["labels"])
        for _, s in spans.iterrows():
            lab[s["start_frame"]:s["end_frame"]] = True
            assert s["end_s"] > s["start_s"] and 140 < s["f0_mean"] < 650
        assert np.array_equal(lab, truth["labels"])
        clip = render_voice_clip(concepts[k], duration=DURATION, seed=(SEED, int(k)),
                                 p_voice=0.5)
        assert np.abs(audio - clip.audio).max() < 1e-4  # 16-bit PCM of the rendered mix
        assert np.array_equal(truth["mask"], clip.mask)
        if row["n_spans"]:
            assert row["snr_db"] == pytest.approx(clip.snr_db, abs=1e-4)


def test_deterministic_and_seed_dependent(dataset: Path, tmp_path: Path) -> None:
    again = synthesize_voice(tmp_path / "same", clips=N_CLIPS, seed=SEED, duration=DURATION,
                             p_voice=0.5).root
    other = synthesize_voice(tmp_path / "other", clips=N_CLIPS, seed=SEED + 1,
                             duration=DURATION, p_voice=0.5).root
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (again / rel).read_bytes() == (dataset / rel).read_bytes(), rel
    for rel in ("clips.csv", "audio/001.flac", "truth/001.npz"):
        assert (other / rel).read_bytes() != (dataset / rel).read_bytes(), rel


def test_reused_completed_and_refused(dataset: Path, tmp_path: Path) -> None:
    assert synthesize_voice(dataset, clips=N_CLIPS, seed=SEED, duration=DURATION,
                            p_voice=0.5).reused
    part = tmp_path / "part"
    shutil.copytree(dataset, part)
    (part / "voice.json").rename(part / ".voice-parameters.json")  # killed before the end
    (part / "clips.csv").unlink()
    (part / "audio" / "002.flac").unlink()
    (part / "truth" / "004.npz").write_bytes(b"truncated")
    (part / "audio" / ".003.flac.abc.tmp").write_bytes(b"")  # a killed run's temporary
    with pytest.raises(DatasetError, match=r"voice\.json"):
        load_voice_dataset(part)
    info = synthesize_voice(part, clips=N_CLIPS, seed=SEED, duration=DURATION, p_voice=0.5)
    assert not info.reused
    for p in dataset.rglob("*"):
        if p.is_file():
            assert (part / p.relative_to(dataset)).read_bytes() == p.read_bytes(), p
    assert not list((part / "audio").glob(".*.tmp"))
    with pytest.raises(ConfigError, match="other parameters"):
        synthesize_voice(dataset, clips=N_CLIPS, seed=SEED + 1, duration=DURATION, p_voice=0.5)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "x.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty"):
        synthesize_voice(foreign, clips=N_CLIPS, duration=DURATION)
    pd.testing.assert_frame_equal(load_voice_dataset(part).clips,
                                  load_voice_dataset(dataset).clips)


@pytest.mark.parametrize(("kwargs", "name"), [
    ({"clips": 0}, "clips"), ({"clips": 1000}, "clips"), ({"clips": 2.0}, "clips"),
    ({"seed": -1}, "seed"), ({"duration": 3.0}, "duration"), ({"audio_format": "mp3"},
                                                               "audio_format"),
    ({"p_voice": 1.5}, "p_voice"), ({"p_decoy": -0.1}, "p_decoy"),
    ({"snr_db": (0.0, -1.0)}, "snr_db"),
    ({"snr_db": "loud"}, "snr_db"), ({"snr_db": (0.0, float("nan"))}, "snr_db"),
    ({"mask_db": 0}, "mask_db"),
])
def test_bad_arguments_name_the_parameter(tmp_path: Path, kwargs: dict[str, object],
                                          name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        synthesize_voice(tmp_path / "x", **{"clips": 2, "duration": 5.0, **kwargs})
    assert not (tmp_path / "x").exists()
