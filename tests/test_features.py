"""Front end: madmom known answers (fixtures), framing, gradients, Standardizer and excerpts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from robustmer.audio import load_audio, normalize_and_trim
from robustmer.audio.load import to_float32
from robustmer.errors import AudioError, ConfigError, DatasetError
from robustmer.features import (
    EXCERPT_FRAMES,
    FrontEndConfig,
    LogFilteredSpectrogram,
    Standardizer,
    compute_spectrogram,
    excerpt,
    excerpt_indices,
)
from robustmer.features.filterbank import fft_bin_frequencies, log_frequencies

# --- madmom fixtures (known answers) ----------------------------------------------------------

FIXTURE_NAMES = ["sine440", "chirp", "noise", "mixture", "zeropad", "mixture_int16"]
FLOAT_NAMES = FIXTURE_NAMES[:-1]


@pytest.fixture(scope="module")
def madmom_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "madmom"


@pytest.fixture(scope="module")
def manifest(madmom_dir: Path) -> dict:
    return json.loads((madmom_dir / "manifest.json").read_text())


@pytest.fixture(scope="module")
def frontend() -> LogFilteredSpectrogram:
    return LogFilteredSpectrogram()


def _fixture_signal(madmom_dir: Path, name: str) -> np.ndarray:
    """The fixture's input after our normalise + trim, as the float32 waveform the module takes."""
    inp = np.load(madmom_dir / f"{name}_input.npy")
    return to_float32(normalize_and_trim(inp))


@pytest.mark.realdata
def test_manifest_lists_the_expected_signals(manifest: dict) -> None:
    assert [s["name"] for s in manifest["signals"]] == FIXTURE_NAMES


@pytest.mark.realdata
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_signal_stage_matches_madmom(madmom_dir: Path, manifest: dict, name: str) -> None:
    entry = next(s for s in manifest["signals"] if s["name"] == name)
    inp = np.load(madmom_dir / f"{name}_input.npy")
    if name == "mixture_int16":  # the int16 path, read from the 16-bit WAV file
        data, rate = sf.read(madmom_dir / entry["input"]["wav"], dtype="int16")
        assert rate == 22050
        np.testing.assert_array_equal(data, inp)
        inp = data
    ref = np.load(madmom_dir / f"{name}_signal.npy")
    sig = normalize_and_trim(inp)
    assert sig.dtype == ref.dtype
    np.testing.assert_array_equal(sig, ref)


@pytest.mark.realdata
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_load_audio_on_fixture_wavs_gives_the_signal(madmom_dir: Path, manifest: dict,
                                                     name: str) -> None:
    entry = next(s for s in manifest["signals"] if s["name"] == name)
    ref = np.load(madmom_dir / f"{name}_signal.npy")
    y = load_audio(madmom_dir / entry["input"]["wav"])
    assert y.dtype == np.float32
    # float WAVs give madmom's float signal bit for bit; the int16 WAV gives int16 / 32767
    np.testing.assert_array_equal(y, to_float32(ref))


@pytest.mark.realdata
@pytest.mark.parametrize("name", FLOAT_NAMES)
def test_stages_match_madmom(madmom_dir: Path, frontend: LogFilteredSpectrogram,
                             name: str) -> None:
    x = torch.from_numpy(_fixture_signal(madmom_dir, name))
    with torch.no_grad():
        mag = frontend.magnitude(x).numpy()
        filt = frontend.filtered(x).numpy()
    ref_mag = np.load(madmom_dir / f"{name}_magspec.npy")
    ref_filt = np.load(madmom_dir / f"{name}_filtspec.npy")
    assert mag.shape == ref_mag.shape and filt.shape == ref_filt.shape
    # float32 FFT vs madmom's float64 FFT: errors of a few float32 ULPs of the largest value
    # (measured: at most 1.8e-7 of the maximum)
    mag_err = float(np.abs(mag - ref_mag).max())
    filt_err = float(np.abs(filt - ref_filt).max())
    print(f"{name}: magspec max|err| {mag_err:.2e} (max {ref_mag.max():.1f}), "
          f"filtspec max|err| {filt_err:.2e} (max {ref_filt.max():.1f})")
    assert mag_err <= 1e-6 * float(ref_mag.max())
    assert filt_err <= 1e-6 * float(ref_filt.max())


@pytest.mark.realdata
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", FIXTURE_NAMES)
def test_spectrogram_matches_madmom(madmom_dir: Path, manifest: dict, name: str,
                                    dtype: torch.dtype,
                                    record_property: pytest.RecordProperty) -> None:
    entry = next(s for s in manifest["signals"] if s["name"] == name)
    module = LogFilteredSpectrogram(dtype=dtype)
    x = torch.from_numpy(_fixture_signal(madmom_dir, name))
    assert module.num_frames(len(x)) == entry["num_frames"]
    with torch.no_grad():
        spec = module(x)
    assert spec.dtype == dtype
    ref = np.load(madmom_dir / f"{name}_spec.npy")
    assert tuple(spec.shape) == ref.shape
    err = float(np.abs(spec.numpy() - ref).max())
    print(f"{name} [{dtype}]: spec max|err| {err:.2e}")
    record_property(f"max_abs_err_{name}_{str(dtype).split('.')[-1]}", err)
    # float32: README's "within 6e-6 of madmom's own output" (measured: sine440 5.83e-6, the
    # worst fixture, the same with MKL_ENABLE_INSTRUCTIONS=AVX2 or SSE4_2 and with
    # ATEN_CPU_CAPABILITY=avx2 or default); float64: measured at most 3.4e-7
    assert err <= (6e-6 if dtype == torch.float32 else 1e-6)


@pytest.mark.realdata
def test_filterbank_window_and_frame_starts_match_madmom(madmom_dir: Path) -> None:
    config = FrontEndConfig()
    fb, bins = config.filterbank_and_bins()
    assert fb.dtype == np.float32 and fb.shape == (1024, 149)
    np.testing.assert_array_equal(fb, np.load(madmom_dir / "filterbank.npy"))
    np.testing.assert_array_equal(bins, np.load(madmom_dir / "filterbank_bins_unique.npy"))
    np.testing.assert_array_equal(
        log_frequencies(24, 20.0, 16000.0, 440.0),
        np.load(madmom_dir / "filterbank_log_frequencies.npy"))
    np.testing.assert_array_equal(fft_bin_frequencies(2048, 22050),
                                  np.load(madmom_dir / "bin_frequencies.npy"))
    ref_starts = np.load(madmom_dir / "frame_starts.npy")
    n = len(ref_starts)
    starts = config.frame_starts(math.ceil((n - 0.5) * config.hop_size))
    assert len(starts) == n
    np.testing.assert_array_equal(starts, ref_starts)
    window = LogFilteredSpectrogram(dtype=torch.float64).window.numpy()
    np.testing.assert_array_equal(window, np.load(madmom_dir / "window.npy"))


# --- configuration -----------------------------------------------------------------------------

def test_config_defaults_and_derived_values() -> None:
    c = FrontEndConfig()
    assert c.to_dict() == {"sample_rate": 22050, "frame_size": 2048, "fps": 31.3,
                           "bands_per_octave": 24, "fmin": 20.0, "fmax": 16000.0,
                           "fref": 440.0}
    assert c.hop_size == 22050 / 31.3 and isinstance(c.hop_size, float)
    assert FrontEndConfig.from_dict(c.to_dict()) == c
    assert c.key() == FrontEndConfig().key() == FrontEndConfig(fmin=20).key()
    assert c.key() != FrontEndConfig(fps=31.0).key()
    with pytest.raises(AttributeError):
        c.fps = 30.0  # type: ignore[misc]


@pytest.mark.parametrize("kwargs", [{"fps": 0}, {"frame_size": 2047}, {"fmin": 20000.0},
                                    {"sample_rate": 22050.5}, {"bands_per_octave": True},
                                    {"fmax": float("nan")}])
def test_config_rejects_bad_values(kwargs: dict) -> None:
    name = next(iter(kwargs))
    with pytest.raises(ConfigError, match=name):
        FrontEndConfig(**kwargs)


def test_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="hop"):
        FrontEndConfig.from_dict({"hop": 704})


def test_filterbank_columns_are_normalised_triangles() -> None:
    fb = FrontEndConfig().filterbank()
    assert fb.shape == (1024, 149) and fb.dtype == np.float32
    np.testing.assert_allclose(fb.sum(axis=0), 1.0, atol=1e-6)
    assert np.all(fb >= 0)
    assert not fb[1023].any() and not fb[:3].any()  # madmom never uses bins 0-2 or 1023
    peaks = fb.argmax(axis=0)
    assert np.all(np.diff(peaks) > 0)  # one band per unique bin, in increasing order
    # a coarser config still gives a valid, smaller filterbank
    small = FrontEndConfig(frame_size=512, bands_per_octave=6).filterbank()
    assert small.shape[0] == 256 and 0 < small.shape[1] < 149


@pytest.mark.parametrize("n_samples", [1, 704, 705, 2048, 22050, 100_000])
def test_frame_count_and_starts(n_samples: int) -> None:
    c = FrontEndConfig()
    starts = c.frame_starts(n_samples)
    assert len(starts) == c.num_frames(n_samples) == math.ceil(n_samples / (22050 / 31.3))
    assert starts[0] == 0 and starts[-1] < n_samples
    assert set(np.diff(starts)) <= {704, 705}


# --- the module --------------------------------------------------------------------------------

def test_impulse_lands_in_exactly_the_frames_that_cover_it(frontend: LogFilteredSpectrogram
                                                          ) -> None:
    """|FFT| of a windowed impulse is flat and equals the window value at its offset."""
    n, p = 12_000, 5_000
    x = torch.zeros(n)
    x[p] = 1.0
    with torch.no_grad():
        mag = frontend.magnitude(x)
    starts = FrontEndConfig().frame_starts(n)
    window = np.hanning(2048)
    expected = np.zeros((len(starts), 1024))
    for i, s in enumerate(starts):
        if s <= p < s + 2048:
            expected[i] = window[p - s]
    np.testing.assert_allclose(mag.numpy(), expected, atol=1e-6)
    # an integer hop of 704 would put frame 7 at 4928 instead of int(7 * 704.47...) = 4931
    assert starts[7] == 4931 and expected[7, 0] == pytest.approx(window[p - 4931])


def test_shapes_batching_and_silence(frontend: LogFilteredSpectrogram) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, 9000, generator=gen) - 0.5
    x[1, 2000:6000] = 0.0  # interior silence: frames fully inside it are exactly 0
    with torch.no_grad():
        batch = frontend(x)
        single = torch.stack([frontend(row) for row in x])
    t = frontend.num_frames(9000)
    assert batch.shape == (3, t, 149) and frontend(x[0]).shape == (t, 149)
    torch.testing.assert_close(batch, single, rtol=0, atol=1e-6)
    assert torch.all(batch >= 0)
    starts = FrontEndConfig().frame_starts(9000)
    silent = [i for i, s in enumerate(starts) if s >= 2000 and s + 2048 <= 6000]
    assert silent and torch.all(batch[1, silent] == 0)


def test_compute_spectrogram_matches_the_module(frontend: LogFilteredSpectrogram) -> None:
    wave = np.random.default_rng(1).uniform(-1, 1, 5000).astype(np.float32)
    out = compute_spectrogram(wave, FrontEndConfig())
    assert out.dtype == np.float32 and out.shape == (frontend.num_frames(5000), 149)
    with torch.no_grad():
        np.testing.assert_array_equal(out, frontend(torch.from_numpy(wave)).numpy())
    with pytest.raises(AudioError, match="1-D"):
        compute_spectrogram(np.zeros((2, 100), np.float32))
    with pytest.raises(AudioError, match="zero samples"):
        compute_spectrogram(np.zeros(0, np.float32))


def test_buffers_follow_to_but_stay_out_of_checkpoints() -> None:
    module = LogFilteredSpectrogram()
    assert module.state_dict() == {}
    assert {name for name, _ in module.named_buffers()} == {"window", "filterbank"}
    module = module.to(torch.float64)
    assert module.window.dtype == module.filterbank.dtype == torch.float64
    meta = LogFilteredSpectrogram().to("meta")
    assert meta.window.device.type == meta.filterbank.device.type == "meta"


@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="compares the front end on CUDA with the CPU: needs a CUDA GPU (on a "
                           "CPU-only machine it could only compare the CPU with itself)")
def test_front_end_on_cuda_agrees_with_the_cpu() -> None:
    """The front end on CUDA agrees with the CPU to 1e-5 (a GPU machine's check, as
    ``tests/test_cuda.py``; every other test here runs it on the CPU)."""
    x = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, 4000).astype(np.float32))
    ref = LogFilteredSpectrogram()(x).detach()
    out = LogFilteredSpectrogram().to("cuda")(x.to("cuda")).detach().cpu()
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-5)


def test_gradcheck_float64() -> None:
    module = LogFilteredSpectrogram(dtype=torch.float64)
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(1500, generator=gen, dtype=torch.float64) - 0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(module, (x,), eps=1e-6, atol=1e-6, rtol=1e-4)


def test_gradients_are_finite_on_silent_frames() -> None:
    module = LogFilteredSpectrogram()
    x = torch.zeros(2, 12_000)
    x[0, 3000:4000] = torch.linspace(-0.5, 0.5, 1000)  # sound, then long silence
    x.requires_grad_(True)  # row 1 is all zeros: every |z| is exactly 0
    module(x).sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))
    assert x.grad[0, 3000:4000].abs().sum() > 0


# --- Standardizer ------------------------------------------------------------------------------

def test_standardizer_fit_equals_global_mean_std_and_streams() -> None:
    rng = np.random.default_rng(4)
    specs = [rng.normal(3.0, 2.0, size=(t, 149)).astype(np.float32) for t in (5, 40, 313)]
    s = Standardizer.fit(iter(specs))  # a one-pass iterator is enough
    flat = np.concatenate([a.ravel() for a in specs]).astype(np.float64)
    assert s.mean == pytest.approx(flat.mean(), rel=1e-12)
    assert s.std == pytest.approx(flat.std(), rel=1e-12)


def test_standardizer_is_accurate_with_a_large_offset() -> None:
    rng = np.random.default_rng(5)
    specs = [1e6 + rng.normal(0, 1e-3, size=(100, 10)) for _ in range(5)]
    s = Standardizer.fit(specs)
    assert s.std == pytest.approx(np.concatenate(specs).std(), rel=1e-6)


def test_standardizer_transform_inverse_numpy_and_torch() -> None:
    s = Standardizer(mean=0.5, std=2.0)
    x = np.random.default_rng(6).normal(size=(4, 149)).astype(np.float32)
    y = s.transform(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, (x - 0.5) / 2.0)
    np.testing.assert_allclose(s.inverse(y), x, atol=1e-6)
    t = torch.from_numpy(x).requires_grad_(True)
    out = s.transform(t)
    assert out.dtype == torch.float32
    out.sum().backward()
    assert t.grad is not None
    torch.testing.assert_close(t.grad, torch.full_like(t, 0.5))
    assert Standardizer.from_dict(s.to_dict()) == s


def test_standardizer_errors() -> None:
    with pytest.raises(DatasetError, match="no data"):
        Standardizer.fit([])
    with pytest.raises(DatasetError, match="std is 0"):
        Standardizer.fit([np.ones((3, 4))])
    with pytest.raises(ConfigError, match="std"):
        Standardizer(0.0, 0.0)
    with pytest.raises(ConfigError, match="mean"):
        Standardizer.from_dict({"std": 1.0})


# --- excerpts ----------------------------------------------------------------------------------

def test_excerpt_indices_are_reproducible_windows() -> None:
    assert EXCERPT_FRAMES == 313
    a = excerpt_indices(1000, seed=7)
    np.testing.assert_array_equal(a, excerpt_indices(1000, seed=7))
    assert a.dtype == np.int64 and len(a) == 313
    assert np.all(np.diff(a) == 1) and 0 <= a[0] <= 1000 - 313
    starts = {int(excerpt_indices(1000, seed=s)[0]) for s in range(50)}
    assert len(starts) > 10  # the seed moves the window
    assert excerpt_indices(1000, seed=None)[0] == (1000 - 313) // 2
    np.testing.assert_array_equal(excerpt_indices(313, seed=3), np.arange(313))


def test_short_clips_are_tiled() -> None:
    idx = excerpt_indices(100, seed=1)
    np.testing.assert_array_equal(idx, np.tile(np.arange(100), 4)[:313])


def test_excerpt_on_numpy_and_torch() -> None:
    spec = np.random.default_rng(8).normal(size=(2, 500, 149)).astype(np.float32)
    e = excerpt(spec, seed=9)
    idx = excerpt_indices(500, seed=9)
    assert e.shape == (2, 313, 149)
    np.testing.assert_array_equal(e, spec[:, idx, :])
    torch.testing.assert_close(excerpt(torch.from_numpy(spec), seed=9), torch.from_numpy(e))
    assert excerpt(spec[0], frames=10, seed=None).shape == (10, 149)


def test_excerpt_errors() -> None:
    with pytest.raises(ConfigError, match="frames"):
        excerpt_indices(100, frames=0)
    with pytest.raises(DatasetError, match="n_frames"):
        excerpt_indices(0)
    with pytest.raises(DatasetError, match="shape"):
        excerpt(np.zeros(10))
